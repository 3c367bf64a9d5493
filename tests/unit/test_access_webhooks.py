"""Webhook delivery of access alerts: CloudEvents, signature, retries and the dead letter,
against a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pytest
from aiohttp import web

from domicile.access.webhooks import SIGNATURE_HEADER, WebhookDispatcher
from domicile.config import WebhookSettings
from domicile.errors import DomicileError

SECRET = b"s3cr3t-for-the-siem-receiver"


class Receiver:
    """A local HTTP endpoint answering with the statuses it is given, in order (then 204)."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 204)


@pytest.fixture
async def receiver():
    async def start(statuses=()):
        target = Receiver(statuses)
        app = web.Application()
        app.router.add_post("/hook", target.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        target.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        runners.append(runner)
        return target

    runners = []
    yield start
    for runner in runners:
        await runner.cleanup()


def dispatcher(tmp_path, url, *, attempts=3, events=("observed_violation", "access_anomaly")):
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    hook = WebhookSettings(url=url, secret_file=secret_file, events=list(events))
    return WebhookDispatcher(
        [hook], attempts=attempts, timeout=2.0, dead_letter=tmp_path / "dead.jsonl", first_backoff=0.01
    )


async def wait_for(condition, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_an_alert_is_a_signed_cloudevent(tmp_path, receiver):
    target = await receiver()
    hooks = dispatcher(tmp_path, target.url)
    hooks.publish("observed_violation", "s3://bank-eu/customers", {"violation_id": "v1", "late": False})
    await wait_for(lambda: target.requests)
    headers, body = target.requests[0]
    assert headers["Content-Type"] == "application/cloudevents+json"
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected
    event = json.loads(body)
    assert event["specversion"] == "1.0"
    assert event["type"] == "dev.domicile.access.observed_violation.v1"
    assert (event["source"], event["subject"]) == ("/domicile/access", "s3://bank-eu/customers")
    assert event["data"] == {"violation_id": "v1", "late": False}
    assert event["id"] and event["time"]
    await hooks.close()
    assert not (tmp_path / "dead.jsonl").exists()


async def test_failed_deliveries_are_retried(tmp_path, receiver):
    target = await receiver([500, 503])
    hooks = dispatcher(tmp_path, target.url, attempts=3)
    hooks.publish("access_anomaly", "job", {"anomaly_id": "a1"})
    await wait_for(lambda: len(target.requests) == 3)
    await hooks.close()
    assert len({json.loads(body)["id"] for _, body in target.requests}) == 1  # the same event each time
    assert not (tmp_path / "dead.jsonl").exists()


async def test_an_undeliverable_alert_goes_to_the_dead_letter_file(tmp_path, receiver):
    target = await receiver([500, 500])
    hooks = dispatcher(tmp_path, target.url, attempts=2)
    hooks.publish("access_anomaly", "job", {"anomaly_id": "a1"})
    await wait_for((tmp_path / "dead.jsonl").exists)
    await hooks.close()
    (record,) = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert (record["url"], record["attempts"], record["error"]) == (target.url, 2, "HTTP 500")
    assert record["event"]["data"] == {"anomaly_id": "a1"}


async def test_an_unreachable_receiver_is_dead_lettered_too(tmp_path, receiver):
    target = await receiver()
    hooks = dispatcher(tmp_path, target.url.replace("/hook", "/missing"), attempts=1)
    hooks.publish("observed_violation", "d", {})
    await wait_for((tmp_path / "dead.jsonl").exists)
    await hooks.close()
    assert json.loads((tmp_path / "dead.jsonl").read_text())["error"] == "HTTP 404"


async def test_an_alert_still_pending_at_shutdown_is_dead_lettered(tmp_path, receiver):
    target = await receiver([500])
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET)
    hooks = WebhookDispatcher(
        [WebhookSettings(url=target.url, secret_file=secret_file)],
        attempts=5,
        timeout=2.0,
        dead_letter=tmp_path / "dead.jsonl",
        first_backoff=60,  # its retry would come long after the shutdown
    )
    hooks.publish("observed_violation", "s3://bank-eu/customers", {"violation_id": "v1"})
    await wait_for(lambda: target.requests)
    await hooks.close(grace=0.1)
    (record,) = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert (record["attempts"], record["error"]) == (1, "shutdown: HTTP 500")
    assert record["event"]["data"] == {"violation_id": "v1"}


async def test_alerts_a_webhook_does_not_take_are_not_sent(tmp_path, receiver):
    target = await receiver()
    hooks = dispatcher(tmp_path, target.url, events=("observed_violation",))
    hooks.publish("access_anomaly", "job", {})
    await hooks.close()
    assert target.requests == []


def test_a_missing_or_weak_secret_is_refused(tmp_path):
    with pytest.raises(DomicileError, match="secret file"):
        WebhookDispatcher(
            [WebhookSettings(url="http://127.0.0.1:9/x", secret_file=tmp_path / "none")],
            attempts=1,
            timeout=1,
            dead_letter=tmp_path / "d",
        )
    (tmp_path / "weak").write_text("short")
    with pytest.raises(DomicileError, match="at least 16 bytes"):
        WebhookDispatcher(
            [WebhookSettings(url="http://127.0.0.1:9/x", secret_file=tmp_path / "weak")],
            attempts=1,
            timeout=1,
            dead_letter=tmp_path / "d",
        )
