"""The `lineage` settings section (domicile.config.LineageSettings)."""

from __future__ import annotations

import pytest

from domicile.config import SettingsError, load_settings


def test_namespace_regions_keep_their_order():
    settings = load_settings(
        lineage={"namespace_regions": {"s3://bank-eu-*": "aws:eu-central-1", "s3://*": "aws:us-east-1"}}
    )
    assert list(settings.lineage.namespace_regions.items()) == [
        ("s3://bank-eu-*", "aws:eu-central-1"),
        ("s3://*", "aws:us-east-1"),
    ]


@pytest.mark.parametrize(
    ("lineage", "message"),
    [
        ({"namespace_regions": {"s3://x": "Frankfurt"}}, "lineage.namespace_regions"),
        ({"namespace_regions": {"": "aws:eu-central-1"}}, "empty pattern"),
        ({"default_max_depth": 40, "max_depth_limit": 20}, "exceeds max_depth_limit"),
        ({"max_nodes": 0}, "lineage.max_nodes"),
    ],
)
def test_invalid_lineage_settings_are_named(lineage, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(lineage=lineage)
