"""Console sessions: kept in server memory, found by an opaque random id in a cookie.

A session belongs to one authenticated `Caller` (its principal and scopes) and ends at the
first of: sign-out, `ttl` after sign-in, `idle` after its last request, a server restart.
Each session has its own CSRF token, which every state-changing request must echo in a
header (the synchronizer-token pattern; the cookie alone never authorizes a POST).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from domicile.security.context import Caller

Clock = Callable[[], float]
# Beyond this many live sessions the oldest are ended first: memory stays bounded.
MAX_SESSIONS = 10_000


@dataclass
class Session:
    id: str
    caller: Caller
    csrf_token: str
    created: float
    expires: float  # absolute end (`ttl` after sign-in)
    last_seen: float = field(default=0.0)
    # The ID token of an OpenID Connect sign-in ("" for a one-time link): the hint that lets
    # the identity provider end its own session at sign-out.
    id_token: str = field(default="", repr=False)

    def csrf_matches(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf_token.encode())


class SessionStore:
    """The live sessions of one server process."""

    def __init__(self, *, ttl: float, idle: float, clock: Clock = time.monotonic) -> None:
        self.ttl = ttl
        self.idle = idle
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, caller: Caller, *, id_token: str = "") -> Session:
        """A new session for `caller` (signed in with `id_token`, through OpenID Connect)."""
        now = self._clock()
        self._expire(now)
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.popitem(last=False)
        session = Session(
            id=secrets.token_urlsafe(32),
            caller=caller,
            csrf_token=secrets.token_urlsafe(32),
            created=now,
            expires=now + self.ttl,
            last_seen=now,
            id_token=id_token,
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle timer restarted), or None when there is none
        or it has ended."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now >= session.expires or now - session.last_seen >= self.idle:
            del self._sessions[session_id]
            return None
        session.last_seen = now
        return session

    def end(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _expire(self, now: float) -> None:
        # Sessions are kept in creation order, and so in order of their absolute end.
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now < oldest.expires:
                break
            self._sessions.popitem(last=False)


class UsedLinks:
    """One-time sign-in links already redeemed, remembered until they expire."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._used: dict[str, float] = {}

    def redeem(self, token: str, expires: float) -> bool:
        """True the first time `token` is redeemed, False after that."""
        now = self._clock()
        if len(self._used) > 1000:
            self._used = {k: v for k, v in self._used.items() if v > now}
        key = hmac.new(b"console-link", token.encode(), "sha256").hexdigest()
        if key in self._used:
            return False
        self._used[key] = expires
        return True
