"""Prometheus metrics, in a registry of their own (so tests and two daemons never mix).

Counters move when a run finishes; gauges of current state (listings and posts by status,
connections by state) are read from the database at each scrape.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from daemon.platforms.outcomes import AlreadyGone, AuthFailed, Deleted, NeedsPerson, RetryLater
from daemon.sync.engine import RunReport

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    def __init__(self) -> None:
        # The *_created series double every counter for no use here.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        self.registry = CollectorRegistry()
        r = self.registry
        self.cycles = Counter("mls_sync_cycles", "Sync cycles, by outcome", ["outcome"], registry=r)
        self.listings_checked = Counter(
            "mls_sync_listings_checked", "Listings whose MLS status was read", registry=r
        )
        self.status_changes = Counter(
            "mls_sync_status_changes",
            "Status changes applied",
            ["from_status", "to_status"],
            registry=r,
        )
        self.posts_unpublished = Counter(
            "mls_sync_posts_unpublished",
            "Posts taken down (or found already gone)",
            ["platform", "reason"],
            registry=r,
        )
        self.posts_failed = Counter(
            "mls_sync_posts_failed",
            "Delete attempts that failed",
            ["platform", "reason"],
            registry=r,
        )
        self.errors = Counter(
            "mls_sync_errors", "Errors recorded in runs, by scope", ["scope"], registry=r
        )
        self.mls_requests = Counter(
            "mls_sync_mls_requests", "Requests sent to MLS servers", registry=r
        )
        self.duration = Histogram(
            "mls_sync_cycle_duration_seconds",
            "Wall time of a cycle",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            "mls_sync_last_success_timestamp_seconds",
            "Unix time of the last cycle that completed without errors",
            registry=r,
        )
        self.last_cycle = Gauge(
            "mls_sync_last_cycle_timestamp_seconds",
            "Unix time of the last completed cycle",
            registry=r,
        )
        self.cycle_running = Gauge("mls_sync_cycle_running", "1 while a cycle runs", registry=r)
        self.connections = Gauge(
            "mls_sync_connections", "MLS connections, by state", ["state"], registry=r
        )
        self.listings = Gauge(
            "mls_sync_listings", "Tracked listings, by status", ["status"], registry=r
        )
        self.posts = Gauge("mls_sync_posts", "Social posts, by status", ["status"], registry=r)

    def record_run(
        self,
        report: RunReport,
        seconds: float,
        transitions: dict[tuple[str, str], int],
        errors_by_scope: dict[str, int],
        finished_at: float,
    ) -> None:
        run = report.run
        self.cycles.labels(run.outcome).inc()
        self.listings_checked.inc(run.listings_checked)
        self.mls_requests.inc(run.mls_requests)
        self.duration.observe(seconds)
        for (old, new), n in transitions.items():
            self.status_changes.labels(old, new).inc(n)
        for scope, n in errors_by_scope.items():
            self.errors.labels(scope).inc(n)
        for result in report.posts:
            outcome = result.outcome
            if isinstance(outcome, Deleted | AlreadyGone):
                reason = "deleted" if isinstance(outcome, Deleted) else "already_gone"
                self.posts_unpublished.labels(result.platform, reason).inc()
            elif isinstance(outcome, RetryLater | AuthFailed | NeedsPerson):
                reason = {
                    RetryLater: "retry_later",
                    AuthFailed: "auth",
                    NeedsPerson: "needs_person",
                }[type(outcome)]
                self.posts_failed.labels(result.platform, reason).inc()
        self.last_cycle.set(finished_at)
        if run.outcome == "ok":
            self.last_success.set(finished_at)

    def set_state(
        self, connections: dict[str, int], listings: dict[str, int], posts: dict[str, int]
    ) -> None:
        for gauge, values, known in (
            (self.connections, connections, ("active", "paused", "needs_reauth")),
            (
                self.listings,
                listings,
                ("coming_soon", "active", "pending", "sold", "off_market", "unknown"),
            ),
            (self.posts, posts, ("published", "unpublished", "manual_required")),
        ):
            for label in {*known, *values}:
                gauge.labels(label).set(values.get(label, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
