"""Console sessions and one-time links (domicile/console/sessions.py), on a fake clock."""

from __future__ import annotations

from domicile.console import sessions as console_sessions
from domicile.console.sessions import SessionStore, UsedLinks
from domicile.security.context import Caller

DEV = Caller("dev", scopes=frozenset({"catalog:read"}))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_lives_until_idle_or_absolute_expiry():
    clock = Clock()
    store = SessionStore(ttl=100, idle=10, clock=clock)
    session = store.create(DEV)
    assert len(session.id) >= 40 and session.csrf_token != session.id
    for _ in range(5):  # requests within the idle timeout keep it alive
        clock.now += 9
        assert store.get(session.id) is session
    clock.now += 10
    assert store.get(session.id) is None
    session = store.create(DEV)
    for _ in range(11):
        clock.now += 9.5
        store.get(session.id)
    assert store.get(session.id) is None  # past the absolute lifetime however busy


def test_sign_out_and_unknown_ids():
    store = SessionStore(ttl=100, idle=10, clock=Clock())
    session = store.create(DEV)
    store.end(session.id)
    assert store.get(session.id) is None
    assert store.get("") is None and store.get(None) is None and store.get("forged") is None


def test_csrf_token_must_match():
    session = SessionStore(ttl=100, idle=10, clock=Clock()).create(DEV)
    assert session.csrf_matches(session.csrf_token)
    assert not session.csrf_matches(None) and not session.csrf_matches("") and not session.csrf_matches("x")


def test_the_number_of_sessions_is_bounded(monkeypatch):
    monkeypatch.setattr(console_sessions, "MAX_SESSIONS", 3)
    store = SessionStore(ttl=100, idle=10, clock=Clock())
    first = store.create(DEV)
    for _ in range(3):
        store.create(DEV)
    assert len(store) == 3 and store.get(first.id) is None


def test_a_link_is_redeemed_once():
    used = UsedLinks(clock=lambda: 0.0)
    assert used.redeem("token-a", expires=10)
    assert not used.redeem("token-a", expires=10)
    assert used.redeem("token-b", expires=10)
