"""A validated policy, normalised for the residency engine (crates/engine).

The engine compiles a document in which nothing is left to interpret: every location token is
resolved to the region ids it covers (against the registry the policy is used with: builtin
regions plus its private ones), every origin match to countries, every exemption's expiry to
microseconds. `normalise` builds that document from a `LoadedPolicy`; the engine never sees
YAML, groups or line numbers, so every error a user can make is reported here, by line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

from domicile.catalog.dataset_ids import normalize_pattern
from domicile.catalog.model import to_micros
from domicile.catalog.regions import Region, RegionRegistry
from domicile.router.locations import LocationError, LocationResolver
from domicile.router.policy import LoadedPolicy, Path, PolicyError, PolicyInvalid, format_path

_OPERATIONS = ("store", "process")


@dataclass(frozen=True)
class NormalisedPolicy:
    """A policy ready for the engine: the loaded document, the registry it resolves against
    and `document`, the engine's JSON."""

    loaded: LoadedPolicy
    registry: RegionRegistry
    document: str

    @property
    def version(self) -> str:
        """`metadata.version` exactly as written."""
        return self.loaded.version

    @property
    def content_hash(self) -> str:
        """sha256 (hex) of `source_yaml`."""
        return self.loaded.content_hash

    @property
    def source_yaml(self) -> str:
        return self.loaded.source_yaml

    @cached_property
    def _region_ids(self) -> frozenset[str]:
        return frozenset(region.id for region in self.registry)

    def region_known(self, region: str) -> bool:
        """True for a builtin region or one of the policy's private regions."""
        return region in self._region_ids


def normalise(loaded: LoadedPolicy, registry: RegionRegistry | None = None) -> NormalisedPolicy:
    """The engine's document for `loaded`.

    `registry` is the base registry (default: the one the policy was validated against); the
    policy's private regions are added to it. Raises `PolicyInvalid` when a token no longer
    resolves against that registry, or a private region clashes with one of its regions.
    """
    if registry is None:
        extended = loaded.registry
    else:
        private = [Region(r.id, r.country, r.display_name, True) for r in loaded.document.regions]
        try:
            extended = registry.with_private(private)
        except ValueError as exc:
            line, column = loaded.position(("regions",))
            raise PolicyInvalid([PolicyError(line, column, "regions", str(exc))]) from None
    return NormalisedPolicy(loaded, extended, _Normaliser(loaded, extended).document())


def undescribed_outputs(loaded: LoadedPolicy) -> str:
    """How the policy judges datasets known only as lineage outputs: as written, else `inherit`
    -- except a legacy policy (recorded before the switch existed), which keeps `deny`."""
    written = loaded.document.defaults.undescribed_outputs
    if written is not None:
        return written
    return "deny" if loaded.legacy else "inherit"


class _Normaliser:
    def __init__(self, loaded: LoadedPolicy, registry: RegionRegistry) -> None:
        self.loaded = loaded
        self.registry = registry
        self.resolver = LocationResolver(registry, loaded.document.groups)
        self.errors: list[PolicyError] = []

    def document(self) -> str:
        document = self.loaded.document
        rules = [self._rule(i) for i in range(len(document.rules))]
        exemptions = [self._exemption(i) for i in range(len(document.exemptions))]
        if self.errors:
            raise PolicyInvalid(self.errors)
        return json.dumps(
            {
                "version": self.loaded.version,
                "content_hash": self.loaded.content_hash,
                "regions": sorted(region.id for region in self.registry),
                "rules": rules,
                "declassifiers": [
                    {
                        "transform": d.transform,
                        "removes": list(d.removes),
                        # None (a legacy policy's declassifier): every job is granted it.
                        "jobs": None if d.jobs is None else list(d.jobs),
                    }
                    for d in document.declassifiers
                ],
                "exemptions": exemptions,
                "defaults": {
                    "classified": document.defaults.classified,
                    "unclassified": document.defaults.unclassified,
                    "undescribed_outputs": undescribed_outputs(self.loaded),
                },
                "legacy": self.loaded.legacy,
            }
        )

    def _regions(self, tokens: tuple[str, ...], path: Path) -> list[str]:
        ids: set[str] = set()
        for i, token in enumerate(tokens):
            try:
                ids |= self.resolver.regions([token])
            except LocationError as exc:
                self._error((*path, i), str(exc))
        return sorted(ids)

    def _error(self, path: Path, message: str) -> None:
        line, column = self.loaded.position(path)
        self.errors.append(PolicyError(line, column, format_path(path), message))

    def _rule(self, index: int) -> dict:
        rule = self.loaded.document.rules[index]
        path: Path = ("rules", index)
        origins = None
        if rule.match.origins:
            try:
                location = self.resolver.origin_countries(rule.match.origins)
                origins = {"everywhere": location.everywhere, "countries": sorted(location.countries)}
            except LocationError as exc:
                self._error((*path, "match", "origins"), str(exc))
        normalised: dict = {
            "id": rule.id,
            "citation": rule.citation,
            "classifications": list(rule.match.classifications),
            "origins": origins,
            "exemptible": rule.exemptible,
        }
        for op in _OPERATIONS:
            permission = getattr(rule, op)
            if permission is None:
                continue
            normalised[op] = {
                "allow": None if permission.allow is None else self._regions(permission.allow, (*path, op, "allow")),
                "deny": self._regions(permission.deny, (*path, op, "deny")),
            }
        return normalised

    def _exemption(self, index: int) -> dict:
        exemption = self.loaded.document.exemptions[index]
        return {
            "id": exemption.id,
            "dataset": normalize_pattern(exemption.dataset),
            "operations": list(_OPERATIONS) if exemption.operation == "both" else [exemption.operation],
            "regions": self._regions(exemption.regions, ("exemptions", index, "regions")),
            "expires_micros": to_micros(exemption.expires),
            "expires": exemption.expires.isoformat(),
            "approved_by": exemption.approved_by,
        }
