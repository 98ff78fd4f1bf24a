"""structlog set-up: JSON lines for journald and machines, readable lines on a terminal.

Secrets never reach a log line: the redaction processor masks any field whose name says it
holds one, whatever code logged it.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

SECRET_FIELD_MARKERS = ("secret", "token", "password", "authorization", "api_key", "credential")
REDACTED = "<redacted>"


def redact_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event):
        if _names_a_secret(key):
            event[key] = REDACTED
    return event


# Kept per field name: the daemon logs the same few dozen names over and over, and looking for
# each marker in each name was about a quarter of what a log line cost (docs/benchmarks.md).
@functools.lru_cache(maxsize=1024)
def _names_a_secret(key: str) -> bool:
    lowered = key.lower()
    return any(marker in lowered for marker in SECRET_FIELD_MARKERS)


# The audit trail: written whatever the configured level (a one-off command logs only
# warnings; its writes are still audited). Set up by `configure`.
_audit: Any = structlog.get_logger("mls_sync.audit")


def audit(**fields: Any) -> None:
    """One audit line (`event: audit`) at info, whatever the level in effect."""
    _audit.info("audit", **fields)


# Libraries that log through the standard library: their lines are passed on as ours (JSON
# for journald, like every other line), not printed raw by Python's last-resort handler.
LIBRARY_LOGGERS = ("psycopg",)  # the PostgreSQL pool: a connection lost, retried


class _AsOurs(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        structlog.get_logger(record.name).log(
            record.levelno, "library_said", library=record.name, message=record.getMessage()
        )


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers = [_AsOurs(logging.WARNING)]
        library.propagate = False
    global _audit
    _audit = structlog.wrap_logger(
        structlog.PrintLogger(stream),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
