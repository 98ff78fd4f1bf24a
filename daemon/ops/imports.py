"""Reading many listings at once, from CSV (a header row) or JSON lines (one object a line).
Pure: text in, specs or a report of every bad row out. Every row is checked before any is
written: one bad row and nothing is imported."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from daemon import foreign_json
from daemon.specs import ListingSpec, SpecError, parse_spec

ImportFormat = Literal["csv", "jsonl"]
COLUMNS = ("id", "connection_id", "listing_key")
OPTIONAL_COLUMNS = ("status", "user_id")
MAX_PROBLEMS = 1000  # a report long enough to fix a file by, short enough to read


@dataclass(frozen=True)
class Unreadable:
    """A row that cannot be read as a record's fields; `message` says why, without its values."""

    message: str


Row = tuple[int, dict[str, Any] | Unreadable]  # its line number, and its fields


@dataclass(frozen=True)
class RowProblem:
    line: int
    message: str  # names the field and the rule; with the value only where the caller allows


class ImportRefused(SpecError):
    """Nothing was imported; `problems` says what is wrong, line by line."""

    def __init__(self, problems: list[RowProblem]) -> None:
        shown = problems[:MAX_PROBLEMS]
        more = len(problems) - len(shown)
        lines = [p.message for p in shown] + ([f"... and {more} more"] if more else [])
        super().__init__("nothing imported:\n" + "\n".join(lines))
        self.problems = shown


def read_rows(text: str, form: ImportFormat, values: bool = True) -> Iterator[Row]:
    """(line number, fields) for each row; raises ImportRefused for a file that cannot be read
    as `form` at all (a header without the columns, a line that is not a JSON object).
    `values=False` leaves the names of unknown columns out (they are input too). A byte order
    mark (Excel's "CSV UTF-8", Notepad) is not part of the first row."""
    text = text.removeprefix("\ufeff")
    return _csv_rows(text, values) if form == "csv" else _json_rows(text)


def _csv_rows(text: str, values: bool) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        expected = f"{','.join(COLUMNS)}[,{','.join(OPTIONAL_COLUMNS)}]"
        _refuse(1, f"the header lacks {', '.join(missing)} (expected {expected})")
    unknown = [c for c in header if c not in (*COLUMNS, *OPTIONAL_COLUMNS)]
    if unknown:
        named = f" {', '.join(unknown)}" if values else ""
        expected = f"{','.join(COLUMNS)}[,{','.join(OPTIONAL_COLUMNS)}]"
        _refuse(1, f"unknown column(s){named} (expected {expected})")
    try:
        for row in reader:
            extra = row.pop(None, None)  # DictReader keeps the fields beyond the header there
            if extra is not None:
                count = f"{len(header) + len(extra)} fields, but the header names {len(header)}"
                yield reader.line_num, Unreadable(f"{count} (quote a value that holds a comma)")
                continue
            # A short row lacks its last columns (None): they are missing, not of a wrong type.
            fields = {k: v.strip() for k, v in row.items() if v is not None}
            for optional in OPTIONAL_COLUMNS:  # an empty cell: not given
                if not fields.get(optional):
                    fields.pop(optional, None)
            yield reader.line_num, fields
    except csv.Error as exc:
        _refuse(reader.line_num, f"not readable as CSV ({exc})")


def _json_rows(text: str) -> Iterator[Row]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            fields = foreign_json.loads(raw)
        except ValueError:
            _refuse(line, "not a JSON object")
        if not isinstance(fields, dict):
            _refuse(line, "not a JSON object")
        yield line, fields


def _refuse(line: int, message: str) -> Any:
    raise ImportRefused([RowProblem(line, f"line {line}: {message}")])


def check_rows(
    rows: Iterable[Row],
    known_connections: set[str],
    values: bool,
) -> list[tuple[int, ListingSpec]]:
    """Every row as a spec with its line, or ImportRefused naming each bad row: invalid
    fields, an id or a key given twice, an unknown connection. `values=False` keeps the values
    given out of the messages (an API answer never repeats its body)."""
    specs: list[tuple[int, ListingSpec]] = []
    problems: list[RowProblem] = []
    seen: dict[str, int] = {}
    seen_keys: dict[tuple[str, str], int] = {}
    for line, fields in rows:
        where = f"line {line}"
        if isinstance(fields, Unreadable):
            problems.append(RowProblem(line, f"{where}: {fields.message}"))
            continue
        try:
            spec = parse_spec(ListingSpec, dict(fields), where=where, values=values)
        except SpecError as exc:
            problems.extend(RowProblem(line, m) for m in str(exc).splitlines())
            continue
        if spec.id in seen:
            shown = f"id {spec.id!r}" if values else "this id"
            problems.append(
                RowProblem(line, f"{where}: {shown} is already on line {seen[spec.id]}")
            )
            continue
        if spec.connection_id not in known_connections:
            problems.append(
                RowProblem(line, f"{where}: connection_id: no MLS connection has this id")
            )
            continue
        key = (spec.connection_id, spec.listing_key)
        if key in seen_keys:
            message = f"{where}: listing_key: line {seen_keys[key]} tracks it on this connection"
            problems.append(RowProblem(line, message))
            continue
        seen[spec.id] = line
        seen_keys[key] = line
        specs.append((line, spec))
    if problems:
        raise ImportRefused(problems)
    if not specs:
        raise ImportRefused([RowProblem(0, "no rows to import")])
    return specs


def check_keys_free(
    rows: list[tuple[int, ListingSpec]], tracked: Mapping[tuple[str, str], str]
) -> None:
    """ImportRefused naming each row whose key another listing already tracks on its
    connection (`tracked`: (connection id, key) -> the listing id that tracks it)."""
    problems = [
        RowProblem(line, f"line {line}: listing_key: listing {owner!r} tracks it (this connection)")
        for line, spec in rows
        if (owner := tracked.get((spec.connection_id, spec.listing_key), spec.id)) != spec.id
    ]
    if problems:
        raise ImportRefused(problems)
