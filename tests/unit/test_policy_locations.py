"""Location tokens: `*`, groups (builtin and nested policy groups), countries, region ids."""

from __future__ import annotations

import pytest

from domicile.catalog.regions import Region, RegionRegistry, builtin_groups
from domicile.router.locations import (
    MAX_GROUP_DEPTH,
    Location,
    LocationError,
    LocationResolver,
    TokenKind,
    find_group_cycles,
)

REGISTRY = RegionRegistry(
    [
        Region("aws:eu-central-1", "DE"),
        Region("aws:eu-west-1", "IE"),
        Region("aws:us-east-1", "US"),
        Region("aws:ap-south-1", "IN"),
        Region("gcp:europe-west6", "CH"),
        Region("onprem:fra-dc1", "DE", private=True),
    ]
)


def test_token_kinds_in_resolution_order() -> None:
    resolver = LocationResolver(REGISTRY, {"MINE": ["DE"]})
    assert resolver.kind("*") is TokenKind.EVERYWHERE
    assert resolver.kind("MINE") is TokenKind.GROUP
    assert resolver.kind("EEA") is TokenKind.BUILTIN_GROUP
    assert resolver.kind("DE") is TokenKind.COUNTRY
    assert resolver.kind("aws:us-east-1") is TokenKind.REGION
    assert resolver.kind("aws:mars-1") is None
    assert resolver.kind("de") is None


def test_everywhere_covers_every_region() -> None:
    resolver = LocationResolver(REGISTRY)
    assert resolver.regions(["*"]) == {r.id for r in REGISTRY}


def test_country_covers_all_its_regions_private_ones_included() -> None:
    resolver = LocationResolver(REGISTRY)
    assert resolver.regions(["DE"]) == {"aws:eu-central-1", "onprem:fra-dc1"}
    # A valid country without regions covers none; it is not an error.
    assert resolver.regions(["RU"]) == frozenset()


def test_builtin_groups_cover_their_countries() -> None:
    resolver = LocationResolver(REGISTRY)
    assert resolver.resolve("EU").countries == builtin_groups()["EU"]
    assert resolver.regions(["EU"]) == {"aws:eu-central-1", "aws:eu-west-1", "onprem:fra-dc1"}
    assert resolver.regions(["EU_ADEQUACY"]) == {"gcp:europe-west6"}


def test_region_token_is_just_that_region() -> None:
    resolver = LocationResolver(REGISTRY)
    assert resolver.regions(["aws:us-east-1", "aws:ap-south-1"]) == {"aws:us-east-1", "aws:ap-south-1"}


def test_nested_groups_union_their_members() -> None:
    resolver = LocationResolver(REGISTRY, {"OUTER": ["INNER", "aws:us-east-1"], "INNER": ["EEA", "CH"]})
    location = resolver.resolve("OUTER")
    assert location.regions == {"aws:us-east-1"}
    assert "CH" in location.countries and "NO" in location.countries
    assert resolver.regions(["OUTER"]) == {
        "aws:eu-central-1",
        "aws:eu-west-1",
        "onprem:fra-dc1",
        "gcp:europe-west6",
        "aws:us-east-1",
    }


def test_group_containing_star_is_everywhere() -> None:
    resolver = LocationResolver(REGISTRY, {"ALL": ["DE", "*"]})
    assert resolver.resolve("ALL").everywhere
    assert resolver.regions(["ALL"]) == {r.id for r in REGISTRY}


def test_unknown_token_is_an_error() -> None:
    resolver = LocationResolver(REGISTRY, {"G": ["DE", "NARNIA"]})
    with pytest.raises(LocationError, match="unknown location 'NARNIA'"):
        resolver.regions(["G"])
    with pytest.raises(LocationError, match="unknown location 'aws:mars-1'"):
        resolver.regions(["aws:mars-1"])


def test_cycle_is_an_error_naming_the_cycle() -> None:
    resolver = LocationResolver(REGISTRY, {"A": ["B"], "B": ["A"]})
    with pytest.raises(LocationError, match="group cycle: A -> B -> A"):
        resolver.resolve("A")


def test_deep_nesting_is_bounded_whatever_the_resolution_order() -> None:
    top = MAX_GROUP_DEPTH + 5
    groups = {f"G{i}": [f"G{i + 1}"] for i in range(top)}
    groups[f"G{top}"] = ["DE"]
    resolver = LocationResolver(REGISTRY, groups)
    # G6 is exactly MAX_GROUP_DEPTH groups deep; resolving it first must not let G0 through.
    assert resolver.resolve("G6").countries == {"DE"}
    with pytest.raises(LocationError, match="nested deeper"):
        resolver.resolve("G5")
    with pytest.raises(LocationError, match="nested deeper"):
        resolver.resolve("G0")
    with pytest.raises(LocationError, match="nested deeper"):
        LocationResolver(REGISTRY, groups).resolve("G0")


def test_origins_are_countries() -> None:
    resolver = LocationResolver(REGISTRY, {"DCS": ["onprem:fra-dc1"], "EUROPE": ["EEA", "CH"]})
    assert resolver.origin_countries(["EUROPE", "IN"]).countries == builtin_groups()["EEA"] | {"CH", "IN"}
    assert resolver.origin_countries(["*"]) == Location(everywhere=True)
    with pytest.raises(LocationError, match="origins are countries"):
        resolver.origin_countries(["DCS"])
    with pytest.raises(LocationError, match="origins are countries"):
        resolver.origin_countries(["aws:us-east-1"])


def test_find_group_cycles() -> None:
    groups = {
        "A": ["B", "DE"],
        "B": ["C"],
        "C": ["A", "D"],
        "D": ["E"],
        "E": [],
        "SELF": ["SELF"],
        "X": ["Y"],
        "Y": ["X", "A"],
    }
    assert find_group_cycles(groups) == [("A", "B", "C"), ("SELF",), ("X", "Y")]
    assert find_group_cycles({"A": ["B"], "B": ["EEA"]}) == []


def test_find_group_cycles_handles_long_chains_without_recursion() -> None:
    n = 20_000
    groups = {f"G{i}": [f"G{(i + 1) % n}"] for i in range(n)}
    (component,) = find_group_cycles(groups)
    assert len(component) == n
