"""The builtin region registry and location data (catalog/data/*.yaml) as loaded by
catalog.regions: counts, facts residency rules depend on, and the data's integrity."""

from __future__ import annotations

from collections import Counter
from importlib import resources

import pytest
import yaml

from domicile.catalog.regions import (
    REGION_ID,
    Region,
    RegionRegistry,
    builtin_groups,
    country_names,
    is_country,
    iso_countries,
    suggest_country,
)

EU_MEMBERS = {
    "AT",
    "BE",
    "BG",
    "CY",
    "CZ",
    "DE",
    "DK",
    "EE",
    "ES",
    "FI",
    "FR",
    "GR",
    "HR",
    "HU",
    "IE",
    "IT",
    "LT",
    "LU",
    "LV",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SE",
    "SI",
    "SK",
}


def _raw(name: str) -> dict:
    # The registry keeps the last of duplicate ids and takes YAML values unchecked, so the
    # integrity checks read the files themselves, from where the package loads them.
    return yaml.safe_load(resources.files("domicile.catalog").joinpath(f"data/{name}").read_text("utf-8"))


def _raw_region_entries() -> list[tuple[str, dict]]:
    providers = _raw("regions.yaml")["providers"]
    return [(provider, entry) for provider, entries in providers.items() for entry in entries]


# --- countries -------------------------------------------------------------------------


def test_iso_list_has_every_officially_assigned_code():
    codes = iso_countries()
    assert len(codes) == 249
    assert all(len(c) == 2 and c.isascii() and c.isupper() for c in codes)


def test_iso_list_has_no_duplicates_and_only_strings():
    raw = _raw("locations.yaml")["countries"]
    # An unquoted NO in YAML 1.1 is boolean false: this is the check that would catch it.
    assert all(set(c) == {"code", "name"} and isinstance(c["code"], str) and c["name"] for c in raw)
    codes = [c["code"] for c in raw]
    assert len(codes) == len(set(codes)) == 249
    assert country_names()["NO"] == "Norway" and country_names()["CI"] == "Côte d'Ivoire"


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("de", ["DE"]), (" De ", ["DE"]), ("UK", ["GB"]), ("EL", ["GR"]), ("Germany", ["DE"]), ("germny", ["DE"])],
)
def test_mistyped_countries_get_the_code_meant(typed, meant):
    assert suggest_country(typed) == meant


def test_mistyped_regions_get_the_ids_meant():
    registry = RegionRegistry.builtin()
    assert registry.suggest("eu-west-1") == ["aws:eu-west-1"]  # the provider left out
    assert registry.suggest("AWS:EU-WEST-1") == ["aws:eu-west-1"]
    assert registry.suggest("aws:eu-wset-1")[0] == "aws:eu-west-1"
    assert registry.suggest("europe-west3") == ["gcp:europe-west3"]
    assert registry.suggest("nowhere-at-all") == []


@pytest.mark.parametrize("code", ["NO", "GB", "GR", "HK", "TW", "PS", "AX", "AQ", "SS"])
def test_assigned_codes_are_countries(code):
    assert is_country(code)


@pytest.mark.parametrize("code", ["EU", "UK", "EL", "XK", "no", "", "DEU"])
def test_reserved_and_malformed_codes_are_not_countries(code):
    assert not is_country(code)


# --- groups ------------------------------------------------------------------------------


def test_builtin_groups_are_exactly_eu_eea_adequacy():
    assert set(builtin_groups()) == {"EU", "EEA", "EU_ADEQUACY"}


def test_eu_has_the_27_member_states():
    eu = builtin_groups()["EU"]
    assert len(eu) == 27
    assert eu == EU_MEMBERS
    assert "GB" not in eu  # left on 2020-01-31


def test_eea_is_eu_plus_iceland_liechtenstein_norway():
    groups = builtin_groups()
    assert len(groups["EEA"]) == 30
    assert groups["EEA"] == groups["EU"] | {"IS", "LI", "NO"}
    assert "CH" not in groups["EEA"]


def test_eu_adequacy_facts():
    adequacy = builtin_groups()["EU_ADEQUACY"]
    # The DPF adequacy decision covers certified US organisations, not the country.
    assert "US" not in adequacy
    assert {"AD", "AR", "CA", "CH", "FO", "GB", "GG", "IL", "IM", "JE", "JP", "KR", "NZ", "UY"} <= adequacy
    assert "BR" in adequacy  # Implementing Decision (EU) 2026/179
    # Adequacy decisions concern third countries; an EEA state never needs one.
    assert not adequacy & builtin_groups()["EEA"]


def test_groups_hold_only_valid_codes_and_carry_provenance():
    raw_groups = _raw("locations.yaml")["groups"]
    for name, spec in raw_groups.items():
        assert set(spec) == {"source", "as_of", "countries"}, name
        assert spec["source"] and spec["as_of"], name
        assert all(isinstance(c, str) for c in spec["countries"]), name
        assert len(spec["countries"]) == len(set(spec["countries"])), name
    for name, members in builtin_groups().items():
        assert members <= iso_countries(), f"{name}: {sorted(members - iso_countries())}"


# --- regions -----------------------------------------------------------------------------


def test_every_region_id_matches_the_id_syntax():
    for region in RegionRegistry.builtin():
        assert REGION_ID.fullmatch(region.id), region.id


def test_no_duplicate_region_ids_in_the_data():
    counts = Counter(f"{provider}:{entry['name']}" for provider, entry in _raw_region_entries())
    assert [rid for rid, n in counts.items() if n > 1] == []
    assert len(RegionRegistry.builtin()) == len(counts)


def test_every_region_has_a_valid_country_and_a_display_name():
    for _provider, entry in _raw_region_entries():
        assert set(entry) == {"name", "country", "display_name"}, entry
        assert isinstance(entry["country"], str) and is_country(entry["country"]), entry
        assert entry["display_name"], entry


def test_provider_coverage():
    by_provider = Counter(region.provider for region in RegionRegistry.builtin())
    assert set(by_provider) == {"aws", "gcp", "azure"}
    # Lower bounds from the providers' published lists: AWS 34 commercial + 2 GovCloud + 2
    # China + 1 European Sovereign Cloud; GCP 43; Azure 59 public + 5 Government + 6 China.
    assert by_provider["aws"] >= 39
    assert by_provider["gcp"] >= 43
    assert by_provider["azure"] >= 69
    assert not any(region.private for region in RegionRegistry.builtin())


@pytest.mark.parametrize(
    ("region_id", "country"),
    [
        ("aws:eu-central-1", "DE"),
        ("aws:eu-central-2", "CH"),
        ("aws:ap-south-1", "IN"),
        ("aws:ap-east-1", "HK"),
        ("aws:me-central-1", "AE"),
        ("aws:il-central-1", "IL"),
        ("aws:us-gov-west-1", "US"),
        ("aws:cn-northwest-1", "CN"),
        ("aws:eusc-de-east-1", "DE"),
        ("gcp:europe-west6", "CH"),
        ("gcp:asia-east2", "HK"),
        ("gcp:asia-east1", "TW"),
        ("gcp:me-central2", "SA"),
        ("gcp:europe-west4", "NL"),
        ("azure:centralindia", "IN"),
        ("azure:uaenorth", "AE"),
        ("azure:switzerlandnorth", "CH"),
        ("azure:norwayeast", "NO"),
        ("azure:eastasia", "HK"),
        ("azure:northeurope", "IE"),
        ("azure:westeurope", "NL"),
        ("azure:chinanorth3", "CN"),
        ("azure:usgovvirginia", "US"),
    ],
)
def test_region_country_spot_checks(region_id, country):
    assert RegionRegistry.builtin().country_of(region_id) == country


def test_region_parts_and_lookup():
    registry = RegionRegistry.builtin()
    region = registry.get("gcp:europe-west6")
    assert region == Region("gcp:europe-west6", "CH", "Zurich")
    assert (region.provider, region.name) == ("gcp", "europe-west6")
    assert "aws:us-east-1" in registry
    assert registry.get("aws:mars-north-1") is None
    with pytest.raises(KeyError):
        registry.country_of("aws:mars-north-1")


def test_iteration_is_sorted_by_id():
    ids = [region.id for region in RegionRegistry.builtin()]
    assert ids == sorted(ids)


def test_private_regions_extend_but_cannot_relocate_builtin_ones():
    builtin = RegionRegistry.builtin()
    extended = builtin.with_private([Region("onprem:fra-dc1", "DE")])
    assert extended.get("onprem:fra-dc1") == Region("onprem:fra-dc1", "DE", "", private=True)
    assert len(extended) == len(builtin) + 1
    assert "onprem:fra-dc1" not in builtin
    with pytest.raises(ValueError, match="builtin"):
        builtin.with_private([Region("aws:eu-central-1", "US")])
