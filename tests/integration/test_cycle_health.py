"""What the alerting gauges are built from: the run history, read as a restarted daemon reads
it (daemon/store/cycle_health.py)."""

from __future__ import annotations

import pytest

from daemon.composition import Runtime
from daemon.enums import ConnectionState
from daemon.sandbox.faults import Fault
from daemon.store import connections, cycle_health
from daemon.store.records import RunRow
from daemon.timestamps import iso, parse_iso, utcnow
from tests.helpers import Mls, add_connection, add_incremental, track

pytestmark = pytest.mark.both_databases


async def test_a_failed_cycle_keeps_the_last_success_and_names_the_failing_connection(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    sandbox.put("A", "Active")
    sandbox.put("B", "Active")
    await add_connection(runtime, url, "good")
    await add_connection(runtime, url, "locked-out", secret="a-token-the-mls-refuses")
    await track(runtime, "good", ["A"])
    await track(runtime, "locked-out", ["B"])
    alone = (await runtime.engine.sync_connection("good")).run  # a read of the MLS too
    assert (await cycle_health.latest(runtime.db)).last_read_the_mls_at is not None
    assert _during(alone, (await cycle_health.latest(runtime.db)).last_read_the_mls_at)

    partial = (await runtime.engine.sync_all()).run  # locked-out: 401, now needs_reauth
    after_partial = await cycle_health.latest(runtime.db)
    sandbox.faults.add(Fault("status", status=401, times=1000))
    failed = (await runtime.engine.sync_all()).run  # good: 401 too; locked-out is skipped
    after_failed = await cycle_health.latest(runtime.db)

    assert (partial.outcome, failed.outcome) == ("partial", "failed")
    # Refused twice, locked-out waits for credentials from its sync on: its alert reads
    # mls_sync_connections{state="needs_reauth"}, not this one.
    assert after_partial.connection_failing == {"good": False, "locked-out": False}
    assert after_failed.last_read_the_mls_at == _unix(partial.finished_at)
    assert after_failed.last_ended_at == _unix(failed.finished_at)
    # Refused twice in its turn, good waits for credentials too.
    assert after_failed.connection_failing == {"good": False, "locked-out": False}
    read_at = after_failed.connection_last_read_at
    assert read_at["locked-out"] is None  # refused from the start
    assert _during(partial, read_at["good"])


async def test_a_cycle_reads_the_mls_while_one_connection_is_read_even_with_no_change(
    runtime: Runtime, mls: Mls
) -> None:
    """An incremental connection that found no change checked 0 listings, yet read its MLS:
    the cycle is a success though the other connection failed; once both fail, it is not."""
    sandbox, url = mls
    sandbox.put("A", "Active")
    sandbox.put("B", "Active")
    await add_incremental(runtime, url, ["A"])
    await add_connection(runtime, url, "mls-2")
    await track(runtime, "mls-2", ["B"])
    assert (await runtime.engine.sync_all()).run.outcome == "ok"  # mls-1's full pass

    sandbox.faults.add(Fault("status", status=503, times=1000, matching="'B'"))  # mls-2's query
    other_failed = (await runtime.engine.sync_all()).run
    after_other_failed = await cycle_health.latest(runtime.db)
    sandbox.faults.add(Fault("status", status=503, times=1000))  # mls-1's too
    both_failed = (await runtime.engine.sync_all()).run
    after_both_failed = await cycle_health.latest(runtime.db)

    assert (other_failed.outcome, other_failed.listings_checked) == ("partial", 0)
    assert after_other_failed.last_read_the_mls_at == _unix(other_failed.finished_at)
    assert after_other_failed.connection_failing == {"mls-1": False, "mls-2": True}
    # `partial`, not `failed`: a failed batch does not stop mls-2, yet it read nothing.
    assert (both_failed.outcome, both_failed.listings_checked) == ("partial", 0)
    assert after_both_failed.last_read_the_mls_at == _unix(other_failed.finished_at)
    assert after_both_failed.connection_failing == {"mls-1": True, "mls-2": True}


def _during(run: RunRow, at: float | None) -> bool:
    """Whether `at` (a connection's sync's end) falls within the run."""
    return at is not None and _unix(run.started_at) <= at <= _unix(run.finished_at)


def _unix(text: str | None) -> float:
    assert text is not None
    return parse_iso(text).timestamp()


async def test_each_connection_keeps_the_end_of_its_last_sync_that_read_its_mls(
    runtime: Runtime, mls: Mls
) -> None:
    """Per connection: a failing batch, a pause or a wait for credentials leave the time of
    its last read where it was; a sync of that connection alone moves it."""
    sandbox, url = mls
    sandbox.put("A", "Active")
    sandbox.put("B", "Active")
    await add_connection(runtime, url, "steady")
    await add_connection(runtime, url, "paused")
    await track(runtime, "steady", ["A"])
    await track(runtime, "paused", ["B"])
    before_any = await cycle_health.latest(runtime.db)
    both_read = (await runtime.engine.sync_all()).run
    await connections.set_state(runtime.db, "paused", ConnectionState.PAUSED, None, iso(utcnow()))
    sandbox.faults.add(Fault("status", status=503, times=1000, matching="'A'"))
    steady_failed = (await runtime.engine.sync_all()).run
    after_failure = await cycle_health.latest(runtime.db)
    sandbox.faults.clear()
    steady_alone = (await runtime.engine.sync_connection("steady")).run
    after_alone = await cycle_health.latest(runtime.db)

    assert before_any.connection_last_read_at == {"paused": None, "steady": None}
    first = after_failure.connection_last_read_at
    assert _during(both_read, first["paused"]) and _during(both_read, first["steady"])
    assert steady_failed.outcome == "partial"
    assert after_failure.connection_failing == {"paused": False, "steady": True}
    # paused: not synced since, its time stands still; steady: its batch failed, not read.
    assert after_failure.connection_last_read_at == first
    assert after_alone.connection_last_read_at["paused"] == first["paused"]
    assert _during(steady_alone, after_alone.connection_last_read_at["steady"])
    assert after_alone.connection_failing == {"paused": False, "steady": False}
