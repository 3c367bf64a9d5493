"""A real OpenID Connect provider for tests: panva/oidc-provider (tools/oidc-provider), run
by Node.js over HTTPS with a certificate from a test CA.

`OidcProvider(workdir, tls)` serves issuer `https://127.0.0.1:PORT`; `start(keys)` runs it
with the given signing keys (the first one signs; all are published in its JWKS), `stop()`
ends it (an IdP outage), and `start` again on the same port is a restart -- with other keys, a
key rotation. `token(client, scope)` gets a JWT access token with the client-credentials grant.
With `web_clients` (`WebClient`) and `accounts` (login -> the scopes it is granted) it also
signs people in with the authorization code flow (its development login form takes any
password).
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from domicile.security.dev_credentials import DevPaths
from tests.neo4j_plugin import free_port

REPO = Path(__file__).resolve().parents[1]
AUDIENCE = "domicile"
SCOPES = ("catalog:read", "catalog:write", "lineage:write")
# client id -> (secret, scopes it may get)
CLIENTS = {"svc-reader": ("reader-secret", "catalog:read"), "svc-ingest": ("ingest-secret", "lineage:write")}
READY = "OIDC PROVIDER READY "


@functools.cache
def provider_script() -> Path:
    """tools/oidc-provider installed under .tools (npm ci from the committed lockfile)."""
    result = subprocess.run(
        ["bash", str(REPO / "tools" / "oidc-provider" / "install.sh")],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"installing the test OIDC provider failed: {result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, kid: str) -> SigningKey:
        return cls(kid, ec.generate_private_key(ec.SECP256R1()))

    def private_jwk(self) -> dict:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private_key))
        return {**jwk, "kid": self.kid, "alg": "ES256", "use": "sig"}

    def sign(self, claims: dict) -> str:
        return jwt.encode(claims, self.private_key, algorithm="ES256", headers={"kid": self.kid})


@dataclass(frozen=True)
class WebClient:
    client_id: str
    client_secret: str
    redirect_uri: str
    # Where the provider may send the browser back after ending its session ("": nowhere).
    post_logout_redirect_uri: str = ""


class OidcProvider:
    def __init__(
        self,
        workdir: Path,
        tls: DevPaths,
        *,
        jwks_max_age: int | None = None,
        scopes: tuple[str, ...] = SCOPES,
        web_clients: tuple[WebClient, ...] = (),
        accounts: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.scopes = scopes
        self.web_clients = web_clients
        self.accounts = accounts or {}
        self.workdir = workdir
        self.tls = tls
        self.port = free_port()
        self.issuer = f"https://127.0.0.1:{self.port}"
        self.jwks_max_age = jwks_max_age
        self._process: subprocess.Popen[str] | None = None
        self._starts = 0
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self, keys: list[SigningKey]) -> None:
        self._starts += 1
        jwks_file = self.workdir / f"jwks-{self._starts}.json"
        jwks_file.write_text(json.dumps({"keys": [k.private_jwk() for k in keys]}))
        config = {
            "issuer": self.issuer,
            "port": self.port,
            "cert_file": str(self.tls.server_cert),
            "key_file": str(self.tls.server_key),
            "jwks_file": str(jwks_file),
            "audience": AUDIENCE,
            "scopes": list(self.scopes),
            "clients": [{"client_id": c, "client_secret": s, "scope": scope} for c, (s, scope) in CLIENTS.items()],
            "web_clients": [vars(client) for client in self.web_clients],
            "accounts": {login: " ".join(scopes) for login, scopes in self.accounts.items()},
        }
        if self.jwks_max_age is not None:
            config["jwks_max_age"] = self.jwks_max_age
        config_file = self.workdir / f"config-{self._starts}.json"
        config_file.write_text(json.dumps(config))
        with open(self.workdir / f"provider-{self._starts}.log", "w") as log:
            self._process = subprocess.Popen(
                ["node", str(provider_script()), str(config_file)],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**os.environ, "NODE_ENV": "test"},
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self._process.stdout.readline()
            if not line:
                break
            if line.startswith(READY):
                return
        self.stop()
        raise RuntimeError(
            f"OIDC provider did not start: {(self.workdir / f'provider-{self._starts}.log').read_text()}"
        )

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process.stdout.close()
            self._process = None

    def token(self, client: str, scope: str) -> str:
        """A JWT access token for `client` (client-credentials grant)."""
        secret = CLIENTS[client][0]
        request = urllib.request.Request(
            f"{self.issuer}/token",
            data=urllib.parse.urlencode({"grant_type": "client_credentials", "scope": scope}).encode(),
            headers={"Authorization": "Basic " + b64encode(f"{client}:{secret}".encode()).decode()},
        )
        context = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return json.loads(response.read())["access_token"]
