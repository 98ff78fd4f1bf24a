"""The delivery process lowers its CPU priority ([webhooks] niceness), and goes on at the
daemon's when a system-call filter refuses (the shipped unit allows setpriority; another
unit may not, and the process must not crash-loop over it)."""

from __future__ import annotations

import os

import pytest
from structlog.testing import capture_logs

from daemon.service import delivery_child


def test_a_refused_setpriority_leaves_deliveries_running_with_a_warning_that_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(which: int, who: int, priority: int) -> None:
        raise PermissionError(1, "Operation not permitted")  # seccomp's EPERM, as systemd gives

    monkeypatch.setattr(os, "setpriority", refuse)
    with capture_logs() as logs:
        delivery_child.lower_priority(10)
    [warning] = [e for e in logs if e["event"] == "webhook_process_priority_unchanged"]
    assert warning["log_level"] == "warning"
    assert "SystemCallFilter=setpriority" in warning["note"]
    assert "niceness = 0" in warning["note"]


def test_the_configured_niceness_is_set_not_added_and_never_below_the_daemons(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    current = {"value": 4}
    monkeypatch.setattr(os, "getpriority", lambda which, who: current["value"])
    monkeypatch.setattr(os, "setpriority", lambda which, who, p: current.update(value=p))
    delivery_child.lower_priority(10)
    assert current["value"] == 10
    current["value"] = 15
    delivery_child.lower_priority(10)
    assert current["value"] == 15
