"""The demo's bookkeeping: what happened over its cycles, and whether it all ended in step.

Kept apart from the display (sandbox/demo_play.py) so the check that matters, "every listing
follows the MLS and no sold listing still has a post", is plain code a test can call.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from daemon.enums import PostStatus
from daemon.models import LocalStatus, StatusMapping
from daemon.sandbox.environment import SandboxSession
from daemon.sandbox.faults import Fault
from daemon.sandbox.mls_server import SandboxMls
from daemon.sandbox.platforms_server import SandboxPlatforms, graph_fault
from daemon.store import listings, posts
from daemon.store.database import Database
from daemon.sync.engine import RunReport


@dataclass
class PushedSale:
    """The demo's sale pushed by the MLS, timed from the change in the MLS."""

    listing_id: str
    sold_seconds: float | None  # until the listing was sold in mls-sync (None: not in time)
    posts: int  # its live posts before the sale
    down_seconds: float | None  # until the last of them was taken down (None: not all were)


@dataclass
class DemoStats:
    cycles: int = 0
    listings_checked: int = 0
    mls_requests: int = 0
    errors: int = 0
    changes: Counter[str] = field(default_factory=Counter)
    unpublished: Counter[str] = field(default_factory=Counter)  # platform -> posts taken down
    faults: Counter[str] = field(default_factory=Counter)  # kind -> injected
    mail_subjects: list[str] = field(default_factory=list)  # what the sandbox SMTP sink got
    # What the sandbox's webhook sink got: events by type, and how many did not verify.
    webhooks: Counter[str] = field(default_factory=Counter)
    webhooks_unverified: int = 0
    webhooks_in_order: bool = True
    pushed_sale: PushedSale | None = None

    def add(self, report: RunReport, cycle: bool = True) -> None:
        """A run's counts; `cycle` False for a run between cycles (a push, a poll)."""
        self.cycles += cycle
        self.listings_checked += report.run.listings_checked
        self.mls_requests += report.run.mls_requests
        self.errors += report.run.errors
        self.changes.update(report.changes)
        for result in report.posts:
            if result.outcome is not None and type(result.outcome).__name__ in (
                "Deleted",
                "AlreadyGone",
            ):
                self.unpublished[result.platform] += 1


def inject_faults(session: SandboxSession, rng: random.Random, stats: DemoStats) -> None:
    """Now and then the MLS or a platform misbehaves, as real ones do."""
    roll = rng.random()
    if roll < 0.25:
        session.mls.faults.add(Fault("status", status=429, retry_after="0"))
        stats.faults["MLS 429 Too Many Requests"] += 1
    elif roll < 0.45:
        session.mls.faults.add(Fault("status", status=503))
        stats.faults["MLS 503"] += 1
    elif roll < 0.55:
        session.mls.faults.add(Fault("malformed_json"))
        stats.faults["MLS malformed JSON"] += 1
    if rng.random() < 0.3:
        session.platforms.inject("facebook", graph_fault(4))
        stats.faults["Facebook throttled (code 4)"] += 1
    if rng.random() < 0.2:
        session.platforms.inject("linkedin", Fault("status", status=500))
        stats.faults["LinkedIn 500"] += 1


@dataclass(frozen=True)
class Consistency:
    listings_out_of_step: list[str]
    sold_with_live_posts: list[str]
    # Still up on their platform, and recorded as needing a person (no API deletes them):
    # told, which is what the daemon can do, so not out of step.
    left_to_a_person: list[str] = field(default_factory=list)

    @property
    def in_step(self) -> bool:
        return not self.listings_out_of_step and not self.sold_with_live_posts


async def check_consistency(
    db: Database,
    mls: SandboxMls,
    platforms: SandboxPlatforms,
    mapping: StatusMapping,
    unpublish_on: tuple[LocalStatus, ...] = (LocalStatus.SOLD,),
) -> Consistency:
    """Every listing's status is its mapped MLS status (off_market when gone from the feed),
    and no listing in `unpublish_on` still has a post published, locally or on a platform,
    unless it is recorded as needing a person."""
    out_of_step, live_posts, for_a_person = [], [], []
    for row in await listings.list_some(db, None, None, 1_000_000):
        record = mls.records.get(row.listing_key)
        if record is None or record.get("MlgCanView") is False:
            expected: LocalStatus | None = LocalStatus.OFF_MARKET
        else:
            mapped = mapping.map(record.get("StandardStatus"), record.get("MlsStatus"))
            expected = getattr(mapped, "status", None)
        if expected is not None and row.status != expected:
            out_of_step.append(row.id)
        if row.status in unpublish_on:
            for post in await posts.list_some(db, row.id, None, 100):
                if post.status == PostStatus.MANUAL_REQUIRED:
                    for_a_person.append(post.id)
                elif post.status == "published" or platforms.exists(post.platform_post_id):
                    live_posts.append(post.id)
    return Consistency(out_of_step, live_posts, for_a_person)
