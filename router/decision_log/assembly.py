"""The decision log a server runs with, built from its settings (`open_configured_log`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from domicile.config import Settings
from domicile.errors import failed_precondition
from domicile.router.decision_log.checkpoints import (
    CheckpointSigner,
    CheckpointSink,
    FileSink,
    HttpSink,
    SecurityEventSink,
    TrustedKeys,
    ensure_key,
)
from domicile.router.decision_log.writer import DecisionLog

if TYPE_CHECKING:
    from domicile.app import App

# The checkpoint key --dev and --insecure generate and use: a development set-up's key lives
# on the host of the log it signs.
DEV_CHECKPOINT_KEY = "dev-checkpoint-key.pem"


def checkpoint_key_path(settings: Settings) -> Path:
    """The private key that signs checkpoints: `audit.checkpoint_key_file`, or the development
    key under the data directory (created if missing) with --dev / --insecure. Raises
    DomicileError FAILED_PRECONDITION (CHECKPOINT_KEY_MISSING) otherwise."""
    if settings.audit.checkpoint_key_file is not None:
        return settings.audit.checkpoint_key_file
    if settings.dev or settings.insecure:
        return ensure_key(settings.data_dir / DEV_CHECKPOINT_KEY)
    raise failed_precondition(
        "the decision log's checkpoints are signed: set audit.checkpoint_key_file to an Ed25519 private key "
        "(`domicile audit keygen FILE` makes one), or use --dev for a development key",
        "CHECKPOINT_KEY_MISSING",
    )


def trusted_keys(settings: Settings, signer: CheckpointSigner) -> TrustedKeys:
    """The signer's public key and `audit.checkpoint_public_key_files`."""
    return TrustedKeys.load(settings.audit.checkpoint_public_key_files).with_key(signer.public_key)


async def open_configured_log(app: App) -> DecisionLog:
    """Open `settings.decision_log_path` as `settings.audit` and `settings.router` say: signed
    checkpoints, copies to the security event log and the configured anchors, security events
    for the disk-space floor. Errors as `DecisionLog.open`,
    and FAILED_PRECONDITION for a missing or bad key or an anchor file that cannot be opened."""
    settings = app.settings
    audit = settings.audit
    signer = CheckpointSigner.from_file(checkpoint_key_path(settings))
    keys = trusted_keys(settings, signer)
    sinks: list[CheckpointSink] = []
    try:
        if app.security_events is not None:
            sinks.append(SecurityEventSink(app.security_events))
        if audit.anchor_file is not None:
            try:
                sinks.append(FileSink(audit.anchor_file))
            except OSError as exc:
                raise failed_precondition(
                    f"checkpoint anchor file {audit.anchor_file}: {exc.strerror or exc}", "ANCHOR_FILE_UNAVAILABLE"
                ) from None
        if audit.anchor_url:
            sinks.append(HttpSink(audit.anchor_url))
        return await DecisionLog.open(
            settings.decision_log_path,
            signer=signer,
            trusted_keys=keys,
            sinks=sinks,
            events=app.security_events,
            replica=audit.replica_id or None,
            durable=settings.router.durable_decision_log,
            checkpoint_lines=audit.checkpoint_every_lines,
            checkpoint_seconds=audit.checkpoint_every_seconds,
            rotate_bytes=audit.rotate_bytes,
            rotate_seconds=audit.rotate_seconds,
            keep_files=audit.keep_files,
            archive_dir=audit.archive_dir,
            min_free_bytes=audit.min_free_bytes,
        )
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
