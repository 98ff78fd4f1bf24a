"""What the alerting gauges are built from: the run history, read as a restarted daemon reads
it (daemon/store/cycle_health.py)."""

from __future__ import annotations

from daemon.sandbox.faults import Fault
from daemon.store import cycle_health
from daemon.sync.runtime import Runtime
from daemon.timestamps import parse_iso
from tests.helpers import Mls, add_connection, add_incremental, track


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
    await runtime.engine.sync_connection("good")  # not a cycle: it does not count

    assert (await cycle_health.latest(runtime.db)).last_read_the_mls_at is None

    partial = (await runtime.engine.sync_all()).run  # locked-out: 401, now needs_reauth
    after_partial = await cycle_health.latest(runtime.db)
    sandbox.faults.add(Fault("status", status=401, times=1000))
    failed = (await runtime.engine.sync_all()).run  # good: 401 too; locked-out is skipped
    after_failed = await cycle_health.latest(runtime.db)

    assert (partial.outcome, failed.outcome) == ("partial", "failed")
    assert after_partial.connection_failing == {"good": False, "locked-out": True}
    assert after_failed.last_read_the_mls_at == _unix(partial.finished_at)
    assert after_failed.last_ended_at == _unix(failed.finished_at)
    # A connection waiting for credentials is not synced, so not failing in a cycle: its
    # alert reads mls_sync_connections{state="needs_reauth"}.
    assert after_failed.connection_failing == {"good": True, "locked-out": False}


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


def _unix(text: str | None) -> float:
    assert text is not None
    return parse_iso(text).timestamp()
