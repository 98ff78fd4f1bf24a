"""How work that raised is logged, written once: the database away or locked past the busy
timeout (`outage_in`) is no bug, so one warning with the driver's reason; anything else is a
bug, logged with its traceback (docs/postgresql.md, "While the server is away")."""

from __future__ import annotations

from typing import Any, Protocol

from daemon.store.errors import outage_in


class Log(Protocol):
    def warning(self, event: str, **fields: Any) -> Any: ...

    def exception(self, event: str, **fields: Any) -> Any: ...


def log_failure(log: Log, exc: BaseException, crashed: str, outage: str, **fields: Any) -> bool:
    """Logs `exc` as `outage` (a warning) or `crashed` (with its traceback: call this inside
    the `except` block that caught it). True when it was an outage."""
    if (database := outage_in(exc)) is not None:
        log.warning(outage, error=str(database), **fields)
        return True
    log.exception(crashed, **fields)
    return False
