"""The brief's requirements 5.1 to 5.5, each as a test against the sandbox MLS over HTTP."""

from __future__ import annotations

import pytest

from daemon.composition import Runtime
from daemon.sandbox.mls_server import SandboxMls
from daemon.store import listings
from tests.helpers import add_connection, status_of, track

pytestmark = pytest.mark.both_databases


async def test_5_1_a_status_change_in_the_mls_is_detected_by_the_next_cycle(
    runtime: Runtime, mls: tuple[SandboxMls, str]
) -> None:
    """Requirement 5.1: a change made between two cycles shows up in the very next cycle."""
    sandbox, url = mls
    sandbox.put("K1", "Active")
    await add_connection(runtime, url)
    await track(runtime, "mls-1", ["K1"], status="active")
    await runtime.engine.sync_all()
    sandbox.set_status("K1", "Pending")

    report = await runtime.engine.sync_all()

    assert report.run.status_changes == 1
    assert await status_of(runtime, "K1") == "pending"


async def test_5_2_listing_record_is_updated_when_the_mls_says_pending_or_sold(
    runtime: Runtime, mls: tuple[SandboxMls, str]
) -> None:
    """Requirement 5.2: pending and sold are written to the listing with the raw MLS values."""
    sandbox, url = mls
    sandbox.put("P1", "Active Under Contract", "Under Contract - Show")
    sandbox.put("S1", "Closed", "Sold")
    await add_connection(runtime, url)
    await track(runtime, "mls-1", ["P1", "S1"], status="active")

    await runtime.engine.sync_all()

    pending = await listings.get(runtime.db, "L-P1")
    sold = await listings.get(runtime.db, "L-S1")
    assert pending is not None and sold is not None
    assert (pending.status, pending.mls_standard_status, pending.mls_status) == (
        "pending",
        "Active Under Contract",
        "Under Contract - Show",
    )
    assert (sold.status, sold.mls_standard_status, sold.mls_status) == ("sold", "Closed", "Sold")
    assert sold.status_changed_at is not None


async def test_5_4_pending_back_to_active_is_logged_as_a_restoration(
    runtime: Runtime, mls: tuple[SandboxMls, str]
) -> None:
    """Requirement 5.4: pending -> active writes a `restored` audit event and makes the listing
    publishable again; nothing is republished by itself."""
    sandbox, url = mls
    sandbox.put("R1", "Pending")
    await add_connection(runtime, url)
    await track(runtime, "mls-1", ["R1"], status="pending")
    await runtime.engine.sync_all()
    sandbox.set_status("R1", "Active")

    await runtime.engine.sync_all()

    trail = await listings.history(runtime.db, "L-R1")
    assert [(c.from_status, c.to_status, c.event) for c in trail] == [
        ("pending", "active", "restored")
    ]
    assert await status_of(runtime, "R1") == "active"


async def test_5_5_the_mls_wins_a_conflict_and_the_change_is_audited(
    runtime: Runtime, mls: tuple[SandboxMls, str]
) -> None:
    """Requirement 5.5: a local status that disagrees with the MLS is overwritten without
    asking, and the audit row says from what, to what, and what the MLS sent."""
    sandbox, url = mls
    sandbox.put("C1", "Closed", "Sold")
    await add_connection(runtime, url)
    await track(runtime, "mls-1", ["C1"], status="active")

    report = await runtime.engine.sync_all()

    assert await status_of(runtime, "C1") == "sold"
    [change] = await listings.history(runtime.db, "L-C1")
    assert (change.from_status, change.to_status, change.event) == ("active", "sold", "changed")
    assert (change.mls_standard_status, change.mls_status) == ("Closed", "Sold")
    assert change.run_id == report.run.id


async def test_an_unchanged_listing_writes_no_audit_row(
    runtime: Runtime, mls: tuple[SandboxMls, str]
) -> None:
    sandbox, url = mls
    sandbox.put("U1", "Active")
    await add_connection(runtime, url)
    await track(runtime, "mls-1", ["U1"], status="active")

    first = await runtime.engine.sync_all()
    second = await runtime.engine.sync_all()

    assert (first.run.status_changes, second.run.status_changes) == (0, 0)
    assert await listings.history(runtime.db, "L-U1") == []
    assert second.run.listings_checked == 1
