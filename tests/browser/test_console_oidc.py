"""Production sign-in: a real `domicile serve` (no --dev: TLS, tokens from the identity
provider) whose console signs people in with OpenID Connect at a real provider process
(oidc-provider, tests/oidc_provider.py), driven in Chromium: the authorization code flow with
PKCE, scopes from the IdP's token as the session's, sign-out (at the IdP too: RP-initiated
logout), and sign-in failures in the security event log."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import expect

from domicile.router.decision_log.checkpoints import ensure_key
from domicile.security.dev_credentials import DevPaths, ensure_dev_credentials
from domicile.security.scopes import ALL_SCOPES
from tests.browser.conftest import CONSOLE, ROOT, screenshot
from tests.neo4j_plugin import free_port
from tests.oidc_provider import AUDIENCE, OidcProvider, SigningKey, WebClient

pytestmark = pytest.mark.slow

CLIENT = WebClient("domicile-console", "console-secret", "")
ACCOUNTS = {
    "auditor": tuple(s for s in ALL_SCOPES if s != "policy:admin"),
    "viewer": ("catalog:read",),
    "outsider": (),
}


@dataclass
class OidcConsole:
    url: str
    idp: OidcProvider
    data_dir: Path
    tls: DevPaths

    def security_events(self) -> list[dict]:
        path = self.data_dir / "security.jsonl"
        return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def oidc_console(chromium_path) -> Iterator[OidcConsole]:
    root = Path(tempfile.mkdtemp(prefix="domicile-console-oidc-"))
    tls, _ = ensure_dev_credentials(root / "pki")  # a test CA; its server certificate is for 127.0.0.1
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    client = WebClient(CLIENT.client_id, CLIENT.client_secret, f"{base}/signin/callback", f"{base}/signedout")
    idp = OidcProvider(root / "idp", tls, scopes=ALL_SCOPES, web_clients=(client,), accounts=ACCOUNTS)
    idp.start([SigningKey.generate("console-test-key")])
    secret = root / "client-secret"
    secret.write_text(CLIENT.client_secret)
    data_dir = root / "data"
    env = {
        **os.environ,
        "DOMICILE_AUTH__CA_FILE": str(tls.ca_cert),
        "DOMICILE_AUTH__ALGORITHMS": '["ES256"]',
        "DOMICILE_CONSOLE__OIDC_CLIENT_ID": CLIENT.client_id,
        "DOMICILE_CONSOLE__OIDC_CLIENT_SECRET_FILE": str(secret),
        # Outside --dev a server signs its decision log's checkpoints with a key it is given.
        "DOMICILE_AUDIT__CHECKPOINT_KEY_FILE": str(ensure_key(root / "keys" / "checkpoint.pem")),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "domicile",
            "serve",
            "--demo",
            "--store",
            f"sqlite:///{root / 'catalog.db'}",
            "--policy",
            str(ROOT / "examples" / "policy.yaml"),
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "",
            "--console-listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(data_dir),
            "--tls-cert",
            str(tls.server_cert),
            "--tls-key",
            str(tls.server_key),
            "--jwt-issuer",
            idp.issuer,
            "--jwt-audience",
            AUDIENCE,
        ],
        stdout=subprocess.PIPE,
        stderr=open(root / "server.log", "w"),  # noqa: SIM115 -- closed with the process
        text=True,
        env=env,
        cwd=ROOT,
    )
    url = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not url:
        line = process.stdout.readline()
        if not line:
            break
        if match := CONSOLE.search(line):
            url = match.group(1)
    try:
        if not url:
            process.kill()
            pytest.fail(f"domicile serve did not start its console: {(root / 'server.log').read_text()}")
        assert url == f"https://127.0.0.1:{port}"
        yield OidcConsole(url, idp, data_dir, tls)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        idp.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def page(browser, oidc_console):
    # The console and the IdP present certificates of the test CA, which Chromium does not know.
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(60_000)
    yield context.new_page()
    context.close()


def sign_in(page, console: OidcConsole, login: str) -> None:
    page.goto(console.url + "/")
    page.get_by_role("link", name="Sign in").click()  # the console's sign-in page
    expect(page.get_by_text(console.idp.issuer)).to_be_visible()
    page.get_by_role("link", name="Sign in").click()  # to the identity provider
    page.wait_for_url(f"{console.idp.issuer}/**")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    page.get_by_role("button", name="Sign-in").click()


def test_sign_in_at_the_identity_provider_with_its_scopes_then_sign_out(page, oidc_console):
    sign_in(page, oidc_console, "auditor")
    page.wait_for_url(oidc_console.url + "/")
    expect(page.get_by_text("Where regulated data lives")).to_be_visible()
    expect(page.get_by_text(f"auditor ({len(ACCOUNTS['auditor'])} scopes)")).to_be_visible()
    cookies = {c["name"]: c for c in page.context.cookies(oidc_console.url)}
    session = cookies["__Host-domicile-session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    assert "__Host-domicile-signin" not in cookies  # the sign-in's state cookie is spent
    screenshot(page, "oidc-signed-in")

    # The IdP's scopes, checked by the same table: audit:read opens the decisions.
    page.goto(oidc_console.url + "/decisions")
    expect(page.get_by_role("table", name="Decisions, newest first")).to_be_visible()
    expect(page.get_by_text("Not allowed")).to_have_count(0)
    page.goto(oidc_console.url + "/policy")
    expect(page.get_by_role("heading", name="Policy", exact=True)).to_be_visible()
    expect(page.get_by_text("Not allowed")).to_have_count(0)

    # The IdP's session lives on: a new sign-in needs no password (single sign-on).
    page.goto(oidc_console.url + "/signin/start")
    page.wait_for_url(oidc_console.url + "/")
    expect(page.get_by_text(f"auditor ({len(ACCOUNTS['auditor'])} scopes)")).to_be_visible()

    # Signing out ends it too (RP-initiated logout): the IdP asks, then sends the browser back.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{oidc_console.idp.issuer}/session/end**")
    assert "id_token_hint=" in page.url
    screenshot(page, "oidc-sign-out-at-idp")
    page.get_by_role("button", name="Yes, sign me out").click()
    page.wait_for_url(oidc_console.url + "/signedout")
    expect(page.get_by_text(f"You are signed out of the console and of {oidc_console.idp.issuer}")).to_be_visible()
    answer = page.request.get(oidc_console.url + "/api/v1/datasets")
    assert answer.status == 401
    page.goto(oidc_console.url + "/signin/start")
    page.wait_for_url(f"{oidc_console.idp.issuer}/**")
    expect(page.locator("input[name=login]")).to_be_visible()  # the password again


def test_a_session_gets_only_the_scopes_the_identity_provider_grants(page, oidc_console):
    sign_in(page, oidc_console, "viewer")
    page.wait_for_url(oidc_console.url + "/")
    expect(page.get_by_text("viewer (1 scopes)")).to_be_visible()
    answer = page.request.get(oidc_console.url + "/api/v1/decisions")
    assert answer.status == 403 and answer.json()["error"]["reason"] == "MISSING_SCOPE"
    page.goto(oidc_console.url + "/datasets?q=customers")
    expect(page.get_by_text("s3://bank-eu-lake/customers").first).to_be_visible()
    denied = [e for e in oidc_console.security_events() if e["event"] == "authz_denied" and e["principal"] == "viewer"]
    assert any(e["method"] == "/domicile.v1.ResidencyService/ListDecisions" for e in denied), denied


def test_sign_in_failures_are_refused_and_logged(page, oidc_console):
    sign_in(page, oidc_console, "outsider")  # granted none of Domicile's scopes
    expect(page.get_by_role("heading", name="Sign-in refused")).to_be_visible()
    expect(page.get_by_text("granted none of Domicile's scopes")).to_be_visible()
    screenshot(page, "oidc-sign-in-refused")
    # An answer this browser did not ask for (login CSRF) is refused before any code exchange.
    page.goto(oidc_console.url + "/signin/callback?state=forged&code=stolen")
    expect(page.get_by_role("heading", name="Sign-in refused")).to_be_visible()
    # The IdP's own refusal (the user cancelled, say) is passed on.
    page.goto(oidc_console.url + "/signin/callback?error=access_denied&error_description=cancelled")
    expect(page.get_by_text("access_denied")).to_be_visible()
    assert page.request.get(oidc_console.url + "/api/v1/session").status == 401

    reasons = [
        e["reason"]
        for e in oidc_console.security_events()
        if e["event"] == "auth_failure" and e["method"] == "console GET /signin/callback"
    ]
    assert reasons[-3:] == ["NO_SCOPES", "STATE_MISMATCH", "IDP_REFUSED"], reasons
