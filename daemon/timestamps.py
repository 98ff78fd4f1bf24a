"""Time as the store keeps it: UTC, ISO-8601 text with microseconds and a Z.

A fixed width makes text order equal time order, so SQL can compare times as strings.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: times must carry a zone")
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # Formatted field by field: the same fixed-width text as isoformat(timespec=
    # "microseconds") with its "+00:00" swapped for "Z", at half the cost, and strftime costs
    # more still. It is written for every listing a cycle checks.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 - the fastest form here
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
    )


_ISO_LENGTH = len("2026-01-01T00:00:00.000000Z")


def is_iso_of(text: str, moment: datetime) -> bool:
    """Whether `text` is `iso(moment)`, found by reading `text` back, at a fraction of the cost
    of writing `moment` (a check compares the timestamp it stored last with the one it read):
    the shape first, since `fromisoformat` also reads other forms of the same moment (and
    newer Pythons read an hour of 24 as the next day's midnight)."""
    if (
        len(text) != _ISO_LENGTH
        or text[26] != "Z"
        or text[10] != "T"
        or text[4] != "-"
        or text[7] != "-"
        or text[13] != ":"
        or text[16] != ":"
        or text[19] != "."
        or text[11:13] == "24"
    ):
        return False
    try:
        return datetime.fromisoformat(text) == moment
    except ValueError:  # a digit that is not one
        return False


def is_stored_form(text: str | None, moment: datetime | None) -> bool:
    """Whether `text`, a moment as the store holds it, or None, is `moment`'s, or None too."""
    if text is None or moment is None:
        return text is None and moment is None
    return is_iso_of(text, moment)


def parse_iso(text: str) -> datetime:
    """Reads ISO-8601 with Z or an offset (what both the store and RESO servers write)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no zone")
    return moment.astimezone(UTC)
