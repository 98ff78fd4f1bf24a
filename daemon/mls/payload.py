"""Reading RESO answers. A bad record fails that listing; a bad page fails that request.

Nothing here trusts the server: every field is checked for type, and the problem is named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, NotRequired

from pydantic import (
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    TypeAdapter,
    ValidationError,
    with_config,
)
from typing_extensions import TypedDict  # pydantic refuses typing's before Python 3.12

from daemon import foreign_json
from daemon.foreign_text import NO_CONTROL_CHARACTERS, has_control_characters
from daemon.models import MlsRecord, mls_record_of


class BadPayload(Exception):
    """The answer as a whole is unusable (not JSON, no `value` list, a bad nextLink)."""


# What a record's text fields may hold: a key is never empty.
_Key = Annotated[StrictStr, Field(min_length=1, max_length=255, pattern=NO_CONTROL_CHARACTERS)]
_Text = Annotated[StrictStr | None, Field(max_length=255, pattern=NO_CONTROL_CHARACTERS)]


# Servers add fields freely (and MLS Grid adds Mlg*): ignore what we did not ask for.
@with_config(ConfigDict(extra="ignore"))
class _Record(TypedDict):
    """A record as read: a dictionary, not a model, since one is made for each record a
    cycle reads, and a model costs more to validate and is one more object for the garbage
    collector to walk (docs/benchmarks.md "The HTTP engine"). A field left out is absent
    (read with `.get`)."""

    ListingKey: _Key
    StandardStatus: NotRequired[_Text]
    MlsStatus: NotRequired[_Text]
    ModificationTimestamp: NotRequired[datetime | None]
    MlgCanView: NotRequired[StrictBool | None]


@dataclass(frozen=True, slots=True)
class RecordError:
    listing_key: str | None  # None when even the key cannot be read
    message: str


@dataclass(slots=True)
class Page:
    records: list[MlsRecord] = field(default_factory=list)
    # Keys the server marks as not viewable (MlgCanView=false): removed from the feed.
    hidden: list[str] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)
    next_link: str | None = None
    size: int = 0  # records in the answer, readable or not
    # The (ModificationTimestamp, ListingKey) of the last readable record in the order the
    # server sent them, not the greatest by Python's order: where a keyset continuation goes
    # on from, after the server's own last key among records that share a timestamp (it may
    # collate keys as numbers, or without regard to case: docs/mls-paging.md).
    last_position: tuple[datetime, str] | None = None
    # The first readable record's (ModificationTimestamp, ListingKey), and whether a later
    # record came with an earlier timestamp: a read of changes asks for them oldest first, and
    # a server that ignores that cannot be paged through without losing some
    # (docs/mls-paging.md).
    first_position: tuple[datetime, str] | None = None
    out_of_order: bool = False
    # last_position's timestamp as the server wrote it (`parse_changes_page`).
    last_moment: str | None = None


@with_config(ConfigDict(extra="ignore"))
class _CleanPage(TypedDict):
    """A page in which every record is well formed: the usual case, read in one pass of
    pydantic's JSON parser (a quarter of the cost of json.loads plus a validation per record).
    Anything else is read again record by record, so that a bad record fails only itself."""

    value: list[_Record]
    next_link: NotRequired[Annotated[StrictStr | None, Field(alias="@odata.nextLink")]]


# Built at first use, not at import: every CLI command imports this module, and most never
# read an MLS page.
@cache
def _clean_page() -> TypeAdapter[_CleanPage]:
    return TypeAdapter(_CleanPage)


@cache
def _record() -> TypeAdapter[_Record]:
    return TypeAdapter(_Record)


def prepare() -> None:
    """The validators of pages of records built now (`composition.prepare_mls_reading`)."""
    _clean_page()
    _record()


def parse_page(body: bytes) -> Page:
    try:
        clean = _clean_page().validate_json(body)
    except ValidationError:
        return _parse_page_by_record(body)
    records = clean["value"]
    page = Page(next_link=clean.get("next_link") or None, size=len(records))
    for rec in records:
        _add(rec, page)
    return page


def parse_changes_page(body: bytes, page_size: int) -> Page:
    """A page of a read of changes. When the read goes on after it (a nextLink, or a full
    page), its last record's timestamp is kept as the server wrote it (`last_moment`): sent
    back as it is in the keyset query, it matches that record exactly on a server whose times
    are finer than a microsecond, where the moment cut to ours does not (docs/mls-paging.md)."""
    page = parse_page(body)
    if page.last_position is not None and (page.next_link or page.size >= page_size):
        page.last_moment = _server_moment(body, page.last_position)
    return page


# An ISO 8601 timestamp as RESO servers write ModificationTimestamp (Edm.DateTimeOffset): only
# text of this form is ever sent back in a filter.
_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


def _server_moment(body: bytes, position: tuple[datetime, str]) -> str | None:
    """The text of the timestamp of the last record under `position`'s key, when it is a
    plain timestamp that reads as `position`'s moment; None otherwise."""
    values, _ = odata_page(body)
    moment, key = position
    for raw in reversed(values):
        if isinstance(raw, dict) and raw.get("ListingKey") == key:
            text = raw.get("ModificationTimestamp")
            if not isinstance(text, str) or _MOMENT.fullmatch(text) is None:
                return None
            try:
                read = datetime.fromisoformat(text).astimezone(UTC)
            except (ValueError, OverflowError):
                return None
            return text if read == moment else None
    return None


def odata_page(body: bytes) -> tuple[list[Any], str | None]:
    """An OData answer's `value` list and its nextLink (None when absent or empty), or
    BadPayload naming what is wrong with it."""
    try:
        doc = foreign_json.loads(body)
    except ValueError as exc:
        raise BadPayload(f"the answer is not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("value"), list):
        raise BadPayload("the answer has no `value` list (is this a RESO Web API resource?)")
    next_link = doc.get("@odata.nextLink")
    if next_link is not None and not isinstance(next_link, str):
        raise BadPayload("@odata.nextLink is not a string")
    return doc["value"], next_link or None


def _parse_page_by_record(body: bytes) -> Page:
    values, next_link = odata_page(body)
    page = Page(next_link=next_link, size=len(values))
    for raw in values:
        _read_record(raw, page)
    return page


def _read_record(raw: Any, page: Page) -> None:
    try:
        rec = _record().validate_python(raw)
    except ValidationError as exc:
        key = raw.get("ListingKey") if isinstance(raw, dict) else None
        # A key that is no text, or holds a control character, cannot be read: it names no
        # tracked listing, and is never looked up (PostgreSQL refuses a NUL in a query).
        key = key if isinstance(key, str) and key and not has_control_characters(key) else None
        page.errors.append(RecordError(key, _describe(exc)))
        return
    _add(rec, page)


def _add(rec: _Record, page: Page) -> None:
    # Run for every record a cycle reads: each field is read once, and the record is
    # made by position.
    key = rec["ListingKey"]
    modified = rec.get("ModificationTimestamp")
    if modified is not None:
        if modified.tzinfo is None:
            page.errors.append(RecordError(key, "ModificationTimestamp has no time zone"))
            return
        try:
            # In UTC from here on: the store, the cursor and the comparisons all use UTC.
            modified = modified.astimezone(UTC)
        except OverflowError:
            page.errors.append(RecordError(key, "ModificationTimestamp is out of range in UTC"))
            return
        last = page.last_position
        if last is None:
            page.first_position = (modified, key)
        elif modified < last[0]:
            page.out_of_order = True
        if last is None or modified >= last[0]:
            page.last_position = (modified, key)
    if rec.get("MlgCanView") is False:
        page.hidden.append(key)
        return
    record = (key, rec.get("StandardStatus"), rec.get("MlsStatus"), modified)
    page.records.append(mls_record_of(record))


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "record"
        given = repr(err.get("input"))
        if len(given) > 60:
            given = given[:57] + "..."
        parts.append(f"{where}: {err['msg'].lower()} (got {given})")
    return "malformed record: " + "; ".join(parts)
