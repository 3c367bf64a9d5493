"""A small demo catalog: a bank with EU customer data, Indian card payments and derived data.

Loaded by `domicile serve --demo` (and `make run`) into an EMPTY store only, so restarting the
demo server never overwrites what a user changed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from domicile.catalog.model import Dataset, EdgeKey, Field, Protection, Run
from domicile.catalog.store import GraphStore

log = logging.getLogger(__name__)

PRINCIPAL = "demo-loader"

DATASETS = [
    Dataset.create(
        "postgres://core-eu.bank.example:5432/core.public.customers",
        name="EU retail customers",
        owner="retail-banking@bank.example",
        description="Customer master data of the EU retail bank",
        classifications=["PII.CONTACT", "PII.IDENTITY"],
        origins=["DE", "FR", "NL"],
        locations=["aws:eu-central-1"],
        tags={"domain": "retail", "system": "core-banking"},
        fields=[Field("customer_id"), Field("email", ("PII.CONTACT",)), Field("iban", ("FINANCIAL.ACCOUNT",))],
        protection=Protection(encrypted_at_rest=True),
    ),
    Dataset.create(
        "s3://bank-eu-lake/customers",
        name="Customers (lake copy)",
        owner="data-platform@bank.example",
        description="Nightly copy of the EU customer master into the lake",
        locations=["aws:eu-central-1"],
    ),
    Dataset.create(
        "kafka://payments-in.bank.example/card-payments",
        name="Indian card payments",
        owner="payments-india@bank.example",
        description="Card payment events of the Indian acquiring business",
        classifications=["FINANCIAL.PAYMENT", "PII.CONTACT"],
        origins=["IN"],
        locations=["aws:ap-south-1"],
        tags={"domain": "payments"},
        protection=Protection(encrypted_at_rest=True, tokenized=True),
    ),
    Dataset.create(
        "s3://bank-in-lake/card-payments",
        name="Card payments (lake copy)",
        owner="data-platform@bank.example",
        locations=["aws:ap-south-1"],
    ),
    Dataset.create(
        "s3://bank-global-analytics/customer-payments-joined",
        name="Customers joined with payments",
        owner="analytics@bank.example",
        description="Join of EU customers and Indian payments for cross-sell analysis",
        locations=["aws:us-east-1"],
    ),
    Dataset.create(
        "s3://bank-global-analytics/payment-volumes-by-country",
        name="Payment volumes by country",
        owner="analytics@bank.example",
        description="Aggregated monthly payment volumes per country (no personal data)",
        locations=["aws:us-east-1"],
    ),
    Dataset.create(
        "bigquery://bank-marketing/eu.customer_segments",
        name="Anonymized customer segments",
        owner="marketing@bank.example",
        locations=["gcp:us-central1"],
    ),
]

LINEAGE = [
    (
        Run("airflow-eu/ingest_customers", "demo-run-1", "aws:eu-central-1"),
        ["postgres://core-eu.bank.example:5432/core.public.customers"],
        ["s3://bank-eu-lake/customers"],
    ),
    (
        Run("airflow-in/ingest_card_payments", "demo-run-2", "aws:ap-south-1"),
        ["kafka://payments-in.bank.example/card-payments"],
        ["s3://bank-in-lake/card-payments"],
    ),
    (
        Run("airflow-us/join_customers_payments", "demo-run-3", "aws:us-east-1"),
        ["s3://bank-eu-lake/customers", "s3://bank-in-lake/card-payments"],
        ["s3://bank-global-analytics/customer-payments-joined"],
    ),
    (
        Run("airflow-in/payment_volumes", "demo-run-4", "aws:ap-south-1", transform="aggregate"),
        ["s3://bank-in-lake/card-payments"],
        ["s3://bank-global-analytics/payment-volumes-by-country"],
    ),
    (
        Run("airflow-eu/anonymize_customer_segments", "demo-run-5", "aws:eu-central-1", transform="anonymize"),
        ["s3://bank-eu-lake/customers"],
        ["bigquery://bank-marketing/eu.customer_segments"],
    ),
]


async def load_demo_catalog(store: GraphStore) -> bool:
    """Load the demo datasets and lineage into `store` if it is empty; True when loaded."""
    if await store.revision() != 0:
        log.info("demo catalog not loaded: the store already holds data")
        return False
    for dataset in DATASETS:
        await store.upsert_dataset(dataset, principal=PRINCIPAL)
    event_time = datetime(2026, 11, 1, tzinfo=UTC)
    for template, inputs, outputs in LINEAGE:
        run = Run(template.job, template.run_id, template.run_region, template.transform, event_time)
        edges = [EdgeKey(i, o, run.job) for i in inputs for o in outputs]
        await store.record_lineage(run, edges, principal=PRINCIPAL)
    log.info("demo catalog loaded: %d datasets, %d lineage runs", len(DATASETS), len(LINEAGE))
    return True
