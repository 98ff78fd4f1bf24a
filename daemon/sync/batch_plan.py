"""From one MLS answer to the writes for one batch of listings. Pure: no I/O, no clock.

The cycle reads the batch's current statuses, calls `plan_batch`, and writes the plan, all in
one transaction: the new status and its audit row always commit together (invariant 1). The
plan's types are in `daemon/models.py`, where the store, which writes them, reads them too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from daemon.models import (
    BatchPlan,
    Change,
    Checked,
    LocalStatus,
    MlsRecord,
    Observation,
    Problem,
    StatusMapping,
    checked_of,
    decide,
)


def plan_batch(
    current: Mapping[str, LocalStatus | None],
    observations: Iterable[tuple[str, Observation]],
    failures: Iterable[tuple[str, str]],
    mapping: StatusMapping,
    alone: Mapping[str, bool] | None = None,
) -> BatchPlan:
    """`current`: listing id -> its status now (listings that vanished are left out).
    `observations`: (listing id, what the MLS said). `failures`: (listing id, why nothing
    usable came back for it); `alone`: of them, whether a query of the key alone failed
    (`Problem.alone`), where the failure says."""
    plan = BatchPlan()
    for listing_id, seen in observations:
        if listing_id not in current:
            continue  # removed locally while we were asking: nothing to update
        decision = decide(current[listing_id], seen, mapping)
        if isinstance(seen, MlsRecord):
            checked = (
                listing_id,
                seen.standard_status,
                seen.mls_status,
                seen.modification_timestamp,
            )
            plan.checked.append(checked_of(checked))
        else:
            plan.checked.append(Checked(listing_id, None, None, None))
        if decision.error is not None:
            plan.problems.append(Problem(listing_id, decision.error, decision.warning))
        elif decision.new_status is not None and decision.event is not None:
            raw = seen if isinstance(seen, MlsRecord) else None
            plan.changes.append(
                Change(
                    listing_id=listing_id,
                    from_status=current[listing_id],
                    to_status=decision.new_status,
                    standard_status=raw.standard_status if raw else None,
                    mls_status=raw.mls_status if raw else None,
                    event=decision.event,
                )
            )
    for listing_id, message in failures:
        if listing_id in current:
            plan.problems.append(
                Problem(listing_id, message, alone=alone.get(listing_id) if alone else None)
            )
    return plan
