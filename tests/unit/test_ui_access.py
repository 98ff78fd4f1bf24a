"""Who may look at the status page (daemon/ui/access.py)."""

from __future__ import annotations

from daemon.ui.access import MAX_SESSIONS, SESSION_SECONDS, Sessions, is_loopback


def test_loopback_addresses_and_only_those_open_the_page_without_a_token() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.5", "::", "mls.example.com"))  # noqa: S104


def test_a_session_gives_its_token_until_it_expires_or_is_closed() -> None:
    now = [1000.0]
    sessions = Sessions(clock=lambda: now[0])
    first, second = sessions.open("token-a"), sessions.open("token-b")
    assert first != second and "token" not in first
    assert sessions.token(first) == "token-a"
    sessions.close(first)
    assert sessions.token(first) is None
    now[0] += SESSION_SECONDS + 1
    assert sessions.token(second) is None
    assert sessions.token(None) is None and sessions.token("made-up") is None


def test_sessions_stay_bounded_the_oldest_forgotten_first() -> None:
    sessions = Sessions()
    oldest = sessions.open("t")
    for _ in range(MAX_SESSIONS):
        sessions.open("t")
    assert sessions.token(oldest) is None
