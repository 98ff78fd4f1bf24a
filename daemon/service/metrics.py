"""Prometheus metrics, in a registry of their own (so tests and two daemons never mix), with
the process's own (CPU, memory, open files, garbage collector) and the build.

Errors, listings checked and MLS requests follow the run history while a cycle runs: each
scrape adds what the running cycle has recorded since the last one, and its end adds the
rest, so a failed batch shows at the next scrape and nothing is counted twice. The other
counters move when a cycle ends. Gauges of current state (listings and posts by status,
connections by state) are read from the database at each scrape; the gauges the alerts read
(systemd/mls-sync.rules.yml) come from the run history, at start and after each cycle, so a
restart does not reset them. Series labelled by connection are as many as the connections: a
removed connection's go away after the next cycle.
"""

from __future__ import annotations

import platform

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from daemon.enums import ConnectionState, PostStatus
from daemon.models import LocalStatus
from daemon.platforms.outcomes import AlreadyGone, AuthFailed, Deleted, NeedsPerson, RetryLater
from daemon.store import runs
from daemon.store.cycle_health import CycleHealth
from daemon.store.runs import Tally
from daemon.sync.engine import PollOutcome, RunReport

WEBHOOK_RESULTS = ("delivered", "retry", "given_up")
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    def __init__(self, version: str) -> None:
        # The *_created series double every counter for no use here.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        self.registry = CollectorRegistry()
        self.cycle_health: CycleHealth | None = None  # as of the last set_cycle_health
        r = self.registry
        # process_*, python_info and python_gc_*, as the default registry (not served) has them.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Info("mls_sync_build", "The running release", registry=r).info(
            {"version": version, "python": platform.python_version()}
        )
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
        # Every label at 0 from the start: increase() takes a series' first sample as its
        # baseline, so a series created at its first error (after each restart) loses it.
        for outcome in runs.CYCLE_OUTCOMES:
            self.cycles.labels(outcome)
        for scope in runs.ERROR_SCOPES:
            self.errors.labels(scope)
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
            "Unix time the last cycle ended that read the MLS (one that synced a connection it "
            "could read: errors of single listings or posts count in mls_sync_errors_total, "
            "not here); before any did, when the first cycle started. Read from the database: "
            "every daemon on it reports the same",
            registry=r,
        )
        self.last_cycle = Gauge(
            "mls_sync_last_cycle_timestamp_seconds",
            "Unix time the last cycle ended, whatever its outcome (0 before the first)",
            registry=r,
        )
        self.cycle_running = Gauge("mls_sync_cycle_running", "1 while a cycle runs", registry=r)
        self.cycle_started = Gauge(
            "mls_sync_cycle_started_timestamp_seconds",
            "Unix time the running cycle started; 0 when none runs",
            registry=r,
        )
        self.interval = Gauge(
            "mls_sync_interval_seconds",
            "How often a cycle is due (the setting in effect)",
            registry=r,
        )
        self.connection_failing = Gauge(
            "mls_sync_connection_failing",
            "1 when the last sync of this active connection could not read its MLS (a "
            "connection or batch error: unreachable, refused, throttled), by whichever daemon; "
            "0 otherwise",
            ["connection"],
            registry=r,
        )
        self.connection_errors = Counter(
            "mls_sync_connection_errors",
            "Errors recorded against this connection (connection, batch and listing errors)",
            ["connection"],
            registry=r,
        )
        self.connection_last_success = Gauge(
            "mls_sync_connection_last_success_timestamp_seconds",
            "Unix time a sync of this connection last ended that read its MLS without a "
            "connection or batch error; 0 if none has. Read from the database",
            ["connection"],
            registry=r,
        )
        self.connections = Gauge(
            "mls_sync_connections", "MLS connections, by state", ["state"], registry=r
        )
        self.listings = Gauge(
            "mls_sync_listings", "Tracked listings, by status", ["status"], registry=r
        )
        self.posts = Gauge("mls_sync_posts", "Social posts, by status", ["status"], registry=r)
        self.change_log_polls = Counter(
            "mls_sync_change_log_polls",
            "Reads of events-mode connections' change logs between cycles, by outcome (quiet: "
            "nothing new; synced: a run applied what was new)",
            ["outcome"],
            registry=r,
        )
        self.mail_sent = Counter(
            "mls_sync_mail_sent", "E-mail notifications the SMTP server accepted", registry=r
        )
        self.mail_failed = Counter(
            "mls_sync_mail_failed",
            "E-mail notifications given up after [email] give_up_after_hours",
            registry=r,
        )
        self.mail_outbox = Gauge(
            "mls_sync_mail_outbox_pending",
            "E-mail notifications not sent yet (held for their run's end, or pending)",
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "mls_sync_webhook_deliveries",
            "Webhook delivery attempts, by result: delivered (2xx), retry (failed, tried "
            "again later), given_up (the endpoint was disabled)",
            ["result"],
            registry=r,
        )
        for result in WEBHOOK_RESULTS:
            self.webhook_deliveries.labels(result)
        self.webhook_oldest_undelivered = Gauge(
            "mls_sync_webhook_oldest_undelivered_seconds",
            "Per enabled endpoint, the age of its oldest event not yet delivered (0: none)",
            ["endpoint"],
            registry=r,
        )
        self._webhook_endpoints: set[str] = set()
        self._counted: dict[int, Tally] = {}  # run id -> what the counters hold of it
        self._ended_through = 0  # cycles up to this run id are counted in full
        self._connection_ids: set[str] = set()  # those with series

    def follow(self, running: Tally | None) -> None:
        """At each scrape: what the running cycle has recorded so far."""
        if running is not None and running.run_id > self._ended_through:
            self._count(running)

    def record_run(
        self,
        report: RunReport,
        seconds: float,
        transitions: dict[tuple[str, str], int],
        tally: Tally,
    ) -> None:
        """A cycle ended: `tally` is all it recorded (what scrapes counted of it is not
        counted again)."""
        run = report.run
        self._count(tally)
        self._ended_through = max(self._ended_through, run.id)
        self._counted = {i: t for i, t in self._counted.items() if i > self._ended_through}
        self.cycles.labels(run.outcome).inc()
        self.duration.observe(seconds)
        self._count_outcomes(report, transitions)

    def record_other_run(
        self, report: RunReport, transitions: dict[tuple[str, str], int], tally: Tally
    ) -> None:
        """A run that is no cycle ended (a read of a change log between cycles, an apply of
        pushed events): what it did counts as a cycle's does (scrapes follow cycles only, so
        none of it was counted yet); it is no cycle in `mls_sync_cycles`."""
        self._add(tally_increase(tally, None))
        self._count_outcomes(report, transitions)

    def _count_outcomes(self, report: RunReport, transitions: dict[tuple[str, str], int]) -> None:
        for (old, new), n in transitions.items():
            self.status_changes.labels(old, new).inc(n)
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

    def set_cycle_health(self, health: CycleHealth, now: float) -> None:
        """The gauges the alerts read, from the run history: at start and after each cycle.
        Before any cycle read the MLS, "last success" is when the first one started (or now,
        with none yet): a new install is not failing before its first cycle could end."""
        self.cycle_health = health  # the status page shows the same "last success"
        self.last_cycle.set(health.last_ended_at or 0)
        self.last_success.set(health.last_read_the_mls_at or health.first_started_at or now)
        self.connection_failing.clear()  # a removed connection's series goes away
        self.connection_last_success.clear()
        for connection_id, failing in health.connection_failing.items():
            self.connection_failing.labels(connection_id).set(int(failing))
            read_at = health.connection_last_read_at.get(connection_id)
            self.connection_last_success.labels(connection_id).set(read_at or 0)
            self.connection_errors.labels(connection_id)  # at 0 from the start, for increase()
        for gone in self._connection_ids - health.connection_failing.keys():
            self.connection_errors.remove(gone)
        self._connection_ids = set(health.connection_failing)

    def _count(self, tally: Tally) -> None:
        added = tally_increase(tally, self._counted.get(tally.run_id))
        self._counted[tally.run_id] = tally_sum(self._counted.get(tally.run_id), added)
        self._add(added)

    def _add(self, added: Tally) -> None:
        self.listings_checked.inc(added.checked)
        self.mls_requests.inc(added.requests)
        for (scope, connection_id), n in added.errors.items():
            self.errors.labels(scope).inc(n)
            if connection_id is not None:
                self.connection_errors.labels(connection_id).inc(n)
                self._connection_ids.add(connection_id)

    def set_live(self, cycle_started_at: float | None, interval: float) -> None:
        """What the coordinator is doing now, at each scrape."""
        self.cycle_running.set(0 if cycle_started_at is None else 1)
        self.cycle_started.set(cycle_started_at or 0)
        self.interval.set(interval)

    def set_state(
        self, connections: dict[str, int], listings: dict[str, int], posts: dict[str, int]
    ) -> None:
        for gauge, values, known in (
            (self.connections, connections, tuple(ConnectionState)),
            (self.listings, listings, (*LocalStatus, "unknown")),
            (self.posts, posts, tuple(PostStatus)),
        ):
            for label in {*known, *values}:
                gauge.labels(label).set(values.get(label, 0))

    # The mail worker's hooks (daemon/mail/worker.py).
    def change_log_polled(self, result: PollOutcome) -> None:
        self.change_log_polls.labels(result.outcome).inc()

    def mail_sent_one(self) -> None:
        self.mail_sent.inc()

    def mail_failed_one(self) -> None:
        self.mail_failed.inc()

    def mail_waiting(self, count: int) -> None:
        self.mail_outbox.set(count)

    def delivery_results(self, result: str, count: int) -> None:
        self.webhook_deliveries.labels(result).inc(count)

    def set_oldest_undelivered(self, ages: dict[int, float]) -> None:
        """A removed or disabled endpoint's series goes away."""
        now = {str(k): v for k, v in ages.items()}
        for gone in self._webhook_endpoints - now.keys():
            self.webhook_oldest_undelivered.remove(gone)
        for endpoint, age in now.items():
            self.webhook_oldest_undelivered.labels(endpoint).set(age)
        self._webhook_endpoints = set(now)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def tally_increase(now: Tally, counted: Tally | None) -> Tally:
    """What `now` adds to what was counted of the same run. Never negative: a snapshot read
    before the last count may be served after it."""
    if counted is None:
        return now
    errors = {
        key: n - counted.errors.get(key, 0)
        for key, n in now.errors.items()
        if n > counted.errors.get(key, 0)
    }
    return Tally(
        now.run_id,
        max(0, now.checked - counted.checked),
        max(0, now.requests - counted.requests),
        errors,
    )


def tally_sum(counted: Tally | None, added: Tally) -> Tally:
    if counted is None:
        return added
    errors = dict(counted.errors)
    for key, n in added.errors.items():
        errors[key] = errors.get(key, 0) + n
    return Tally(
        added.run_id, counted.checked + added.checked, counted.requests + added.requests, errors
    )
