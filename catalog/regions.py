"""The region registry and location groups.

Builtin data lives in `catalog/data/regions.yaml` (public regions of AWS, GCP and Azure with
the ISO 3166-1 alpha-2 country of each, plus source and date) and
`catalog/data/locations.yaml` (the ISO country list and the builtin groups EU, EEA,
EU_ADEQUACY). A policy may add private regions with `RegionRegistry.with_private`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType

import yaml

from domicile.suggest import MAX_SUGGESTIONS, closest

REGION_ID = re.compile(r"^[a-z][a-z0-9-]{0,31}:[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class Region:
    id: str  # "provider:name"
    country: str  # ISO 3166-1 alpha-2
    display_name: str = ""
    private: bool = False

    @property
    def provider(self) -> str:
        return self.id.split(":", 1)[0]

    @property
    def name(self) -> str:
        return self.id.split(":", 1)[1]


class RegionRegistry:
    """Known regions by id. Immutable; `with_private` returns an extended copy."""

    def __init__(self, regions: list[Region]) -> None:
        self._by_id: dict[str, Region] = {}
        for region in regions:
            self._by_id[region.id] = region
        self._ordered = tuple(sorted(self._by_id.values(), key=lambda r: r.id))
        self.by_id: Mapping[str, Region] = MappingProxyType(self._by_id)  # read-only view

    @staticmethod
    def builtin() -> RegionRegistry:
        return _builtin_registry()

    def with_private(self, regions: list[Region]) -> RegionRegistry:
        """This registry plus `regions` (marked private). A private id equal to a builtin
        one is a ValueError: a policy may not move a public region to another country."""
        for region in regions:
            if region.id in self._by_id and not self._by_id[region.id].private:
                raise ValueError(f"region {region.id!r} is a builtin region")
        return RegionRegistry([*self._ordered, *(Region(r.id, r.country, r.display_name, True) for r in regions)])

    def get(self, region_id: str) -> Region | None:
        return self._by_id.get(region_id)

    def __contains__(self, region_id: object) -> bool:
        return region_id in self._by_id

    def __iter__(self):
        return iter(self._ordered)

    def __len__(self) -> int:
        return len(self._ordered)

    def country_of(self, region_id: str) -> str:
        """KeyError for an unknown region."""
        return self._by_id[region_id].country

    def suggest(self, value: str) -> list[str]:
        """The region ids a user probably meant by `value`, which is not one: the same id in
        other case, the regions of that name at any provider (`eu-west-1` →
        `aws:eu-west-1`), else the most similar ids."""
        folded = value.strip().casefold()
        same = [r.id for r in self._ordered if r.id.casefold() == folded]
        if same:
            return same
        if ":" not in folded:
            named = [r.id for r in self._ordered if r.name.casefold() == folded]
            if named:
                return named[:MAX_SUGGESTIONS]
        return closest(value, self._by_id)


@cache
def _builtin_registry() -> RegionRegistry:
    data = yaml.safe_load(resources.files("domicile.catalog").joinpath("data/regions.yaml").read_text("utf-8"))
    regions: list[Region] = []
    for provider, entries in data["providers"].items():
        for entry in entries:
            regions.append(Region(f"{provider}:{entry['name']}", entry["country"], entry.get("display_name", "")))
    return RegionRegistry(regions)


@cache
def _locations() -> dict:
    return yaml.safe_load(resources.files("domicile.catalog").joinpath("data/locations.yaml").read_text("utf-8"))


@cache
def country_names() -> Mapping[str, str]:
    """Every officially assigned ISO 3166-1 alpha-2 code → its English short name."""
    return MappingProxyType({entry["code"]: entry["name"] for entry in _locations()["countries"]})


def iso_countries() -> frozenset[str]:
    """Every officially assigned ISO 3166-1 alpha-2 code."""
    return frozenset(country_names())


def is_country(code: str) -> bool:
    return code in country_names()


# Codes people write that ISO reserves for something else: the United Kingdom is GB, Greece GR.
_COUNTRY_ALIASES = {"UK": "GB", "EL": "GR"}


def suggest_country(value: str) -> list[str]:
    """The country codes a user probably meant by `value`, which is not one: the code in
    upper case, GB for UK and GR for EL, the code of a country named so (`Germany` → DE),
    else the codes of the most similarly named countries."""
    code = value.strip().upper()
    if is_country(code):
        return [code]
    if code in _COUNTRY_ALIASES:
        return [_COUNTRY_ALIASES[code]]
    by_name = {name.casefold(): code for code, name in country_names().items()}
    if value.strip().casefold() in by_name:
        return [by_name[value.strip().casefold()]]
    return [by_name[name] for name in closest(value.strip(), by_name)]


def builtin_groups() -> dict[str, frozenset[str]]:
    """Builtin location groups as sets of country codes: EU, EEA, EU_ADEQUACY."""
    groups = _locations()["groups"]
    return {name: frozenset(spec["countries"]) for name, spec in groups.items()}
