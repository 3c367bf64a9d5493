"""Signed checkpoints: what they sign, the keys that sign and check them, where copies go.

A checkpoint line vouches for the line before it. It signs, with Ed25519, the UTF-8 statement

    domicile-decision-log-checkpoint/1
    <replica>
    <signed_seq>
    <signed_hash>
    <time>

(each field followed by a newline): the replica whose chain it is, the seq and hash of the line
before the checkpoint, and the checkpoint's time (RFC 3339). `signature` is the standard base64
of the 64-byte signature; `key_id` is the first 16 hex digits of the SHA-256 of the raw 32-byte
public key, so a verifier holding several public keys (old ones kept after a rotation) knows
which one to use. A verifier trusts only keys it was given, never a key the log names.

Copies of each checkpoint go to sinks outside the log file (the security event log, an anchor
file on another mount, an HTTP endpoint): a log cut short or rewritten by someone without the
key then disagrees with them (see `verify`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from domicile.appendfile import AppendOnlyFile
from domicile.errors import failed_precondition
from domicile.private_files import PRIVATE_FILE_MODE, make_private_directory
from domicile.security.events import DECISION_LOG_CHECKPOINT, SecurityEventLog

log = logging.getLogger(__name__)

STATEMENT_PREFIX = b"domicile-decision-log-checkpoint/1\n"


@dataclass(frozen=True)
class Checkpoint:
    """One signed checkpoint, as a checkpoint line and every sink hold it."""

    replica: str
    signed_seq: int
    signed_hash: str
    time: str
    key_id: str
    signature: str
    # In the chain up to and including the signed line: decisions, and the highest catalog revision named.
    decisions: int
    max_catalog_revision: int

    def statement(self) -> bytes:
        return statement(self.replica, self.signed_seq, self.signed_hash, self.time)

    def members(self) -> dict[str, Any]:
        """The checkpoint line's members (and a sink's record), in the order written."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Checkpoint:
        """From a checkpoint line's record or an anchor (KeyError / TypeError if incomplete)."""
        return cls(**{name: record[name] for name in cls.__dataclass_fields__})


def statement(replica: str, seq: int, head: str, time: str) -> bytes:
    """The bytes a checkpoint signs."""
    return STATEMENT_PREFIX + f"{replica}\n{seq}\n{head}\n{time}\n".encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class CheckpointSigner:
    """Signs checkpoints with one Ed25519 private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def from_file(cls, path: Path) -> CheckpointSigner:
        """Load a PEM (PKCS#8) Ed25519 private key. Raises DomicileError FAILED_PRECONDITION
        (CHECKPOINT_KEY_INVALID) naming the file and the problem."""
        try:
            key = load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise _key_error(path, exc.strerror or str(exc)) from None
        except (ValueError, TypeError) as exc:
            raise _key_error(path, f"not a PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise _key_error(path, f"a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    def sign(
        self, replica: str, seq: int, head: str, time: str, *, decisions: int, max_catalog_revision: int
    ) -> Checkpoint:
        signature = self._key.sign(statement(replica, seq, head, time))
        return Checkpoint(
            replica,
            seq,
            head,
            time,
            self.key_id,
            base64.b64encode(signature).decode("ascii"),
            decisions,
            max_catalog_revision,
        )


class TrustedKeys:
    """The public keys a verifier accepts checkpoints from, by key id."""

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self._keys = {key_id(key): key for key in keys}

    @classmethod
    def load(cls, files: Iterable[Path], also: Iterable[Ed25519PublicKey] = ()) -> TrustedKeys:
        """Keys from PEM files (public keys, or private keys whose public half is taken) plus
        `also`. Raises DomicileError FAILED_PRECONDITION (CHECKPOINT_KEY_INVALID) naming a bad file."""
        return cls([*map(load_public_key, files), *also])

    def __bool__(self) -> bool:
        return bool(self._keys)

    def with_key(self, public_key: Ed25519PublicKey) -> TrustedKeys:
        """These keys and `public_key`."""
        return TrustedKeys([*self._keys.values(), public_key])

    def __contains__(self, identifier: str) -> bool:
        return identifier in self._keys

    def ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def problem(self, checkpoint: Checkpoint) -> str:
        """Why `checkpoint`'s signature cannot be accepted ('' when it verifies)."""
        key = self._keys.get(checkpoint.key_id)
        if key is None:
            return f"signed by key {checkpoint.key_id}, which is not among the trusted keys ({', '.join(self._keys) or 'none'})"
        try:
            key.verify(base64.b64decode(checkpoint.signature, validate=True), checkpoint.statement())
        except (InvalidSignature, ValueError):
            return f"its signature does not verify with key {checkpoint.key_id}"
        return ""


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file holding it or its private key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _key_error(path, exc.strerror or str(exc)) from None
    try:
        key: Any = (
            load_pem_private_key(data, password=None).public_key()
            if b"PRIVATE KEY" in data
            else load_pem_public_key(data)
        )
    except (ValueError, TypeError) as exc:
        raise _key_error(path, f"not a PEM key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise _key_error(path, f"a {type(key).__name__}, not an Ed25519 key")
    return key


def ensure_key(path: Path) -> Path:
    """Create an Ed25519 private key (PEM, 0600) at `path` unless one is there; returns `path`.
    For development set-ups only: the key then lives on the same host as the log."""
    if not path.exists():
        make_private_directory(path.parent)
        pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(staging, path)  # fails if another process created it meanwhile: keep theirs
        except FileExistsError:
            pass
        finally:
            os.unlink(staging)
    return path


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def _key_error(path: Path, problem: str):
    return failed_precondition(f"checkpoint key {path}: {problem}", "CHECKPOINT_KEY_INVALID")


# ---- sinks -----------------------------------------------------------------------------------


class CheckpointSink(Protocol):
    """Somewhere a copy of each checkpoint goes. `publish` is called from the log's writer
    thread right after the checkpoint is durable in the log: it must not block for long, and a
    failure to deliver must not stop the log (it is logged)."""

    def publish(self, checkpoint: Checkpoint) -> None: ...

    def close(self) -> None: ...


class SecurityEventSink:
    """Records each checkpoint as a `decision_log_checkpoint` security event (fsynced)."""

    def __init__(self, events: SecurityEventLog) -> None:
        self._events = events

    def publish(self, checkpoint: Checkpoint) -> None:
        self._events.record(DECISION_LOG_CHECKPOINT, outcome="ok", **checkpoint.members())
        self._events.sync()

    def close(self) -> None:
        """The security event log is closed by its owner."""


class FileSink:
    """Appends each checkpoint as one JSON line (fsynced) to an anchor file -- best on another
    mount or host, where whoever can rewrite the log cannot rewrite it too."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = AppendOnlyFile.open(path, what="checkpoint anchor file", in_use_reason="ANCHOR_FILE_IN_USE")

    def publish(self, checkpoint: Checkpoint) -> None:
        try:
            self._file.write(json.dumps(checkpoint.members(), separators=(",", ":")).encode("utf-8") + b"\n")
            self._file.sync()
        except OSError as exc:
            log.warning(
                "checkpoint anchor file %s: cannot write checkpoint %d: %s", self.path, checkpoint.signed_seq, exc
            )

    def close(self) -> None:
        self._file.close()


class HttpSink:
    """POSTs each checkpoint as a JSON object to a URL, from a thread of its own (the log never
    waits for it). Undelivered checkpoints are retried with backoff, the most recent 100 kept:
    each one vouches for everything before it, so the latest matters most."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        self._timeout = timeout
        self._delay_cap = 60.0  # the longest wait between attempts
        self._pending: deque[Checkpoint] = deque(maxlen=100)
        self._wakeup = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="checkpoint-http-sink", daemon=True)
        self._thread.start()

    def publish(self, checkpoint: Checkpoint) -> None:
        with self._wakeup:
            self._pending.append(checkpoint)
            self._wakeup.notify()

    def close(self) -> None:
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        self._thread.join(self._timeout + 1)

    def _run(self) -> None:
        delay = 0.0
        while True:
            with self._wakeup:
                if delay:
                    self._wakeup.wait_for(lambda: self._closing, timeout=delay)
                else:
                    self._wakeup.wait_for(lambda: self._closing or self._pending)
                if not self._pending:
                    return  # closing, nothing left to deliver
                # Closing: one last attempt, with the latest checkpoint (it vouches for all before it).
                checkpoint = self._pending[-1] if self._closing else self._pending[0]
                closing = self._closing
            delivered = self._post(checkpoint)
            if closing:
                return
            if delivered:
                with self._wakeup:
                    if self._pending and self._pending[0] is checkpoint:
                        self._pending.popleft()
                delay = 0.0
            else:
                delay = min(self._delay_cap, delay * 2 or 1.0)

    def _post(self, checkpoint: Checkpoint) -> bool:
        body = json.dumps(checkpoint.members()).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return 200 <= response.status < 300
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.warning("checkpoint sink %s: cannot deliver checkpoint %d: %s", self.url, checkpoint.signed_seq, exc)
            return False
