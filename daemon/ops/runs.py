"""The sync history: runs, their errors, and what a run just made in this process did."""

from __future__ import annotations

from daemon.errors import found
from daemon.ops import views
from daemon.ops.context import Topic
from daemon.ops.pages import Page, read_page
from daemon.ops.queries import RunErrorQuery, RunQuery
from daemon.ops.views import View
from daemon.store import listings
from daemon.store import runs as store
from daemon.store.paging import read
from daemon.sync.engine import RunReport

PROBLEMS_IN_VIEW = 50  # a run's view shows its first errors; all are read page by page


class RunOps(Topic):
    async def list(self, query: RunQuery) -> Page:
        """Newest first."""
        return await read_page(self.ctx.db, store.RUNS, query, views.run)

    async def get(self, run_id: int) -> View:
        row = found(await store.get(self.ctx.db, run_id), "run")
        first = await read(
            self.ctx.db,
            store.RUN_ERRORS,
            RunErrorQuery(limit=PROBLEMS_IN_VIEW).filters() | {"run_id": run_id},
            None,
            PROBLEMS_IN_VIEW,
        )
        return {
            **views.run(row),
            "changes": await listings.changes_by_kind(self.ctx.db, run_id),
            "problems": [views.run_error(e) for e in first.rows],
            "problems_total": first.total,
        }

    async def errors(self, run_id: int, query: RunErrorQuery) -> Page:
        await self.get(run_id)
        return await read_page(self.ctx.db, store.RUN_ERRORS, query, views.run_error, run_id=run_id)


def report_view(report: RunReport) -> View:
    """A run just made in this process: the run, what it changed by kind, its first problems
    and what happened to each post it tried."""
    return {
        **views.run(report.run),
        "changes": report.changes,
        "posts_due": report.posts_due,
        "problems": [views.run_error(e) for e in report.errors],
        "posts": [
            {
                "post_id": p.post_id,
                "platform": p.platform,
                "outcome": p.outcome_name,
                "detail": p.detail,
            }
            for p in report.posts
        ],
    }
