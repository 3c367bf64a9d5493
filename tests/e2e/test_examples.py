"""The files in examples/ do what their comments say, against a real server: the run event is
an event the endpoint records, openlineage.yml configures the official client to send events
over mutual TLS with a token, and domicile.yaml holds every setting and starts a server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from grpc_health.v1 import health_pb2, health_pb2_grpc
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from pydantic import BaseModel

from domicile.config import Settings, load_settings
from domicile.openlineage import RESIDENCY, ResidencyDatasetFacet, ResidencyRunFacet
from domicile.router.decision_log.checkpoints import ensure_key
from domicile.security.dev_credentials import (
    DEV_ALGORITHM,
    dev_paths,
    ensure_dev_credentials,
    mint_dev_token,
)
from domicile.security.tokens import mint_token
from domicile.server import create_server
from tests.e2e.conftest import insecure_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_the_run_event_is_recorded(tmp_path):
    running = await create_server(insecure_settings(tmp_path, policy=EXAMPLES / "policy.yaml"))
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://127.0.0.1:{running.http_port}/api/v1/lineage",
                data=(EXAMPLES / "run-event.json").read_bytes(),
                headers={"Content-Type": "application/json"},
            ) as answer,
        ):
            body = await answer.json()
        assert answer.status == 200, body
        assert body["recorded"] and body["edges_created"] == 1 and body["job"] == "airflow-eu/anonymize_customers"
        customers = await running.app.store.get_dataset("s3://bank-eu-lake/customers")
        assert customers.origins == ("DE", "FR") and customers.classifications == ("PII.CONTACT",)
        assert customers.locations == ("aws:eu-central-1",)
        # The job is granted `anonymize` by the example policy: the output holds no PII.
        explained = running.app.router.explain("s3://bank-eu-lake/customers-anonymized")
        assert dict(explained.attributes.classifications) == {}
    finally:
        await running.stop(0)


async def test_openlineage_yml_sends_events_with_a_token_over_mutual_tls(tmp_path, monkeypatch):
    """The example as a pipeline uses it: run where `.domicile/dev` holds the dev credentials
    (as in the clone `make run` runs in), with the token in the environment."""
    data_dir = tmp_path / ".domicile"
    running = await create_server(
        load_settings(
            dev=True,
            listen="127.0.0.1:0",
            http_listen="127.0.0.1:0",
            store=f"sqlite:///{tmp_path / 'catalog.db'}",
            data_dir=data_dir,
            policy=EXAMPLES / "policy.yaml",
        )
    )
    try:
        config = (EXAMPLES / "openlineage.yml").read_text("utf-8")
        assert "url: https://localhost:8080" in config
        (tmp_path / "openlineage.yml").write_text(
            config.replace("https://localhost:8080", f"https://localhost:{running.http_port}"), "utf-8"
        )
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("OPENLINEAGE_CONFIG", raising=False)
        token = mint_dev_token(data_dir, scopes=["lineage:write"], subject="airflow-eu")
        monkeypatch.setenv("OPENLINEAGE__TRANSPORT__AUTH__APIKEY", token)
        client = OpenLineageClient()
        event = RunEvent(
            eventType=RunState.COMPLETE,
            eventTime="2026-11-30T10:00:00Z",
            run=Run(
                runId="0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6c",
                facets={RESIDENCY: ResidencyRunFacet(region="aws:eu-central-1")},
            ),
            job=Job(namespace="airflow-eu", name="copy_customers"),
            producer="https://github.com/example/bank-pipelines",
            inputs=[
                InputDataset(
                    "s3://bank-eu-lake",
                    "customers",
                    facets={RESIDENCY: ResidencyDatasetFacet(region="aws:eu-central-1", origins=["DE"])},
                )
            ],
            outputs=[OutputDataset("s3://bank-eu-lake", "customers-copy")],
        )
        await asyncio.to_thread(client.emit, event)
        copy = await running.app.store.get_dataset("s3://bank-eu-lake/customers-copy")
        assert copy is not None and copy.updated_by == "airflow-eu"
    finally:
        await running.stop(0)


def missing_settings(model: type[BaseModel], written: dict[str, Any], prefix: str = "") -> list[str]:
    """The settings of `model` (sections recursively) that `written` leaves out."""
    missing = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if name not in written:
            missing.append(f"{prefix}{name}")
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            missing += missing_settings(annotation, written[name], f"{prefix}{name}.")
    return missing


def test_domicile_yaml_holds_every_setting():
    example = EXAMPLES / "domicile.yaml"
    assert missing_settings(Settings, yaml.safe_load(example.read_text("utf-8"))) == []
    settings = load_settings(example)  # (unknown keys would be refused)
    assert settings.store.startswith("neo4j+s://") and settings.tls.client_ca_file is not None


async def test_domicile_yaml_starts_a_server(tmp_path):
    """The example with its files made real (dev credentials for the company PKI and identity
    provider, SQLite for the Neo4j cluster): TLS, mTLS and JWT as configured."""
    ensure_dev_credentials(tmp_path)
    paths = dev_paths(tmp_path)
    secret = tmp_path / "siem.secret"
    secret.write_text("a shared secret of the SIEM's webhook\n")
    checkpoint_key = tmp_path / "checkpoint-key.pem"
    ensure_key(checkpoint_key)
    text = (EXAMPLES / "domicile.yaml").read_text("utf-8")
    for old, new in (
        ("/etc/domicile/tls/server.pem", paths.server_cert),
        ("/etc/domicile/tls/server-key.pem", paths.server_key),
        ("/etc/domicile/tls/clients-ca.pem", paths.ca_cert),
        ("/etc/domicile/auth/jwks.json", paths.jwks),
        ("/etc/domicile/policy.yaml", EXAMPLES / "policy.yaml"),
        ("/etc/domicile/webhooks/siem.secret", secret),
        ("/var/lib/domicile", tmp_path / "data"),
        ("/etc/domicile/audit/checkpoint-key.pem", checkpoint_key),
        ("/mnt/audit-anchor", tmp_path),
    ):
        assert old in text
        text = text.replace(old, str(new))
    config = tmp_path / "domicile.yaml"
    config.write_text(text, "utf-8")
    settings = load_settings(
        config,
        store=f"sqlite:///{tmp_path / 'catalog.db'}",
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        ops_listen="127.0.0.1:0",
        health_listen="127.0.0.1:0",
        console={"listen": ""},
    )
    assert settings.console.public_url == "https://domicile.bank.example"  # the rest of the section kept
    running = await create_server(settings)
    try:
        key = load_pem_private_key(paths.jwt_key.read_bytes(), password=None)
        kid = json.loads(paths.jwks.read_text())["keys"][0]["kid"]
        token = mint_token(
            key,
            algorithm=DEV_ALGORITHM,
            issuer=settings.auth.issuer,
            audience=settings.auth.audience,
            subject="platform-probe",
            scopes=[],
            ttl_seconds=60,
            kid=kid,
        )
        credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(
                paths.ca_cert.read_bytes(), paths.client_key.read_bytes(), paths.client_cert.read_bytes()
            ),
            grpc.access_token_call_credentials(token),
        )
        async with grpc.aio.secure_channel(f"localhost:{running.port}", credentials) as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        assert (tmp_path / "data").is_dir()
    finally:
        await running.stop(0)


@pytest.fixture(autouse=True)
def _no_stray_openlineage_config(monkeypatch):
    for name in ("OPENLINEAGE_URL", "OPENLINEAGE_DISABLED"):
        monkeypatch.delenv(name, raising=False)


def test_examples_are_all_exercised():
    assert sorted(p.name for p in EXAMPLES.iterdir()) == [
        "airflow",
        "broken-policy.yaml",
        "dbt",
        "domicile.yaml",
        "openlineage.yml",
        "policy.yaml",
        "run-event.json",
    ]
    # (policy.yaml and broken-policy.yaml are exercised by tests/unit/test_policy*.py, airflow/
    # and dbt/ by tests/pipelines.)
