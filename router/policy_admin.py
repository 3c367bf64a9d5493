"""Policy administration: which policy is active, and changing it.

At start (`initial_policy`) the router takes the policy file given with `--policy`, else the
latest policy of the policy history, else a builtin default (classified data nowhere,
unclassified anywhere: it fails closed for exactly the data a residency policy exists for,
while a catalog that has not labelled anything yet keeps working). Whatever starts is recorded
in the history, so its decisions can be replayed. `PolicyAdministration.set_policy` validates,
records and activates a new text; `policy_impact` previews one against the current index.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from domicile.catalog.regions import RegionRegistry
from domicile.errors import failed_precondition, not_found
from domicile.router.engine import CompiledPolicy, Engine, compile_policy
from domicile.router.policy import PolicyError, PolicyInvalid, content_hash, load_policy
from domicile.router.policy_history import PolicyHistory, PolicyVersion
from domicile.router.types import PolicyChange
from domicile.telemetry.tracing import span

log = logging.getLogger("domicile.router.runtime")

DEFAULT_POLICY_YAML = """\
apiVersion: domicile/v1
kind: ResidencyPolicy
metadata:
  name: domicile-builtin-default
  version: "builtin-default-1"
  description: >-
    Active when no policy was configured or ever set. No rules: classified datasets may be
    stored and processed nowhere, unclassified ones anywhere.
defaults:
  classified: deny
  unclassified: allow
"""


@dataclass(frozen=True)
class PolicyUpdate:
    """Outcome of `set_policy`: `errors` empty means the document is valid; `applied` means it
    is now the active policy (never for a dry run)."""

    version: str
    errors: tuple[PolicyError, ...] = ()
    applied: bool = False


@dataclass(frozen=True)
class PolicyImpact:
    """Outcome of `policy_impact`: `changes` is empty when `errors` is not."""

    version: str
    changes: tuple[PolicyChange, ...] = ()
    errors: tuple[PolicyError, ...] = ()


@dataclass(frozen=True)
class ActivePolicy:
    yaml: str
    version: str
    content_hash: str


class PolicyCompiler:
    """`compile_text` off the event loop, one document at a time: a costly document (up to the
    policy loader's budget) delays other policy calls, not the decisions."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def __call__(
        self, text: str, *, legacy: bool = False, recorded: bool = False
    ) -> tuple[CompiledPolicy | None, tuple[PolicyError, ...]]:
        async with self._lock:
            return await asyncio.to_thread(compile_text, text, legacy=legacy, recorded=recorded)


class PolicyAdministration:
    """The active policy of one engine, its history, and changes to it. The engine's index is
    changed or read whole only under `index_lock` (see `router.catalog_follower`);
    `require_fresh` raises when the engine's view of the catalog is stale (an impact computed
    on it proves nothing); `activated` is called once another policy is active."""

    def __init__(
        self,
        engine: Engine,
        history: PolicyHistory,
        compiler: PolicyCompiler,
        *,
        index_lock: asyncio.Lock,
        require_fresh: Callable[[], None],
        clock: Callable[[], datetime],
        activated: Callable[[], None],
    ) -> None:
        self._activated = activated
        self._engine = engine
        self._history = history
        self._compile = compiler
        self._index_lock = index_lock
        self._require_fresh = require_fresh
        self._clock = clock
        self._lock = asyncio.Lock()

    @property
    def policy(self) -> CompiledPolicy:
        """The active compiled policy."""
        return self._engine.policy

    def regions(self) -> RegionRegistry:
        """Builtin regions plus the active policy's private regions."""
        return self._engine.policy.registry

    def get_policy(self) -> ActivePolicy:
        policy = self._engine.policy
        return ActivePolicy(policy.source_yaml, policy.version, policy.content_hash)

    async def get_policy_version(self, version: str) -> ActivePolicy:
        """A policy from the history by its version; NOT_FOUND when never recorded."""
        text = await self._history.get(version)
        if text is None:
            raise not_found(f"policy version {version!r} is not in the policy history")
        return ActivePolicy(text, version, content_hash(text))

    def policy_activations(self) -> tuple[PolicyVersion, ...]:
        """Every activation in the policy history, newest first."""
        return tuple(reversed(self._history.versions()))

    async def set_policy(
        self, policy_yaml: str, *, dry_run: bool = False, activation: Mapping[str, str] | None = None
    ) -> PolicyUpdate:
        """Validate and compile `policy_yaml`; unless `dry_run` or invalid, record it in the
        policy history (with `activation`: who activated it, and how) and make it active. An
        invalid policy (including a version already recorded with another text) leaves the
        active policy as it was and returns the errors. Setting the active policy again is a
        no-op reported as applied. Whether a change needs approval is decided before, by
        `router.policy_changes`."""
        async with self._lock:
            candidate, errors = await self._compile(policy_yaml)
            if candidate is None:
                return PolicyUpdate("", errors)
            conflict = await self._version_conflict(candidate)
            if conflict is not None:
                return PolicyUpdate(candidate.version, (conflict,))
            if dry_run:
                return PolicyUpdate(candidate.version)
            if candidate.content_hash == self._engine.policy.content_hash:
                return PolicyUpdate(candidate.version, applied=True)
            await self._history.record(candidate.version, candidate.source_yaml, activation=activation)
            async with self._index_lock:  # not while a batch of changes is applied aside
                # Decisions see either the old policy or the new one.
                self._engine.set_policy(candidate)
                self._activated()
            log.info("policy %s (sha256 %s) is active", candidate.version, candidate.content_hash[:12])
            return PolicyUpdate(candidate.version, applied=True)

    async def _version_conflict(self, candidate: CompiledPolicy) -> PolicyError | None:
        recorded = await self._history.get(candidate.version)
        if recorded is None or recorded == candidate.source_yaml:
            return None
        line, column = candidate.loaded.position(("metadata", "version"))
        return PolicyError(
            line,
            column,
            "metadata.version",
            f"version {candidate.version!r} is already recorded with a different text; give the changed policy a new version",
        )

    async def policy_impact(self, policy_yaml: str) -> PolicyImpact:
        """What making `policy_yaml` active would change for every dataset (see
        `Engine.impact`), computed against the current index. Changes nothing."""
        candidate, errors = await self._compile(policy_yaml)
        if candidate is None:
            return PolicyImpact("", errors=errors)
        self._require_fresh()
        async with self._index_lock:  # not while a batch of changes is applied aside
            changes = self._engine.impact(candidate, self._clock())
        return PolicyImpact(candidate.version, tuple(changes))


def compile_text(
    text: str, *, legacy: bool = False, recorded: bool = False
) -> tuple[CompiledPolicy | None, tuple[PolicyError, ...]]:
    """`text` compiled, or its errors; `recorded` for a text the policy history holds, `legacy`
    for a version it recorded before declassifiers named their jobs (see
    `router.policy.load_policy`)."""
    with span("policy.compile", {"domicile.policy.bytes": len(text)}) as current:
        try:
            policy = compile_policy(load_policy(text, legacy=legacy, recorded=recorded))
        except PolicyInvalid as exc:
            current.set_attribute("domicile.policy.errors", len(exc.errors))
            return None, tuple(exc.errors)
        current.set_attribute("domicile.policy.version", policy.version)
        return policy, ()


async def initial_policy(policy_file: Path | None, history: PolicyHistory) -> CompiledPolicy:
    """The policy to start with (see the module docstring), recorded in the history."""
    if policy_file is not None:
        source = str(policy_file)
        try:
            text = await asyncio.to_thread(policy_file.read_text, "utf-8")
        except OSError as exc:
            raise failed_precondition(f"policy file {source}: {exc.strerror}", "POLICY_INVALID") from None
    else:
        latest = await history.latest()
        source, text = (
            ("the policy history", latest.yaml) if latest is not None else ("the builtin default", DEFAULT_POLICY_YAML)
        )
    # A text the history recorded keeps loading as it did (a restart after an upgrade), and one
    # recorded before declassifiers named their jobs keeps that meaning; any other text is a
    # policy set now.
    policy, errors = compile_text(text, legacy=history.records_legacy_text(text), recorded=history.records_text(text))
    if policy is None:
        details = "; ".join(e.format(source) for e in errors[:5])
        raise failed_precondition(f"invalid policy in {source}: {details}", "POLICY_INVALID")
    recorded = await history.get(policy.version)
    if recorded is not None and recorded != text:
        raise failed_precondition(
            f"{source}: policy version {policy.version!r} is already recorded with a different text; "
            "give the changed policy a new metadata.version",
            "POLICY_VERSION_CONFLICT",
        )
    if policy_file is not None:
        latest = await history.latest()
        if latest is not None and latest.version != policy.version:
            # Typically a policy set through SetPolicy that the configured file now replaces.
            log.warning(
                "policy file %s (version %s) replaces the last active policy %s (from the policy history); "
                "start without --policy to keep the history's policy",
                source,
                policy.version,
                latest.version,
            )
    # Appends an activation unless this version is already the latest one, so the history
    # also says which policy was in force when (a file may bring back an older version).
    await history.record(policy.version, text)
    return policy
