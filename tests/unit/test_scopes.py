"""What a token's scope allows, and the pure parts of a token's life, through tables."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from daemon.ops.tokens import PREFIX, due_for_touch, new_token, token_sha256
from daemon.scopes import Scope, allows, needs, widest
from daemon.timestamps import iso

R, W, A = Scope.READ, Scope.WRITE, Scope.ADMIN


@pytest.mark.parametrize(
    ("held", "needed", "allowed"),
    [
        (R, R, True),
        (R, W, False),
        (R, A, False),
        (W, R, True),
        (W, W, True),
        (W, A, False),
        (A, R, True),
        (A, W, True),
        (A, A, True),
    ],
)
def test_a_wider_scope_allows_what_a_narrower_one_does(
    held: Scope, needed: Scope, allowed: bool
) -> None:
    assert allows(held, needed) is allowed


def test_scopes_order_by_width_not_by_their_text() -> None:
    """As text 'admin' < 'read': a StrEnum's own comparison would get every check wrong."""
    assert sorted([A, R, W]) == [R, W, A]
    assert R < W < A and A > R and not A <= W
    assert max(R, A, W) is A


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [([], None), ([R], R), ([R, W], W), ([A, R], A), ([W, R, W], W)],
)
def test_a_route_with_several_requirements_needs_the_widest(
    scopes: list[Scope], expected: Scope | None
) -> None:
    assert widest(scopes) == expected


def test_a_refusal_names_the_scope_needed() -> None:
    assert needs(W) == "this needs a token with the 'write' scope"


def test_a_new_token_is_long_random_and_recognisable() -> None:
    made = {new_token() for _ in range(100)}
    assert len(made) == 100
    for token in made:
        assert re.fullmatch(PREFIX + r"[A-Za-z0-9_-]{43}", token)


def test_a_token_is_stored_as_the_hex_sha256_of_its_text() -> None:
    """The published SHA-256 of "abc": anyone can check a stored hash against a token."""
    assert token_sha256("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("last_used", "written"),
    [
        (None, True),
        (NOW - timedelta(seconds=59), False),
        (NOW - timedelta(seconds=60), False),
        (NOW - timedelta(seconds=61), True),
        (NOW - timedelta(days=30), True),
    ],
)
def test_a_tokens_use_is_written_at_most_once_a_minute(
    last_used: datetime | None, written: bool
) -> None:
    assert due_for_touch(iso(last_used) if last_used else None, NOW) is written
