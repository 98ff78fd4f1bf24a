"""What the HTTP server reads and drives: one object, built by the daemon at start."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from daemon.composition import Environment, Runtime
from daemon.config import Settings
from daemon.credentials import Secret
from daemon.service.board import StatusBoard
from daemon.service.change_log_polls import ChangeLogPolls
from daemon.service.coordinator import Coordinator
from daemon.service.event_watch import EventWatch
from daemon.service.metrics import Metrics
from daemon.service.scheduler import Scheduler
from daemon.service.user_syncs import UserSyncs


@dataclass
class ServiceState:
    settings: Settings
    runtime: Runtime
    coordinator: Coordinator
    scheduler: Scheduler
    metrics: Metrics
    board: StatusBoard
    api_token: Secret | None
    sandbox: Environment | None  # the embedded sandbox around the runtime, if enabled
    version: str
    event_watch: EventWatch
    user_syncs: UserSyncs
    change_log_polls: ChangeLogPolls
    started_monotonic: float = field(default_factory=time.monotonic)
    # Polled answers, reused briefly (service/health.py): path -> (when, snapshot, answer).
    recent_answers: dict[str, tuple[float, object, tuple[int, str, bytes]]] = field(
        default_factory=dict
    )
    shutting_down: bool = False
