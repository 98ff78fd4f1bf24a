"""What an API token may do: its scope, and the rule that a wider scope includes a narrower.

`read` is for monitoring and an app's reads, `write` changes records, `admin` also handles
credentials and keys. The migration's CHECK on api_tokens.scope lists the same values.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any


class Scope(StrEnum):
    """Ordered read < write < admin. (A StrEnum alone would compare as text, where
    'admin' < 'read': the comparisons below compare by width instead.)"""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def width(self) -> int:
        return _WIDTH[self]

    def __lt__(self, other: Any) -> bool:
        return self.width < Scope(other).width

    def __le__(self, other: Any) -> bool:
        return self.width <= Scope(other).width

    def __gt__(self, other: Any) -> bool:
        return self.width > Scope(other).width

    def __ge__(self, other: Any) -> bool:
        return self.width >= Scope(other).width


_WIDTH = {Scope.READ: 0, Scope.WRITE: 1, Scope.ADMIN: 2}


def allows(held: Scope, needed: Scope) -> bool:
    """Whether a token of scope `held` may do what needs `needed`."""
    return held >= needed


def widest(scopes: Iterable[Scope]) -> Scope | None:
    """The scope that allows all of `scopes` (None for none)."""
    return max(scopes, default=None)


def needs(needed: Scope) -> str:
    """What a refused request is told: the scope it needs (never the token it gave)."""
    return f"this needs a token with the '{needed}' scope"
