"""A small, believable market for the sandbox: seeded listings and statuses that move.

Deterministic for a given seed, so a demo or a test run can be repeated exactly.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass

from daemon.sandbox.mls_server import SandboxMls

# Where a listing may go next, with weights (the RESO values, both spellings in use).
NEXT: dict[str, list[tuple[str, int]]] = {
    "Coming Soon": [("Active", 8), ("Withdrawn", 1)],
    "Active": [("Pending", 4), ("Active Under Contract", 3), ("Withdrawn", 1), ("Expired", 1)],
    "Active Under Contract": [("Pending", 3), ("Closed", 3), ("Active", 2)],
    "ActiveUnderContract": [("Closed", 3), ("Active", 2)],
    "Pending": [("Closed", 6), ("Active", 3)],
    "Withdrawn": [("Active", 2), ("Canceled", 1)],
    "Expired": [("Active", 1), ("Canceled", 1)],
}
START: list[tuple[str, int]] = [
    ("Active", 60),
    ("Coming Soon", 10),
    ("Active Under Contract", 10),
    ("Pending", 15),
    ("Withdrawn", 5),
]


def listing_key(connection: int, n: int) -> str:
    return f"SBX{connection:03d}-{n:06d}"


def seed(mls: SandboxMls, keys: list[str], rng: random.Random) -> None:
    for key in keys:
        mls.put(key, _pick(START, rng))


@dataclass(frozen=True)
class Move:
    key: str
    before: str
    after: str


def move(
    mls: SandboxMls,
    count: int,
    rng: random.Random,
    among: list[str] | None = None,
    sparing: Collection[str] = (),
) -> list[Move]:
    """Advances `count` listings one step (of `among`, or of all, but never those of
    `sparing`); now and then one leaves the feed."""
    records = (
        mls.records if among is None else {k: mls.records[k] for k in among if k in mls.records}
    )
    movable = sorted(
        k
        for k, r in records.items()
        if r.get("MlgCanView") and str(r.get("StandardStatus")) in NEXT and k not in sparing
    )
    moves = []
    for key in rng.sample(movable, min(count, len(movable))):
        before = str(mls.status_of(key))
        if rng.random() < 0.03:
            mls.hide(key)
            moves.append(Move(key, before, "(removed)"))
            continue
        after = _pick(NEXT[before], rng)
        if after == "Active Under Contract" and rng.random() < 0.5:
            after = "ActiveUnderContract"  # Enum-type servers send this form
        mls.set_status(key, after)
        moves.append(Move(key, before, after))
    return moves


def _pick(choices: list[tuple[str, int]], rng: random.Random) -> str:
    values, weights = zip(*choices, strict=True)
    return str(rng.choices(values, weights=weights)[0])
