"""A topic whose records are listed a page at a time and read one by one by id: what it
needs to say of its kind, once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from daemon.errors import found
from daemon.ops.context import Topic
from daemon.ops.pages import Page, read_page
from daemon.ops.queries import PageQuery
from daemon.ops.views import View
from daemon.store.database import Database
from daemon.store.paging import Collection

RowT = TypeVar("RowT")


@dataclass(frozen=True)
class Kind(Generic[RowT]):
    name: str  # as a refusal names it: "no MLS connection has this id"
    collection: Collection[RowT]
    read_one: Callable[[Database, str], Awaitable[RowT | None]]
    view: Callable[[RowT], View]


class Records(Topic):
    kind: ClassVar[Kind[Any]]

    async def list(self, query: PageQuery) -> Page:
        return await read_page(self.ctx.db, self.kind.collection, query, self.kind.view)

    async def get(self, record_id: str) -> View:
        row = await self.kind.read_one(self.ctx.db, record_id)
        return self.kind.view(found(row, self.kind.name))
