"""Location tokens of the policy language, resolved to countries and region ids.

A token is one of (tried in this order):

- `*` -- everywhere;
- a group: one of the policy's own `groups` (which may contain other tokens, groups
  included) or a builtin group (`EU`, `EEA`, `EU_ADEQUACY`, see `catalog.regions`);
- an ISO 3166-1 alpha-2 country code -- as a place, every region in that country;
- a region id `provider:name` known to the registry (builtin + the policy's private regions).

`LocationResolver.resolve` turns a token into a `Location` (countries and explicit regions);
`regions` turns tokens into the set of region ids they cover, `origin_countries` into the set
of countries a dataset origin must be in to match (origins are countries, so a token that
names regions cannot be used there).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from domicile.catalog.regions import RegionRegistry, builtin_groups, is_country, suggest_country
from domicile.suggest import closest, did_you_mean

EVERYWHERE = "*"
# Groups nest; deeper than this is a mistake, and the bound keeps resolution's recursion safe.
MAX_GROUP_DEPTH = 32


class TokenKind(enum.Enum):
    EVERYWHERE = "everywhere"
    GROUP = "group"
    BUILTIN_GROUP = "builtin group"
    COUNTRY = "country"
    REGION = "region"


class LocationError(ValueError):
    """A token that cannot be resolved: unknown, or part of a group cycle."""


@dataclass(frozen=True)
class Location:
    """What a token denotes: everywhere, or a set of countries plus a set of explicit regions."""

    everywhere: bool = False
    countries: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()

    def union(self, other: Location) -> Location:
        return Location(
            self.everywhere or other.everywhere,
            self.countries | other.countries,
            self.regions | other.regions,
        )


class LocationResolver:
    """Resolves location tokens against a region registry and a policy's groups.

    Resolution results are memoised: a resolver is built once per policy and then used for
    every token of it. `groups` must not contain cycles for `resolve` to succeed on the
    tokens that reach one (`find_group_cycles` reports them); such tokens raise
    `LocationError`.
    """

    def __init__(self, registry: RegionRegistry, groups: Mapping[str, Sequence[str]] | None = None) -> None:
        self.registry = registry
        self.groups: Mapping[str, Sequence[str]] = dict(groups or {})
        self._builtin_groups = builtin_groups()
        self._resolved: dict[str, tuple[Location, int]] = {}
        self._regions_by_country: dict[str, frozenset[str]] = {}
        by_country: dict[str, set[str]] = {}
        for region in registry:
            by_country.setdefault(region.country, set()).add(region.id)
        self._regions_by_country = {c: frozenset(ids) for c, ids in by_country.items()}
        self._all_regions = frozenset(r.id for r in registry)

    def kind(self, token: str) -> TokenKind | None:
        """What `token` names, or None when it names nothing known."""
        if token == EVERYWHERE:
            return TokenKind.EVERYWHERE
        if token in self.groups:
            return TokenKind.GROUP
        if token in self._builtin_groups:
            return TokenKind.BUILTIN_GROUP
        if is_country(token):
            return TokenKind.COUNTRY
        if token in self.registry:
            return TokenKind.REGION
        return None

    def unknown_message(self, token: str) -> str:
        """The error for a token that names nothing known, with what it probably meant."""
        suggestions = (
            closest(token, [*self.groups, *self._builtin_groups])
            or self.registry.suggest(token)
            or (suggest_country(token) if ":" not in token else [])
        )
        return (
            f"unknown location {token!r}: not '*', a group, an ISO 3166-1 alpha-2 country code or a known "
            f"region id{did_you_mean(suggestions)}"
        )

    def resolve(self, token: str) -> Location:
        """The `Location` a token denotes; `LocationError` if unknown, cyclic or nested
        deeper than `MAX_GROUP_DEPTH` (whatever was resolved before)."""
        return self._resolve(token, ())[0]

    def _resolve(self, token: str, visiting: tuple[str, ...]) -> tuple[Location, int]:
        """(location, nesting depth): 0 for a leaf token, 1 + the deepest member for a group."""
        cached = self._resolved.get(token)
        if cached is not None:
            return cached
        kind = self.kind(token)
        if kind is None:
            raise LocationError(self.unknown_message(token))
        depth = 0
        if kind is TokenKind.EVERYWHERE:
            location = Location(everywhere=True)
        elif kind is TokenKind.BUILTIN_GROUP:
            location = Location(countries=self._builtin_groups[token])
        elif kind is TokenKind.COUNTRY:
            location = Location(countries=frozenset({token}))
        elif kind is TokenKind.REGION:
            location = Location(regions=frozenset({token}))
        else:
            if token in visiting:
                cycle = " -> ".join([*visiting[visiting.index(token) :], token])
                raise LocationError(f"group cycle: {cycle}")
            location = Location()
            # The path walked so far is a lower bound of the outermost group's depth, so
            # stopping here is right and keeps the recursion shallow.
            if len(visiting) < MAX_GROUP_DEPTH:
                for member in self.groups[token]:
                    member_location, member_depth = self._resolve(member, (*visiting, token))
                    location = location.union(member_location)
                    depth = max(depth, member_depth + 1)
            if len(visiting) >= MAX_GROUP_DEPTH or len(visiting) + depth > MAX_GROUP_DEPTH:
                outermost = visiting[0] if visiting else token
                raise LocationError(f"groups nested deeper than {MAX_GROUP_DEPTH} levels under {outermost!r}")
        self._resolved[token] = (location, depth)
        return location, depth

    def region_ids(self, location: Location) -> frozenset[str]:
        """Region ids of the registry inside `location` (a country covers all its regions)."""
        if location.everywhere:
            return self._all_regions
        ids = set(location.regions)
        for country in location.countries:
            ids |= self._regions_by_country.get(country, frozenset())
        return frozenset(ids)

    def regions(self, tokens: Iterable[str]) -> frozenset[str]:
        """Union of the region ids the tokens cover; `LocationError` on the first bad token."""
        ids: set[str] = set()
        for token in tokens:
            ids |= self.region_ids(self.resolve(token))
        return frozenset(ids)

    def origin_countries(self, tokens: Iterable[str]) -> Location:
        """The countries the tokens cover, as origins (`everywhere` = any origin).

        `LocationError` when a token is unknown or names a region: a data subject's origin is
        a country, never a data centre.
        """
        result = Location()
        for token in tokens:
            location = self.resolve(token)
            if location.regions:
                named = ", ".join(sorted(location.regions))
                raise LocationError(f"{token!r} names regions ({named}); origins are countries or groups of countries")
            result = result.union(location)
        return result


def find_group_cycles(groups: Mapping[str, Sequence[str]]) -> list[tuple[str, ...]]:
    """The groups that reach themselves through membership, one sorted tuple per strongly
    connected component (a group containing itself is a component of one).

    Iterative Tarjan: linear in the size of `groups` and safe on deep nesting, because a
    policy arriving over the API may be hostile.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[tuple[str, ...]] = []

    for root in groups:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            name, child = work.pop()
            if child == 0:
                index[name] = low[name] = len(index)
                stack.append(name)
                on_stack.add(name)
            members = [m for m in groups[name] if m in groups]
            if child < len(members):
                work.append((name, child + 1))
                member = members[child]
                if member not in index:
                    work.append((member, 0))
                elif member in on_stack:
                    low[name] = min(low[name], index[member])
                continue
            # All members done: fold their low-links in, then close the component if root.
            for member in members:
                if member in on_stack:
                    low[name] = min(low[name], low[member])
            if low[name] == index[name]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == name:
                        break
                if len(component) > 1 or name in groups[name]:
                    components.append(tuple(sorted(component)))
    return sorted(components)
