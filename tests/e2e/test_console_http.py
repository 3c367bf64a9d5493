"""The console's HTTP side against a real `--dev` server: sign-in links, session cookies,
CSRF, the CSP header, session expiry, scope checks and the JSON API (the browser scenarios
are in tests/browser/)."""

from __future__ import annotations

import io
import json
import logging
import re
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
import pytest

from domicile.config import load_settings
from domicile.security.dev_credentials import mint_console_link_token
from domicile.server import create_server
from domicile.telemetry.access import access_lines
from domicile.telemetry.logs import configure_logging

pytestmark = pytest.mark.asyncio

POLICY = "examples/policy.yaml"
JOINED = "s3://bank-global-analytics/customer-payments-joined"


@pytest.fixture
async def console(tmp_path):
    settings = load_settings(
        dev=True,
        demo=True,
        listen="127.0.0.1:0",
        http_listen="",
        store=f"sqlite:///{tmp_path / 'catalog.db'}",
        data_dir=tmp_path,
        policy=POLICY,
        console={"listen": "127.0.0.1:0", "session_idle_seconds": 60},
    )
    running = await create_server(settings)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        yield running, http
    await running.stop(0)


async def sign_in(running, http, scopes=None) -> tuple[str, str]:
    """(session cookie, CSRF token) of a new session from a fresh one-time link."""
    data_dir = running.app.settings.data_dir
    token = mint_console_link_token(data_dir, **({"scopes": scopes} if scopes else {}))
    origin = running.console_url
    async with http.post(
        f"{origin}/signin", data={"token": token}, headers={"Origin": origin}, allow_redirects=False
    ) as r:
        assert r.status == 303, await r.text()
        cookie = SimpleCookie(r.headers["Set-Cookie"])
    session = cookie["__Host-domicile-session"].value
    async with http.get(f"{origin}/api/v1/session", headers={"Cookie": f"__Host-domicile-session={session}"}) as r:
        assert r.status == 200
        csrf = (await r.json())["csrf_token"]
    return session, csrf


def with_session(session: str, csrf: str | None = None, origin: str | None = None) -> dict[str, str]:
    headers = {"Cookie": f"__Host-domicile-session={session}"}
    if csrf:
        headers["X-CSRF-Token"] = csrf
    if origin:
        headers["Origin"] = origin
    return headers


async def test_printed_link_signs_in_once_with_a_strict_cookie(console):
    running, http = console
    link = running.console_sign_in_link
    assert link.startswith(running.console_url + "/signin?token=")
    async with http.get(link) as r:
        page = await r.text()
        assert r.status == 200 and 'method="post"' in page and "audit:read" in page
    token = link.split("token=", 1)[1]
    async with http.post(f"{running.console_url}/signin", data={"token": token}, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/"
        raw = r.headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in raw.split(";")}
    assert {"httponly", "secure", "samesite", "path", "max-age"} <= attributes
    assert "samesite=strict" in raw.lower() and raw.startswith("__Host-domicile-session=")
    async with http.post(f"{running.console_url}/signin", data={"token": token}, allow_redirects=False) as r:
        assert r.status == 401 and "already used" in await r.text()
    events = (running.app.settings.data_dir / "security.jsonl").read_text().splitlines()
    assert json.loads(events[-1])["reason"] == "LINK_ALREADY_USED"


async def test_forged_link_refused_and_recorded(console):
    running, http = console
    async with http.get(f"{running.console_url}/signin?token=not.a.jwt") as r:
        assert r.status == 401
    # A dev API token (another audience) is no sign-in link either.
    from domicile.security.dev_credentials import mint_dev_token

    api_token = mint_dev_token(running.app.settings.data_dir)
    async with http.post(f"{running.console_url}/signin", data={"token": api_token}) as r:
        assert r.status == 401
    events = [json.loads(line) for line in (running.app.settings.data_dir / "security.jsonl").open()]
    failures = [e for e in events if e["event"] == "auth_failure"]
    assert len(failures) == 2 and failures[0]["reason"] == "MALFORMED_TOKEN"
    assert failures[1]["method"] == "console POST /signin" and failures[1]["peer"] == "127.0.0.1"


async def test_every_response_has_a_strict_csp(console):
    running, http = console
    for path in ("/", "/signin", "/api/v1/session", "/datasets"):
        async with http.get(running.console_url + path) as r:
            csp = r.headers["Content-Security-Policy"]
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_api_needs_a_session(console):
    running, http = console
    async with http.get(f"{running.console_url}/api/v1/datasets") as r:
        assert r.status == 401
        assert (await r.json())["error"]["reason"] == "NO_SESSION"


async def test_api_mirrors_the_rpcs(console):
    running, http = console
    session, _ = await sign_in(running, http)
    url = running.console_url
    async with http.get(f"{url}/api/v1/datasets?classification=PII&page_size=1", headers=with_session(session)) as r:
        body = await r.json()
        assert r.status == 200 and len(body["datasets"]) == 1 and body["next_page_token"]
    async with http.get(f"{url}/api/v1/explain?dataset_id={JOINED}", headers=with_session(session)) as r:
        body = await r.json()
        assert {c["value"] for c in body["classifications"]} >= {"PII.CONTACT"}
    async with http.get(f"{url}/api/v1/datasets?page_size=5000", headers=with_session(session)) as r:
        assert r.status == 400
        assert (await r.json())["error"]["field_violations"][0]["field"] == "page_size"
    async with http.get(f"{url}/api/v1/datasets?nonsense=1", headers=with_session(session)) as r:
        assert r.status == 400
    async with http.get(f"{url}/api/v1/dataset?id=s3://never", headers=with_session(session)) as r:
        assert r.status == 404


async def test_post_needs_the_csrf_token_and_same_origin(console):
    running, http = console
    session, csrf = await sign_in(running, http)
    url = running.console_url
    policy = Path(POLICY).read_text()
    body = json.dumps({"policy_yaml": policy})
    async with http.post(f"{url}/api/v1/policy/impact", data=body, headers=with_session(session)) as r:
        assert r.status == 403 and (await r.json())["error"]["reason"] == "CSRF_TOKEN_MISMATCH"
    async with http.post(f"{url}/api/v1/policy/impact", data=body, headers=with_session(session, "wrong")) as r:
        assert r.status == 403
    headers = with_session(session, csrf, origin="https://evil.example")
    async with http.post(f"{url}/api/v1/policy/impact", data=body, headers=headers) as r:
        assert r.status == 403 and (await r.json())["error"]["reason"] == "CROSS_ORIGIN"
    async with http.post(f"{url}/api/v1/policy/impact", data=body, headers=with_session(session, csrf, url)) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["changes"] == []


async def test_scopes_of_the_mirrored_rpc(console):
    running, http = console
    session, _ = await sign_in(running, http, scopes=["catalog:read"])
    url = running.console_url
    async with http.get(f"{url}/api/v1/datasets", headers=with_session(session)) as r:
        assert r.status == 200
    for path in ("/api/v1/decisions", "/api/v1/violations", "/api/v1/policy", "/api/v1/security/events"):
        async with http.get(url + path, headers=with_session(session)) as r:
            assert r.status == 403, path
            assert (await r.json())["error"]["reason"] == "MISSING_SCOPE"
    events = [json.loads(line) for line in (running.app.settings.data_dir / "security.jsonl").open()]
    denied = [e for e in events if e["event"] == "authz_denied"]
    assert denied[-1]["principal"] == "dev" and denied[-1]["detail"]["required"] == "audit:read"


async def test_sign_out_ends_the_session(console):
    running, http = console
    session, csrf = await sign_in(running, http)
    url = running.console_url
    async with http.post(f"{url}/signout", headers=with_session(session, csrf, url)) as r:
        assert r.status == 200
        assert "__Host-domicile-session=" in r.headers["Set-Cookie"]
    async with http.get(f"{url}/api/v1/datasets", headers=with_session(session)) as r:
        assert r.status == 401


async def test_idle_and_absolute_expiry(console):
    running, http = console
    session, _ = await sign_in(running, http)
    url = running.console_url
    from domicile.console.web import CONSOLE

    sessions = running.console.runner.app[CONSOLE].sessions
    live = sessions.get(session)
    live.last_seen -= sessions.idle + 1
    async with http.get(f"{url}/api/v1/datasets", headers=with_session(session)) as r:
        assert r.status == 401
    session, _ = await sign_in(running, http)
    sessions.get(session).expires -= sessions.ttl
    async with http.get(f"{url}/api/v1/datasets", headers=with_session(session)) as r:
        assert r.status == 401


async def test_unbuilt_console_says_how_to_build(tmp_path):
    settings = load_settings(
        dev=True,
        listen="127.0.0.1:0",
        http_listen="",
        store=f"sqlite:///{tmp_path / 'catalog.db'}",
        data_dir=tmp_path,
        console={"listen": "127.0.0.1:0", "assets_dir": str(tmp_path / "nothing")},
    )
    running = await create_server(settings)
    try:
        async with aiohttp.ClientSession() as http, http.get(running.console_url + "/datasets") as r:
            assert r.status == 503 and "make console" in await r.text()
    finally:
        await running.stop(0)


async def test_insecure_server_serves_no_console(tmp_path):
    settings = load_settings(
        insecure=True, listen="127.0.0.1:0", http_listen="", store=f"sqlite:///{tmp_path / 'c.db'}", data_dir=tmp_path
    )
    running = await create_server(settings)
    try:
        assert running.console_url == "" and running.console is None
    finally:
        await running.stop(0)


async def test_console_requests_have_access_log_lines(console):
    running, http = console
    session, _ = await sign_in(running, http)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    try:
        async with http.get(f"{running.console_url}/api/v1/datasets?page_size=1", headers=with_session(session)) as r:
            assert r.status == 200
        access_lines.flush()  # lines are written in batches, off the event loop
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    (line,) = [
        r for r in records if r["logger"] == "domicile.access" and r["method"].startswith("GET /api/v1/datasets")
    ]
    assert (line["kind"], line["status"], line["principal"]) == ("http", "200", "dev")
    assert line["response_bytes"] > 0 and re.search(r"trace=[0-9a-f]{32}", line["message"])
