"""A page of a collection: its items, how many match in all, and the cursor of the next page.

The cursor is the last id of the page (the first id to leave out, newest-first for runs):
callers pass it back as `after`; a page with no next cursor is the last one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from daemon.ops.queries import PageQuery
from daemon.ops.views import View
from daemon.specs import SpecError
from daemon.store.database import Database
from daemon.store.paging import Collection, Slice, read

RowT = TypeVar("RowT")


@dataclass(frozen=True)
class Page:
    items: list[View]
    total: int
    next_after: str | None

    def view(self) -> View:
        return {"items": self.items, "total": self.total, "next_after": self.next_after}


def page_of(slice_: Slice[RowT], view: Callable[[RowT], View]) -> Page:
    items = [view(r) for r in slice_.rows]
    last: Any = items[-1]["id"] if items and slice_.more else None
    return Page(items, slice_.total, None if last is None else str(last))


async def read_page(
    db: Database,
    collection: Collection[RowT],
    query: PageQuery,
    view: Callable[[RowT], View],
    **fixed: Any,
) -> Page:
    """A page of `collection` as `query` asks (with `fixed` filters of the caller's own: the
    listing of an audit trail, the run of its errors)."""
    after = int_cursor(query.after) if collection.numbered else query.after
    slice_ = await read(db, collection, {**query.filters(), **fixed}, after, query.limit)
    return page_of(slice_, view)


def int_cursor(after: str | None) -> int | None:
    """A cursor over numeric ids (runs, errors, status changes)."""
    if after is None:
        return None
    if not after.isascii() or not after.isdigit() or len(after) > 18:
        raise SpecError("after: not a cursor of this collection (use the next_after given)")
    return int(after)
