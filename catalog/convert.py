"""Translation between catalog protobuf messages and domain values (no grpc here)."""

from __future__ import annotations

from domicile.catalog.model import Dataset, DatasetRevision, Field, Protection, RevisionChange
from domicile.catalog.regions import Region
from domicile.timeconv import to_timestamp
from domicile.v1 import catalog_pb2


def dataset_from_proto(message: catalog_pb2.Dataset) -> Dataset:
    """The client-settable content of a Dataset message (output-only fields are ignored)."""
    return Dataset.create(
        message.id,
        name=message.name,
        owner=message.owner,
        description=message.description,
        classifications=message.classifications,
        origins=message.origins,
        locations=message.locations,
        tags=dict(message.tags),
        fields=[Field(f.name, tuple(f.classifications)) for f in message.fields],
        protection=Protection(
            encrypted_at_rest=message.protection.encrypted_at_rest,
            field_level_encrypted=message.protection.field_level_encrypted,
            tokenized=message.protection.tokenized,
        ),
    )


def dataset_to_proto(dataset: Dataset) -> catalog_pb2.Dataset:
    message = catalog_pb2.Dataset(
        id=dataset.id,
        name=dataset.name,
        owner=dataset.owner,
        description=dataset.description,
        classifications=dataset.classifications,
        origins=dataset.origins,
        locations=dataset.locations,
        tags=dict(dataset.tags),
        fields=[catalog_pb2.Field(name=f.name, classifications=f.classifications) for f in dataset.fields],
        protection=catalog_pb2.Protection(
            encrypted_at_rest=dataset.protection.encrypted_at_rest,
            field_level_encrypted=dataset.protection.field_level_encrypted,
            tokenized=dataset.protection.tokenized,
        ),
        revision=dataset.revision,
        placeholder=dataset.placeholder,
        updated_by=dataset.updated_by,
    )
    if dataset.create_time is not None:
        message.create_time.CopyFrom(to_timestamp(dataset.create_time))
    if dataset.update_time is not None:
        message.update_time.CopyFrom(to_timestamp(dataset.update_time))
    return message


def region_to_proto(region: Region) -> catalog_pb2.Region:
    return catalog_pb2.Region(
        id=region.id,
        country=region.country,
        provider=region.provider,
        name=region.name,
        display_name=region.display_name,
        private=region.private,
    )


_REVISION_CHANGES = {
    RevisionChange.CREATED: catalog_pb2.REVISION_CHANGE_CREATED,
    RevisionChange.UPDATED: catalog_pb2.REVISION_CHANGE_UPDATED,
    RevisionChange.DELETED: catalog_pb2.REVISION_CHANGE_DELETED,
}


def revision_to_proto(revision: DatasetRevision) -> catalog_pb2.DatasetRevision:
    message = catalog_pb2.DatasetRevision(
        revision=revision.revision,
        time=to_timestamp(revision.time),
        principal=revision.principal,
        change=_REVISION_CHANGES[revision.change],
    )
    if revision.dataset is not None:
        message.dataset.CopyFrom(dataset_to_proto(revision.dataset))
    return message
