"""The refusals every layer may raise, by what they mean to whoever asked.

The operations layer (daemon/ops/) and the store raise these; each surface turns them into its
own form once: the API into a problem answer with a status code (daemon/service/problems.py),
the CLI into one line on stderr and an exit code (daemon/cli/common.py). A message names what
is wrong and how to fix it, and never repeats a value given (it may be a secret).
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class NotFound(LookupError):
    """No record has this id (HTTP 404)."""


class Conflict(ValueError):
    """The request conflicts with the current state (HTTP 409): the message says what to do
    first, or which flag allows it anyway."""


# The problem `type` of a sync that cannot start (paused, excluded, busy), so a client (the CLI
# over --api) tells it from other conflicts, as the local CLI does (exit 1, not 2). A tag URI:
# it names the kind of problem and is never fetched.
SYNC_REFUSED = "tag:mls-sync,2026:sync-refused"


class Gone(LookupError):
    """What was asked for existed once and was deleted for good (HTTP 410): the message says
    where to start again."""


class Unavailable(Exception):
    """The operation cannot run here and now (HTTP 503): no key configured, shutting down."""


def found(record: T | None, what: str) -> T:
    """The record, or NotFound naming the kind looked for ("no listing has this id"). Not the
    id: a message never repeats what was sent."""
    if record is None:
        raise NotFound(f"no {what} has this id")
    return record
