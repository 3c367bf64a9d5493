"""Configuration: one typed settings object.

Sources, lowest to highest precedence: defaults < the YAML file (`--config FILE` or
DOMICILE_CONFIG) < environment variables (`DOMICILE_` prefix, `__` between nested names, e.g.
`DOMICILE_ROUTER__STALENESS_BOUND_SECONDS=2`) < command-line flags. Everything is validated at
start; an invalid value is reported with the name of the setting.

Each part of the system owns one nested section (tls, auth, rate_limit, lineage, router, ...).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from domicile.errors import FieldErrors, failed_precondition


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TLSSettings(Section):
    """Server TLS. With `client_ca_file` set, clients must present a certificate it signed."""

    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    # How often certificate and JWT key files are checked for rotation.
    reload_interval_seconds: float = Field(default=5.0, gt=0)
    # With a client CA: False lets HTTP clients without a certificate in (bearer token only),
    # for OpenLineage clients that cannot present one; gRPC always requires it.
    http_client_cert_required: bool = True


class AuthSettings(Section):
    """JWT bearer authentication (see docs/security.md). Always on unless --insecure.

    Keys come from `jwks_file` / `public_key_files` when either is set (no network: for
    air-gapped installs); otherwise `issuer` must be an https URL and the keys come from the
    identity provider (OpenID Connect discovery, then its JWKS; see docs/operations.md)."""

    jwks_file: Path | None = None
    public_key_files: list[Path] = Field(default_factory=list)
    issuer: str = ""
    audience: str = ""
    # The identity provider's HTTPS: a CA bundle to trust (default: the system's trust store),
    # and how long each fetch may take.
    ca_file: Path | None = None
    idp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # How long a key set is used when the IdP sends no Cache-Control max-age, and the least
    # time between two fetches (however short the max-age, however many unknown key ids).
    jwks_refresh_seconds: float = Field(default=3600.0, gt=0, le=86400)
    jwks_min_refresh_seconds: float = Field(default=30.0, gt=0, le=3600)
    # `none` is never accepted; HS256/384/512 only when listed here (keys: JWKS `oct` entries).
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "EdDSA"], min_length=1)
    leeway_seconds: float = Field(default=30.0, ge=0, le=300)
    # Claims that grant scopes (a space-separated string or a list each); Entra ID puts the
    # permissions of application (client-credentials) tokens in `roles`.
    scope_claims: list[str] = Field(default_factory=lambda: ["scope", "scp"], min_length=1)
    # The longest a token may be valid (exp - iat): seconds, or an ISO 8601 duration (PT8H).
    max_token_lifetime: timedelta = Field(default=timedelta(hours=24), ge=timedelta(seconds=1), le=timedelta(days=366))
    # Methods reachable without a token (nothing is open by default).
    open_health: bool = False
    open_reflection: bool = False

    @field_validator("algorithms")
    @classmethod
    def _check_algorithms(cls, value: list[str]) -> list[str]:
        from domicile.security.tokens import check_algorithms

        check_algorithms(value)
        return value


class RateLimitSettings(Section):
    """Per-principal budgets per resource (domicile/security/budgets.py); the defaults let one
    principal send full 10,000-question batches back to back as fast as one server answers them
    (the project's benchmarks included): lower them where principals share a router."""

    enabled: bool = True
    requests_per_second: float = Field(default=10_000.0, gt=0)
    burst: int = Field(default=20_000, gt=0)
    decisions_per_second: float = Field(default=500_000.0, gt=0)
    decision_burst: int = Field(default=500_000, gt=0)
    lineage_edges_per_second: float = Field(default=100_000.0, gt=0)
    lineage_edge_burst: int = Field(default=200_000, gt=0)
    # Failed authentications per client address: past this budget the address is refused
    # (RESOURCE_EXHAUSTED) without verifying its tokens or logging each attempt.
    auth_failures_per_second: float = Field(default=10.0, gt=0)
    auth_failure_burst: int = Field(default=50, gt=0)


class LoadSheddingSettings(Section):
    """Calls beyond these limits are refused at once with RESOURCE_EXHAUSTED and RetryInfo
    (domicile/loadshed.py, docs/operations.md "Load shedding")."""

    enabled: bool = True
    max_concurrent_rpcs: int = Field(default=256, ge=1)
    max_concurrent_rpcs_per_principal: int = Field(default=64, ge=1)
    # New calls are refused, a growing share of them, while the event loop is saturated: it keeps
    # running later than this (long calls hold it), or waiting for work less than this share of
    # the time (calls arrive faster than it takes them; measured on `domicile serve`'s loop).
    # 0 turns either test off. The defaults catch only a server that is far behind: the idle
    # test also refuses callers who merely keep the server busy, so it is off unless a latency
    # target asks for it (docs/operations.md).
    max_event_loop_lag_seconds: float = Field(default=0.25, ge=0, le=10)
    min_event_loop_idle_share: float = Field(default=0.0, ge=0, lt=1)
    # The retry delay a refusal suggests (spread over 0.5-1.5x, so callers do not retry in step).
    retry_after_seconds: float = Field(default=0.1, gt=0, le=60)


class HTTPSettings(Section):
    """Connection limits of the OpenLineage HTTP endpoint (see domicile/http_server.py)."""

    # A new connection (TLS handshake included) must send a complete request head within this.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # An admitted request's body must arrive within this (408 otherwise).
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # After an answer, the next request head must be complete within this.
    keepalive_timeout_seconds: float = Field(default=15.0, gt=0, le=3600)
    # Connections still waiting for their first complete request head; more are closed at once.
    max_pending_connections: int = Field(default=256, ge=1, le=100_000)


class LineageSettings(Section):
    """OpenLineage mapping and GetLineage bounds (see docs/lineage.md)."""

    # Glob (fnmatch, case-sensitive) on an OpenLineage dataset namespace or dataset id, or a
    # job namespace → region id; first match wins, in the order written. Used when an event
    # has no `residency` facet region. Regions are checked against the registry per event.
    namespace_regions: dict[str, str] = Field(default_factory=dict)
    # Who writes lineage for which job namespaces (lineage/trust.py): owner -> namespace globs.
    # An owner is a token subject or `claim:NAME=VALUE`; a subject always owns the namespace
    # of its own name, the --dev principal owns `*`; `*` serves an ingestion gateway.
    namespace_owners: dict[str, list[str]] = Field(default_factory=dict)
    # GetLineage max_depth when the request leaves it 0, and the largest a request may ask.
    default_max_depth: int = Field(default=10, ge=1, le=50)
    max_depth_limit: int = Field(default=50, ge=1, le=1000)
    # A traversal stops (answering complete=false) after this many datasets or seconds.
    max_nodes: int = Field(default=10_000, ge=1)
    timeout_seconds: float = Field(default=5.0, gt=0)

    @field_validator("namespace_regions")
    @classmethod
    def _check_namespace_regions(cls, value: dict[str, str]) -> dict[str, str]:
        from domicile.catalog.regions import REGION_ID

        for pattern, region in value.items():
            if not pattern:
                raise ValueError("an empty pattern matches nothing; remove it")
            if not REGION_ID.match(region):
                raise ValueError(f"{pattern!r} → {region!r}: not a region id such as aws:eu-central-1")
        return value

    @field_validator("namespace_owners")
    @classmethod
    def _check_namespace_owners(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for owner, patterns in value.items():
            if not owner:
                raise ValueError("an owner must be a token subject or claim:NAME=VALUE")
            if owner.startswith("claim:"):
                name, equals, _ = owner[len("claim:") :].partition("=")
                if not name or not equals:
                    raise ValueError(f"{owner!r}: a claim owner is written claim:NAME=VALUE")
            if not patterns or any(not pattern for pattern in patterns):
                raise ValueError(f"{owner!r}: give at least one non-empty namespace pattern")
        return value

    @model_validator(mode="after")
    def _check_depths(self) -> LineageSettings:
        if self.default_max_depth > self.max_depth_limit:
            raise ValueError(
                f"default_max_depth {self.default_max_depth} exceeds max_depth_limit {self.max_depth_limit}"
            )
        return self


class RouterSettings(Section):
    # A router that has not confirmed its view of the catalog within this bound answers
    # DENY / STALE_CATALOG (fail closed).
    staleness_bound_seconds: float = Field(default=5.0, gt=0)
    poll_interval_seconds: float = Field(default=0.25, gt=0)
    # True: a decision is answered only after its log line is fsynced (group commit: concurrent
    # requests share an fsync). False accepts losing the last decisions on a crash (docs/audit.md).
    durable_decision_log: bool = True

    @model_validator(mode="after")
    def _check_poll_within_bound(self) -> RouterSettings:
        # A poll slower than the bound would make every decision STALE_CATALOG between polls.
        if self.poll_interval_seconds * 2 > self.staleness_bound_seconds:
            raise ValueError(
                f"poll_interval_seconds ({self.poll_interval_seconds}) must be at most half of "
                f"staleness_bound_seconds ({self.staleness_bound_seconds})"
            )
        return self


class ConsoleSettings(Section):
    """The auditor console (docs/console.md): its own HTTP listener, served by the server."""

    # Empty disables the console. Plain HTTP on loopback with --dev (as Jupyter does);
    # otherwise TLS with the server certificate (browsers present no client certificate).
    listen: str = "127.0.0.1:8081"
    # The URL browsers reach the console at, when not http(s)://listen (a proxy in front).
    public_url: str = ""
    # A session ends this long after sign-in, or after this long without a request.
    session_ttl_seconds: float = Field(default=8 * 3600, gt=0)
    session_idle_seconds: float = Field(default=1800, gt=0)
    # The built single-page app; default: the package's `console/static`.
    assets_dir: Path | None = None
    # Sign-in without --dev: OpenID Connect (authorization code with PKCE) at `auth.issuer`,
    # as this client of the identity provider, registered with the redirect URI
    # `<public_url>/signin/callback`. The secret is read from a file (none: a public client).
    oidc_client_id: str = ""
    oidc_client_secret_file: Path | None = None
    # Scopes asked for besides `openid`; default: every API scope (the IdP grants a subset).
    oidc_scopes: list[str] = Field(default_factory=list)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        if value:
            split_host_port(value)
        return value


class PolicySettings(Section):
    """The residency policy: the file to start with, and whether changes need approval.

    Given as a path alone (`policy: FILE`, `--policy FILE`, `DOMICILE_POLICY=FILE`), it is the
    `file`. `require_approval` (router/policy_proposals.py): SetPolicy records a proposal that
    another principal with policy:admin must approve; unset, it is on except with `dev` or
    `insecure` (which has no principals to tell apart).
    """

    file: Path | None = None
    require_approval: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _a_path_is_the_file(cls, value: Any) -> Any:
        return {"file": value} if isinstance(value, str | os.PathLike) else value


class AnomalySettings(Section):
    """Thresholds of the access anomaly rules (see docs/access.md)."""

    # What an actor touched within this many days before now is its baseline.
    baseline_window_days: float = Field(default=30.0, gt=0, le=3660)
    # No anomaly is raised for an actor first seen less than this long ago.
    baseline_min_age_days: float = Field(default=7.0, ge=0, le=3660)
    # ACCESS_BURST: a UTC day's accesses above burst_factor x the actor's mean daily accesses
    # over its window, and at least burst_min_accesses.
    burst_factor: float = Field(default=10.0, gt=1)
    burst_min_accesses: int = Field(default=100, ge=1)


AlertKind = Literal["observed_violation", "access_anomaly"]


def _every_alert() -> list[AlertKind]:
    return ["observed_violation", "access_anomaly"]


class WebhookSettings(Section):
    """One receiver of access alerts (CloudEvents, HMAC-signed with the secret in `secret_file`)."""

    url: str
    secret_file: Path
    # Which alerts it gets: observed_violation, access_anomaly (default both).
    events: list[AlertKind] = Field(default_factory=_every_alert, min_length=1)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r}: an http:// or https:// URL is required")
        return value


class AccessSettings(Section):
    """Access records, observed-flow drift, anomalies and their alerts (see docs/access.md)."""

    enabled: bool = True
    # Access records are buffered in memory and written this often (and before every access
    # read, and at shutdown); observed violations are written before the ingest answers.
    flush_interval_seconds: float = Field(default=1.0, gt=0, le=300)
    # The intents of residency decisions are counted in memory by the engine and written this
    # often, or at the first flush after they hold `intent_max_keys` aggregates (bounding their
    # memory); a crash loses at most that many. The decision log keeps every decision they count.
    intent_flush_seconds: float = Field(default=30.0, gt=0, le=3600)
    intent_max_keys: int = Field(default=200_000, ge=1)
    # Raw run records are deleted this long after they were first recorded (aggregates stay).
    run_retention_days: float = Field(default=30.0, gt=0)
    # An event whose eventTime is older than this when it arrives is flagged `late`.
    late_event_seconds: float = Field(default=3600.0, gt=0)
    anomalies: AnomalySettings = Field(default_factory=AnomalySettings)
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    # Deliveries per alert and webhook before it goes to the dead-letter file.
    webhook_attempts: int = Field(default=5, ge=1, le=20)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    dead_letter: Path | None = None  # default: data_dir/access-dead-letter.jsonl


class AuditSettings(Section):
    """The decision log's identity, checkpoints, rotation and safety floors (docs/audit.md)."""

    # Part of every decision id. Empty: the id the decision log records, or the host name for a new log.
    replica_id: str = ""
    # Ed25519 private key (PEM) that signs checkpoints; --dev / --insecure: DATA_DIR/dev/checkpoint-key.pem.
    checkpoint_key_file: Path | None = None
    # Public keys checkpoints may also be signed with (the keys used before a key rotation).
    checkpoint_public_key_files: list[Path] = Field(default_factory=list)
    checkpoint_every_lines: int = Field(default=1000, ge=1)
    checkpoint_every_seconds: float = Field(default=60.0, gt=0)
    # Copies of every checkpoint, outside the data directory: a file (best on another mount), an HTTP URL.
    anchor_file: Path | None = None
    anchor_url: str = ""
    rotate_bytes: int = Field(default=64 * 2**20, ge=2**16)
    rotate_seconds: float = Field(default=0.0, ge=0)  # 0: never by age
    # Rotated files kept beside the log (0: all); older ones go to archive_dir, or are deleted without one.
    keep_files: int = Field(default=0, ge=0)
    archive_dir: Path | None = None
    # Decisions are refused (RESOURCE_EXHAUSTED) while the log's file system has less free space.
    min_free_bytes: int = Field(default=64 * 2**20, ge=0)

    @field_validator("replica_id")
    @classmethod
    def _check_replica_id(cls, value: str) -> str:
        from domicile.router.decision_log import LogOptions

        if value:
            LogOptions(replica=value)
        return value

    @field_validator("anchor_url")
    @classmethod
    def _check_anchor_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class Neo4jSettings(Section):
    user: str = ""
    password: str = ""
    # The password read from a file instead (a mounted Secret); exclusive with `password`.
    password_file: Path | None = None
    database: str = ""
    trusted_ca_file: Path | None = None

    @model_validator(mode="after")
    def _one_password(self) -> Neo4jSettings:
        if self.password and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        return self

    def resolved_password(self) -> str:
        """`password`, or the contents of `password_file` without its trailing newline.
        FAILED_PRECONDITION naming the file when it cannot be read."""
        if self.password_file is None:
            return self.password
        try:
            return self.password_file.read_text("utf-8").rstrip("\r\n")
        except OSError as exc:
            raise failed_precondition(f"neo4j.password_file {self.password_file}: {exc.strerror}") from None


class Settings(BaseSettings):
    """Everything `domicile serve` needs."""

    model_config = SettingsConfigDict(env_prefix="DOMICILE_", env_nested_delimiter="__", extra="forbid")

    store: str = "sqlite:///.domicile/catalog.db"
    listen: str = "127.0.0.1:50051"
    # Empty disables the HTTP endpoint (OpenLineage ingestion).
    http_listen: str = "127.0.0.1:8080"
    policy: Annotated[PolicySettings, NoDecode] = Field(default_factory=PolicySettings)
    data_dir: Path = Path(".domicile")
    # Plaintext without authentication; only on loopback addresses.
    insecure: bool = False
    # Use (and create on first use) local development credentials under data_dir/dev.
    dev: bool = False
    # Load the demo catalog into an empty store at start.
    demo: bool = False
    # Accept a 0-byte SQLite catalog file as a new, empty catalog (otherwise refused).
    init: bool = False
    # Start although the store's revision is below the highest the decision log recorded
    # (a store rolled back); recorded in the log. For one start, after checking why (docs/audit.md).
    allow_catalog_rollback: bool = False
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # The server log on stderr: text, or one JSON object per line (docs/operations.md).
    log_format: Literal["text", "json"] = "text"
    # One access log line per gRPC call and HTTP request (logger `domicile.access`).
    access_log: bool = True
    # A plaintext listener for /metrics, /livez and /readyz without authentication, for
    # scrapers and probes inside the cluster; empty disables. Bind it to loopback or a
    # cluster-internal address.
    ops_listen: str = ""
    # A plaintext gRPC listener serving only grpc.health.v1, for probes that cannot present
    # client certificates (Kubernetes gRPC probes, Docker HEALTHCHECK); empty disables.
    health_listen: str = ""
    decision_log: Path | None = None  # default: data_dir/decisions.jsonl
    security_log: Path | None = None  # default: data_dir/security.jsonl
    tls: TLSSettings = Field(default_factory=TLSSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    load_shedding: LoadSheddingSettings = Field(default_factory=LoadSheddingSettings)
    http: HTTPSettings = Field(default_factory=HTTPSettings)
    lineage: LineageSettings = Field(default_factory=LineageSettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    neo4j: Neo4jSettings = Field(default_factory=Neo4jSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator("http_listen", "ops_listen", "health_listen")
    @classmethod
    def _check_http_listen(cls, value: str) -> str:
        if value:
            split_host_port(value)
        return value

    @model_validator(mode="after")
    def _check_insecure(self) -> Settings:
        if self.insecure and self.dev:
            raise ValueError("insecure and dev exclude each other")
        if self.insecure:
            for name, address in (
                ("listen", self.listen),
                ("http_listen", self.http_listen),
                ("ops_listen", self.ops_listen),
                ("health_listen", self.health_listen),
            ):
                if address and not is_loopback(split_host_port(address)[0]):
                    raise ValueError(f"{name}={address}: --insecure serves only on loopback addresses")
            if self.policy.require_approval:
                raise ValueError(
                    "policy.require_approval needs principals to tell the approver from the proposer: "
                    "not with --insecure"
                )
        return self

    @property
    def policy_changes_need_approval(self) -> bool:
        """`policy.require_approval`, resolved (see `PolicySettings`)."""
        required = self.policy.require_approval
        return required if required is not None else not (self.dev or self.insecure)

    @property
    def decision_log_path(self) -> Path:
        return self.decision_log or self.data_dir / "decisions.jsonl"

    @property
    def security_log_path(self) -> Path:
        return self.security_log or self.data_dir / "security.jsonl"

    @property
    def access_dead_letter_path(self) -> Path:
        return self.access.dead_letter or self.data_dir / "access-dead-letter.jsonl"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest precedence first: flags (init values), environment, the config file.
        return (init_settings, env_settings, _FileSource(settings_cls, _config_file_values.get()))


# The parsed config file of the `load_settings` call in progress (a source needs it at
# construction time, which happens inside `Settings(...)`).
_config_file_values: ContextVar[Mapping[str, Any]] = ContextVar(
    "domicile_config_file_values", default=MappingProxyType({})
)


class _FileSource(PydanticBaseSettingsSource):
    """The values of the YAML config file, already read and parsed by `load_settings`."""

    def __init__(self, settings_cls: type[BaseSettings], values: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def split_host_port(address: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` → (host, port); ValueError naming the problem."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{address!r} is not HOST:PORT")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{address!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{address!r}: port out of range")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SettingsError(Exception):
    """Invalid configuration; the message names every bad setting."""


def load_settings(config_file: Path | None = None, **flags: Any) -> Settings:
    """Build validated settings from file, environment and flags (flags win).

    `flags` are the command-line values that were actually given (None values are ignored);
    nested sections may be given as dicts. Raises SettingsError naming each bad setting.
    """
    config_file = config_file or (Path(os.environ["DOMICILE_CONFIG"]) if os.environ.get("DOMICILE_CONFIG") else None)
    file_values: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text("utf-8")) or {}
        except OSError as exc:
            raise SettingsError(f"config file {config_file}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise SettingsError(f"config file {config_file}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise SettingsError(f"config file {config_file}: expected a mapping at the top level")
        file_values = loaded
    given = {k: v for k, v in flags.items() if v is not None}
    token = _config_file_values.set(file_values)
    try:
        return Settings(**given)
    except ValidationError as exc:
        errors = FieldErrors()
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            errors.add(name, error["msg"])
        details = "; ".join(f"{v.field}: {v.description}" for v in errors.violations)
        raise SettingsError(f"invalid configuration: {details}") from None
    finally:
        _config_file_values.reset(token)
