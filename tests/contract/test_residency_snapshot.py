"""Contract: `residency_snapshot` holds what the listings hold, reduced to what the router reads."""

from __future__ import annotations

from domicile.catalog.model import (
    Dataset,
    DatasetFilter,
    EdgeKey,
    EdgeRow,
    Field,
    PageRequest,
    ResidencyRow,
    Run,
)


async def listed(store) -> tuple[list[ResidencyRow], list[EdgeRow]]:
    datasets = await store.list_datasets(DatasetFilter(include_placeholders=False), PageRequest(size=1000))
    edges = await store.list_edges(PageRequest(size=1000))
    assert not datasets.next_token and not edges.next_token
    return (
        [d.residency_row() for d in datasets.items],
        [EdgeRow(e.input, e.output, e.job, e.transform) for e in edges.items],
    )


async def test_an_empty_catalog(store):
    snapshot = await store.residency_snapshot()
    assert snapshot.revision == 0 and list(snapshot.datasets) == [] and list(snapshot.edges) == []
    assert list(snapshot.placeholders) == []


async def test_the_snapshot_is_the_listings_reduced(store, clock):
    await store.upsert_dataset(
        Dataset.create(
            "s3://bank-eu/customers",
            classifications=["PII.CONTACT"],
            origins=["DE", "FR"],
            locations=["aws:eu-central-1", "aws:eu-west-1"],
            fields=[Field("iban", ("FINANCIAL.ACCOUNT",)), Field("email", ("PII.CONTACT", "PII"))],
        )
    )
    clock.advance()
    await store.upsert_dataset(
        Dataset.create(
            "s3://bank-in/payments",
            classifications=["FINANCIAL.PAYMENT"],
            origins=["IN"],
            locations=["azure:centralindia"],
        )
    )
    clock.advance()
    await store.upsert_dataset(Dataset.create("s3://plain"))
    clock.advance()
    await store.upsert_dataset(Dataset.create("s3://gone", classifications=["PII"]))
    clock.advance()
    await store.delete_dataset("s3://gone")
    clock.advance()
    # Lineage names "s3://derived" (a placeholder) and an edge that ends.
    await store.record_lineage(
        Run("etl", "r1", transform="aggregate"),
        [
            EdgeKey("s3://bank-eu/customers", "s3://derived", "etl"),
            EdgeKey("s3://bank-in/payments", "s3://derived", "etl"),
        ],
    )
    clock.advance()
    await store.record_lineage(Run("copy", "r1"), [EdgeKey("s3://plain", "s3://bank-in/payments", "copy")])
    clock.advance()
    await store.end_edges([EdgeKey("s3://plain", "s3://bank-in/payments", "copy")])

    snapshot = await store.residency_snapshot()
    datasets, edges = await listed(store)
    assert snapshot.revision == await store.revision()
    assert sorted(snapshot.datasets) == sorted(datasets)
    assert sorted(snapshot.edges) == sorted(edges)
    customers = next(row for row in snapshot.datasets if row.id == "s3://bank-eu/customers")
    assert customers == ResidencyRow(
        "s3://bank-eu/customers",
        frozenset({"PII.CONTACT", "PII", "FINANCIAL.ACCOUNT"}),
        frozenset({"DE", "FR"}),
        ("aws:eu-central-1", "aws:eu-west-1"),
    )
    assert {row.id for row in snapshot.datasets} == {"s3://bank-eu/customers", "s3://bank-in/payments", "s3://plain"}
    assert sorted(snapshot.edges) == [
        EdgeRow("s3://bank-eu/customers", "s3://derived", "etl", "aggregate"),
        EdgeRow("s3://bank-in/payments", "s3://derived", "etl", "aggregate"),
    ]
    assert list(snapshot.placeholders) == ["s3://derived"]


async def test_lineage_naming_a_deleted_dataset_leaves_it_deleted(store, clock):
    await store.upsert_dataset(Dataset.create("s3://gone", classifications=["PII"]))
    clock.advance()
    await store.delete_dataset("s3://gone")
    clock.advance()
    result = await store.record_lineage(
        Run("etl", "r1"), [EdgeKey("s3://src", "s3://gone", "etl"), EdgeKey("s3://gone", "s3://out", "etl")]
    )
    assert result.edges_created == 2
    assert await store.get_dataset("s3://gone") is None  # not brought back as a placeholder
    assert (await store.get_dataset("s3://src")).placeholder and (await store.get_dataset("s3://out")).placeholder
    snapshot = await store.residency_snapshot()
    assert sorted(snapshot.placeholders) == ["s3://out", "s3://src"]
    assert {(e.input, e.output) for e in snapshot.edges} == {("s3://src", "s3://gone"), ("s3://gone", "s3://out")}
    # The change feed says the same: placeholders for the new ids only.
    changes = await store.changes_since(result.revision - 1)
    assert sorted(c.dataset.id for c in changes if c.dataset is not None) == ["s3://out", "s3://src"]
