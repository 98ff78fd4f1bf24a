"""The line systemd shows for the daemon (`systemctl status`: "Status:") after each cycle."""

from __future__ import annotations

from daemon.store.records import RunRow


def cycle_status(run: RunRow) -> str:
    """What the last cycle did, and where its errors are listed when it met some."""
    ended = (run.finished_at or run.started_at)[:19] + "Z"  # to the second
    line = (
        f"last cycle {run.outcome} (run {run.id}, ended {ended}): "
        f"listings checked {run.listings_checked}, status changes {run.status_changes}, "
        f"posts taken down {run.posts_unpublished}, errors {run.errors}"
    )
    if run.errors:
        line += f" (mls-sync history --run {run.id})"
    return line
