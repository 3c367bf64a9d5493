"""Contract: list_datasets filters, hierarchical classification matching, pagination."""

from __future__ import annotations

import base64

import pytest

from domicile.catalog.model import Dataset, DatasetFilter, EdgeKey, Field, PageRequest, Run
from domicile.errors import DomicileError, ErrorCode

CATALOG = [
    Dataset.create(
        "s3://bank-eu/customers",
        name="customers",
        owner="crm",
        classifications=["PII.CONTACT"],
        origins=["DE"],
        locations=["aws:eu-central-1"],
    ),
    Dataset.create(
        "s3://bank-eu/pii-like",
        name="lookalike",
        owner="pay",
        classifications=["PIIX"],
        origins=["IN"],
        locations=["azure:centralindia"],
    ),
    Dataset.create(
        "postgres://db.eu:5432/core.public.emails",
        name="Customer Emails",
        owner="crm",
        origins=["FR"],
        locations=["aws:eu-west-3", "aws:eu-central-1"],
        fields=[Field("address", ("PII.CONTACT.EMAIL",)), Field("id")],
    ),
    Dataset.create(
        "s3://bank-in/payments",
        name="payments",
        owner="pay",
        description="UPI payments, daily",
        classifications=["FINANCIAL.PAYMENT"],
        origins=["IN"],
        locations=["azure:centralindia"],
    ),
    Dataset.create("s3://bank-eu/people", name="people", owner="hr", classifications=["PII"], origins=["DE", "FR"]),
]


async def ids(store, filter: DatasetFilter, size: int = 100, **kwargs) -> list[str]:
    """Every matching id, following page tokens."""
    found: list[str] = []
    token = ""
    while True:
        page = await store.list_datasets(filter, PageRequest(size, token), **kwargs)
        found += [d.id for d in page.items]
        token = page.next_token
        if not token:
            return found


@pytest.fixture
async def catalog(store):
    for dataset in CATALOG:
        await store.upsert_dataset(dataset)
    await store.record_lineage(Run("ingest", "r1"), [EdgeKey("s3://vendor/feed", "s3://bank-in/payments", "ingest")])
    return store


async def test_no_filter_lists_everything_by_id_including_placeholders(catalog):
    assert await ids(catalog, DatasetFilter()) == sorted([d.id for d in CATALOG] + ["s3://vendor/feed"])
    without = await ids(catalog, DatasetFilter(include_placeholders=False))
    assert without == sorted(d.id for d in CATALOG)


async def test_list_returns_full_datasets(catalog):
    page = await catalog.list_datasets(DatasetFilter(owner="hr"), PageRequest(10))
    assert page.items == (await catalog.get_dataset("s3://bank-eu/people"),)
    assert page.next_token == ""


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        # own labels and field labels, hierarchically; PIIX is not below PII
        ("PII", ["postgres://db.eu:5432/core.public.emails", "s3://bank-eu/customers", "s3://bank-eu/people"]),
        ("PII.CONTACT", ["postgres://db.eu:5432/core.public.emails", "s3://bank-eu/customers"]),
        ("PII.CONTACT.EMAIL", ["postgres://db.eu:5432/core.public.emails"]),
        ("PIIX", ["s3://bank-eu/pii-like"]),
        ("FINANCIAL", ["s3://bank-in/payments"]),
        ("PII.CON", []),
        ("FINANCIAL.PAYMENT.CARD", []),
    ],
)
async def test_classification_filter_is_hierarchical(catalog, label, expected):
    assert await ids(catalog, DatasetFilter(classification=label)) == expected


async def test_single_filters(catalog):
    assert await ids(catalog, DatasetFilter(origin="IN")) == ["s3://bank-eu/pii-like", "s3://bank-in/payments"]
    assert await ids(catalog, DatasetFilter(region="aws:eu-central-1")) == [
        "postgres://db.eu:5432/core.public.emails",
        "s3://bank-eu/customers",
    ]
    assert await ids(catalog, DatasetFilter(owner="pay")) == ["s3://bank-eu/pii-like", "s3://bank-in/payments"]
    assert await ids(catalog, DatasetFilter(owner="nobody")) == []


async def test_query_is_a_case_insensitive_substring_of_id_name_or_description(catalog):
    assert await ids(catalog, DatasetFilter(query="EMAILS")) == ["postgres://db.eu:5432/core.public.emails"]
    assert await ids(catalog, DatasetFilter(query="upi")) == ["s3://bank-in/payments"]
    assert await ids(catalog, DatasetFilter(query="bank-in")) == ["s3://bank-in/payments"]
    assert await ids(catalog, DatasetFilter(query="Lookalike")) == ["s3://bank-eu/pii-like"]
    # LIKE wildcards are literal characters in a query
    assert await ids(catalog, DatasetFilter(query="%")) == []
    assert await ids(catalog, DatasetFilter(query="_")) == []


async def test_filters_combine_with_and(catalog):
    assert await ids(catalog, DatasetFilter(classification="PII", owner="crm", origin="FR")) == [
        "postgres://db.eu:5432/core.public.emails"
    ]
    assert await ids(catalog, DatasetFilter(classification="PII", region="aws:eu-central-1", query="cust")) == [
        "postgres://db.eu:5432/core.public.emails",
        "s3://bank-eu/customers",
    ]
    assert await ids(catalog, DatasetFilter(classification="PII", origin="IN")) == []


async def test_filters_apply_to_the_state_as_of(catalog, clock):
    before = clock.advance()  # after the catalog fixture's writes, before the ones below
    clock.advance()
    await catalog.upsert_dataset(Dataset.create("s3://bank-eu/customers", owner="crm", classifications=["PUBLIC"]))
    await catalog.delete_dataset("s3://bank-eu/people")

    assert await ids(catalog, DatasetFilter(classification="PII")) == ["postgres://db.eu:5432/core.public.emails"]
    assert await ids(catalog, DatasetFilter(classification="PII"), as_of=before) == [
        "postgres://db.eu:5432/core.public.emails",
        "s3://bank-eu/customers",
        "s3://bank-eu/people",
    ]
    assert await ids(catalog, DatasetFilter(classification="PUBLIC"), as_of=before) == []


async def test_pages_never_skip_or_repeat_across_inserts_and_deletes(store):
    for i in range(0, 40, 2):
        await store.upsert_dataset(Dataset.create(f"s3://d/{i:03d}"))
    survivors = {f"s3://d/{i:03d}" for i in range(0, 40, 2)} - {"s3://d/030"}

    seen: list[str] = []
    token = ""
    step = 0
    while True:
        page = await store.list_datasets(DatasetFilter(), PageRequest(3, token))
        assert len(page.items) <= 3
        seen += [d.id for d in page.items]
        # Between pages, insert before and after the cursor and delete one dataset.
        await store.upsert_dataset(Dataset.create(f"s3://d/{2 * step + 1:03d}"))
        await store.upsert_dataset(Dataset.create(f"s3://d/{39 - 2 * step:03d}"))
        if step == 2:
            await store.delete_dataset("s3://d/030")
        step += 1
        token = page.next_token
        if not token:
            break

    assert len(seen) == len(set(seen))
    assert survivors <= set(seen)
    assert seen == sorted(seen)


async def test_page_size_bounds_each_page(catalog):
    first = await catalog.list_datasets(DatasetFilter(), PageRequest(2))
    assert len(first.items) == 2 and first.next_token
    rest = await catalog.list_datasets(DatasetFilter(), PageRequest(100, first.next_token))
    assert [d.id for d in first.items + rest.items] == await ids(catalog, DatasetFilter())
    assert rest.next_token == ""


@pytest.mark.parametrize(
    "token",
    [
        "not a token!",
        "%%%",
        base64.urlsafe_b64encode(b"definitely not json").decode(),
        base64.urlsafe_b64encode(b"{}").decode(),
        base64.urlsafe_b64encode(b"[1, 2, 3]").decode(),
    ],
)
async def test_malformed_page_token_is_invalid_argument(catalog, token):
    with pytest.raises(DomicileError) as error:
        await catalog.list_datasets(DatasetFilter(), PageRequest(2, token))
    assert error.value.code is ErrorCode.INVALID_ARGUMENT
    assert [v.field for v in error.value.violations] == ["page_token"]
