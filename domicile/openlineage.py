"""Domicile's `residency` OpenLineage facets, as classes of the official Python client.

Needs openlineage-python (`pip install 'domicile[openlineage]'`). A pipeline tells Domicile
where a dataset is stored, whose data it holds and how it is classified, and where a run
executed and what kind of transform it applied:

    from openlineage.client.event_v2 import InputDataset, Run
    from domicile.openlineage import RESIDENCY, ResidencyDatasetFacet, ResidencyRunFacet

    customers = InputDataset(
        "s3://bank-eu-lake",
        "customers",
        facets={RESIDENCY: ResidencyDatasetFacet(region="aws:eu-central-1", origins=["DE"],
                                                 classifications=["PII.CONTACT"])},
    )
    run = Run(runId=run_id, facets={RESIDENCY: ResidencyRunFacet(region="aws:eu-central-1",
                                                                 transform="anonymize")})

The facets' JSON Schemas ship in `domicile/lineage/schemas/`; docs/lineage.md says what
Domicile does with each field. The values are checked here as the server checks them, so a
mistake shows where the facet is built rather than as a refused event.
"""

from __future__ import annotations

from typing import Any

import attr

try:
    from openlineage.client.facet_v2 import DatasetFacet, RunFacet
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("domicile.openlineage needs the OpenLineage client: pip install 'domicile[openlineage]'") from exc

from domicile.catalog.regions import REGION_ID, is_country
from domicile.catalog.validation import LABEL, MAX_LABEL_LENGTH
from domicile.lineage.openlineage import RESIDENCY_FACET
from domicile.lineage.recording import MAX_TRANSFORM, TRANSFORM

RESIDENCY = RESIDENCY_FACET
"""The key of both facets in a dataset's or a run's `facets`."""

DATASET_FACET_SCHEMA = "https://domicile.dev/spec/facets/1-0-0/ResidencyDatasetFacet.json#/$defs/ResidencyDatasetFacet"
RUN_FACET_SCHEMA = "https://domicile.dev/spec/facets/1-0-0/ResidencyRunFacet.json#/$defs/ResidencyRunFacet"


def _region(_instance: Any, attribute: attr.Attribute, value: str | None) -> None:
    if value is not None and not REGION_ID.match(value):
        raise ValueError(f"{attribute.name}: {value!r} is not a region id such as aws:eu-central-1")


def _origins(_instance: Any, attribute: attr.Attribute, value: list[str]) -> None:
    bad = [code for code in value if not is_country(code)]
    if bad:
        raise ValueError(f"{attribute.name}: {bad!r} are not ISO 3166-1 alpha-2 country codes such as DE")


def _labels(_instance: Any, attribute: attr.Attribute, value: list[str]) -> None:
    bad = [label for label in value if len(label) > MAX_LABEL_LENGTH or not LABEL.match(label)]
    if bad:
        raise ValueError(f"{attribute.name}: {bad!r} are not labels such as PII.CONTACT")


def _transform(_instance: Any, attribute: attr.Attribute, value: str | None) -> None:
    if value is not None and (len(value) > MAX_TRANSFORM or not TRANSFORM.match(value)):
        raise ValueError(f"{attribute.name}: {value!r} is not a transform name such as anonymize")


@attr.define
class ResidencyDatasetFacet(DatasetFacet):
    """Where this copy of the dataset is stored (`region`, a region id; when absent the
    server's `lineage.namespace_regions` maps the namespace), the countries of its data
    subjects (`origins`, ISO 3166-1 alpha-2) and its classification labels. Domicile adds
    them to what it knows of the dataset; it never removes any."""

    region: str | None = attr.field(default=None, validator=_region)
    origins: list[str] = attr.field(factory=list, converter=list, validator=_origins)
    classifications: list[str] = attr.field(factory=list, converter=list, validator=_labels)

    @staticmethod
    def _get_schema() -> str:
        return DATASET_FACET_SCHEMA


@attr.define
class ResidencyRunFacet(RunFacet):
    """Where the run executed (`region`; when absent `lineage.namespace_regions` maps the
    job namespace) and the kind of transform it applied (`transform`, as the policy's
    declassifiers name it; absent for plain copies and joins)."""

    region: str | None = attr.field(default=None, validator=_region)
    transform: str | None = attr.field(default=None, validator=_transform)

    @staticmethod
    def _get_schema() -> str:
        return RUN_FACET_SCHEMA
