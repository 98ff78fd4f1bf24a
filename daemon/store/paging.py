"""Reading a collection one slice at a time, by keyset: each slice starts after the last id
of the one before, so a slice is as cheap on the thousandth page as on the first and a row
added meanwhile neither repeats nor shifts one (an OFFSET would do both)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from daemon.store.database import Database
from daemon.store.dialect import Statement
from daemon.store.records import from_row

RowT = TypeVar("RowT")


@dataclass(frozen=True)
class Slice(Generic[RowT]):
    rows: list[RowT]
    total: int  # rows that match the filters, over every slice
    more: bool  # another slice follows this one


@dataclass(frozen=True)
class Collection(Generic[RowT]):
    """A table read page by page: `select` takes the filters, `:after` and `:limit`; `count`
    the filters only. Runs, their errors and audit trails are ordered by number."""

    row_type: type[RowT]
    select: Statement
    count: Statement
    numbered: bool = False


async def read(
    db: Database,
    collection: Collection[RowT],
    filters: Mapping[str, Any],
    after: str | int | None,
    limit: int,
) -> Slice[RowT]:
    """One slice; `filters` must name every parameter of the collection's SQL."""
    params = {**filters, "after": after}
    return await read_slice(
        db, collection.row_type, collection.select, collection.count, params, limit
    )


async def read_slice(
    db: Database,
    row_type: type[RowT],
    select: Statement,
    count: Statement,
    params: Mapping[str, Any],
    limit: int,
) -> Slice[RowT]:
    """`select` takes the filters, `:after` and `:limit`; `count` the filters only. One row
    more than asked for says whether another slice follows."""
    async with db.reading() as conn:
        rows = list(await conn.fetch_all(select, {**params, "limit": limit + 1}))
        counted = await conn.fetch_all(count, params)
    total = int(next(iter(counted))[0])
    return Slice([from_row(row_type, r) for r in rows[:limit]], total, len(rows) > limit)
