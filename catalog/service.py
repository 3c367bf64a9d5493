"""CatalogService servicer: validates requests, calls the GraphStore, translates messages.

Errors are raised as DomicileError and mapped to gRPC statuses by
`domicile.grpc_errors.ErrorMappingInterceptor`.
"""

from __future__ import annotations

from domicile.app import App
from domicile.catalog.convert import dataset_from_proto, dataset_to_proto, region_to_proto, revision_to_proto
from domicile.catalog.model import DatasetFilter, PageRequest
from domicile.catalog.validation import (
    MAX_OWNER,
    MAX_QUERY,
    check_country,
    check_id,
    check_label,
    check_length,
    check_region,
    check_revision,
    validate_dataset,
    validate_page_size,
)
from domicile.errors import FieldErrors, invalid_field, not_found
from domicile.security.context import current_principal
from domicile.timeconv import optional_time
from domicile.v1 import catalog_pb2, catalog_pb2_grpc


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    async def UpsertDataset(
        self, request: catalog_pb2.UpsertDatasetRequest, context
    ) -> catalog_pb2.UpsertDatasetResponse:
        if not request.HasField("dataset"):
            raise invalid_field("dataset", "is required")
        dataset = validate_dataset(dataset_from_proto(request.dataset), self._app.regions())
        errors = FieldErrors()
        check_revision(errors, "expected_revision", request.expected_revision)
        errors.raise_if_any()
        principal = current_principal()
        stored = await self._app.store.upsert_dataset(
            dataset, expected_revision=request.expected_revision, principal=principal
        )
        await self._app.after_write(stored.revision)
        if self._app.access is not None:
            self._app.access.catalog_write(principal, stored.id)
        return catalog_pb2.UpsertDatasetResponse(dataset=dataset_to_proto(stored))

    async def GetDataset(self, request: catalog_pb2.GetDatasetRequest, context) -> catalog_pb2.GetDatasetResponse:
        errors = FieldErrors()
        lookup = check_id(errors, "id", request.id)
        as_of = optional_time(errors, request, "as_of")
        errors.raise_if_any()
        dataset = None
        if lookup != request.id:  # an id stored as written beside its normal form (docs/catalog.md)
            dataset = await self._app.store.get_dataset(request.id, as_of=as_of)
        if dataset is None:
            dataset = await self._app.store.get_dataset(lookup, as_of=as_of)
        if dataset is None:
            when = f" at {as_of.isoformat()}" if as_of else ""
            raise not_found(f"dataset {request.id!r} not found{when}")
        return catalog_pb2.GetDatasetResponse(dataset=dataset_to_proto(dataset))

    async def ListDatasets(self, request: catalog_pb2.ListDatasetsRequest, context) -> catalog_pb2.ListDatasetsResponse:
        errors = FieldErrors()
        if request.classification:
            check_label(errors, "classification", request.classification)
        if request.origin:
            check_country(errors, "origin", request.origin)
        if request.region:
            check_region(errors, "region", request.region, self._app.regions())
        check_length(errors, "owner", request.owner, MAX_OWNER)
        check_length(errors, "query", request.query, MAX_QUERY)
        check_length(errors, "page_token", request.page_token, 4096)
        size = validate_page_size(errors, request.page_size)
        as_of = optional_time(errors, request, "as_of")
        errors.raise_if_any()
        page = await self._app.store.list_datasets(
            DatasetFilter(
                classification=request.classification,
                origin=request.origin,
                region=request.region,
                owner=request.owner,
                query=request.query,
            ),
            PageRequest(size=size, token=request.page_token),
            as_of=as_of,
        )
        return catalog_pb2.ListDatasetsResponse(
            datasets=[dataset_to_proto(d) for d in page.items], next_page_token=page.next_token
        )

    async def DeleteDataset(
        self, request: catalog_pb2.DeleteDatasetRequest, context
    ) -> catalog_pb2.DeleteDatasetResponse:
        errors = FieldErrors()
        lookup = check_id(errors, "id", request.id)
        check_revision(errors, "expected_revision", request.expected_revision)
        errors.raise_if_any()
        if lookup != request.id and await self._app.store.get_dataset(request.id) is not None:
            lookup = request.id  # an id stored as written beside its normal form (docs/catalog.md)
        principal = current_principal()
        revision = await self._app.store.delete_dataset(
            lookup, expected_revision=request.expected_revision, principal=principal
        )
        await self._app.after_write(revision)
        if self._app.access is not None:
            self._app.access.catalog_write(principal, lookup)
        return catalog_pb2.DeleteDatasetResponse()

    async def ListDatasetRevisions(
        self, request: catalog_pb2.ListDatasetRevisionsRequest, context
    ) -> catalog_pb2.ListDatasetRevisionsResponse:
        errors = FieldErrors()
        dataset_id = check_id(errors, "id", request.id)
        check_length(errors, "page_token", request.page_token, 4096)
        size = validate_page_size(errors, request.page_size)
        errors.raise_if_any()
        page = await self._app.store.dataset_revisions(dataset_id, PageRequest(size=size, token=request.page_token))
        return catalog_pb2.ListDatasetRevisionsResponse(
            revisions=[revision_to_proto(r) for r in page.items], next_page_token=page.next_token
        )

    async def ListRegions(self, request: catalog_pb2.ListRegionsRequest, context) -> catalog_pb2.ListRegionsResponse:
        return catalog_pb2.ListRegionsResponse(regions=[region_to_proto(r) for r in self._app.regions()])
