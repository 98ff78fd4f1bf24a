"""Reading RESO's change log, the EntityEvent resource (docs/mls-reso.md "The change log").

An answer is a page of events in sequence order. Nothing is trusted: an event whose sequence
cannot be read makes the page unusable (where to go on from would be a guess, and a change
could be skipped); an event whose sequence reads but whose resource or key does not is kept
as an error of that event, so the run that meets it records it rather than says `ok`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from daemon.foreign_text import NO_CONTROL_CHARACTERS
from daemon.mls.payload import BadPayload, odata_page

RESOURCE = "EntityEvent"
MAX_SEQUENCE = 2**63 - 1


class _Event(BaseModel):
    # ResourceRecordUrl, a producer's extras: ignored. Built when first used (as in specs.py).
    model_config = ConfigDict(extra="ignore", defer_build=True)

    EntityEventSequence: StrictInt = Field(ge=1, le=MAX_SEQUENCE)
    ResourceName: StrictStr = Field(min_length=1, max_length=255)
    ResourceRecordKey: StrictStr = Field(
        min_length=1, max_length=255, pattern=NO_CONTROL_CHARACTERS
    )


class _Sequence(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    EntityEventSequence: StrictInt = Field(ge=1, le=MAX_SEQUENCE)


class _Resource(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    ResourceName: StrictStr


@dataclass(frozen=True, slots=True)
class EntityEvent:
    sequence: int
    resource: str
    key: str


@dataclass(slots=True)
class EventPage:
    events: list[EntityEvent] = field(default_factory=list)
    # Events whose sequence reads but not the rest: (sequence, their ResourceName when that
    # reads, what is wrong).
    errors: list[tuple[int, str | None, str]] = field(default_factory=list)
    next_link: str | None = None
    size: int = 0  # events in the answer
    first_sequence: int | None = None
    last_sequence: int | None = None  # the greatest sequence of the page

    def keys_of(self, resource: str) -> list[str]:
        """Each record of `resource` the page's events name (the connection's listings:
        `Property` as a rule), once, in the order of their first event."""
        return list(
            dict.fromkeys(e.key for e in self.events if names_resource(e.resource, resource))
        )

    def unreadable(self, resource: str) -> list[tuple[int, str]]:
        """(sequence, what is wrong) of the events that may be of `resource`: their
        resource is that one, or cannot be read either."""
        return [
            (seq, why)
            for seq, name, why in self.errors
            if name is None or names_resource(name, resource)
        ]


def names_resource(name: str, resource: str) -> bool:
    """Whether an event's ResourceName is `resource`, whatever its case: no two RESO
    resources differ by case alone, and ignoring a producer's `property` would miss every
    change it tells of while the read says ok."""
    return name.casefold() == resource.casefold()


def parse_event_page(body: bytes) -> EventPage:
    values, next_link = odata_page(body)
    page = EventPage(next_link=next_link, size=len(values))
    sequences = [_sequence_of(raw) for raw in values]
    for before, after in itertools.pairwise(sequences):
        if after <= before:
            raise BadPayload(
                f"EntityEventSequence {after} follows {before}: the events are not in "
                "sequence order"
            )
    if sequences:
        page.first_sequence, page.last_sequence = sequences[0], sequences[-1]
    for sequence, raw in zip(sequences, values, strict=True):
        try:
            event = _Event.model_validate(raw)
        except ValidationError as exc:
            page.errors.append((sequence, _resource_of(raw), _describe(exc)))
        else:
            page.events.append(
                EntityEvent(event.EntityEventSequence, event.ResourceName, event.ResourceRecordKey)
            )
    return page


def _sequence_of(raw: Any) -> int:
    try:
        return _Sequence.model_validate(raw).EntityEventSequence
    except ValidationError:
        raise BadPayload(
            "an event has no readable EntityEventSequence (a positive whole number): where "
            "to go on from is unknown"
        ) from None


def _resource_of(raw: Any) -> str | None:
    try:
        return _Resource.model_validate(raw).ResourceName
    except ValidationError:
        return None


def _describe(exc: ValidationError) -> str:
    """The fields at fault and why, never their values (a key is the server's data)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg'].lower()}"
        for err in exc.errors(include_url=False)[:3]
    )
