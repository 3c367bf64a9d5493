"""JWT verification keys that follow their files (JWKS or PEM) without a restart.

Checked at most once per interval, when a token is verified; a file set that does not load
keeps the previous keys (a `keys_reload` event with outcome `error`), a good one replaces them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from domicile.security import events as ev
from domicile.security.events import SecurityEventLog
from domicile.security.tls import file_signature
from domicile.security.tokens import KeyLoadError, TokenVerifier, load_verification_keys

log = logging.getLogger(__name__)


class KeyFileReloader:
    """Replaces `verifier`'s keys when the key files change."""

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        jwks_file: Path | None,
        public_key_files: Sequence[Path],
        interval_seconds: float,
        events: SecurityEventLog,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.verifier = verifier
        self.jwks_file = jwks_file
        self.public_key_files = tuple(public_key_files)
        self.interval = interval_seconds
        self.events = events
        self._clock = clock
        self._lock = threading.Lock()
        self._paths = ((jwks_file,) if jwks_file else ()) + self.public_key_files
        self._signature = file_signature(self._paths)
        self._last_check = clock()

    def check(self) -> bool:
        """Reload when the files changed (at most one look per interval); True on a swap."""
        with self._lock:
            now = self._clock()
            if now - self._last_check < self.interval:
                return False
            self._last_check = now
            signature = file_signature(self._paths)
            if signature == self._signature:
                return False
            self._signature = signature
            try:
                keys = load_verification_keys(self.jwks_file, self.public_key_files)
            except KeyLoadError as exc:
                self.events.record(ev.KEYS_RELOAD, outcome="error", reason="INVALID_KEY_FILES", error=str(exc))
                log.warning("JWT key reload failed, keeping the previous keys: %s", exc)
                return False
            self.verifier.replace_keys(keys)
            self.events.record(ev.KEYS_RELOAD, outcome="ok", keys=len(keys), kids=[k.kid for k in keys if k.kid])
            log.info("reloaded %d JWT verification keys", len(keys))
            return True

    async def refetch(self) -> bool:
        """Files are looked at on their own schedule (`check`): an unknown key id changes nothing."""
        return False
