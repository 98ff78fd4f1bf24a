"""Log lines never carry a secret, whatever code logged it."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from daemon import logs


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_fields_that_hold_secrets_are_redacted_in_json_logs() -> None:
    out = io.StringIO()
    logs.configure("info", "json", out)
    log = structlog.get_logger("test")
    log.info(
        "calling",
        access_token="EAAB-s3cret",
        client_secret="cs-s3cret",
        Authorization="Bearer s3cret",
        password="pw-s3cret",
        listing_id="L-1",
    )
    line = json.loads(out.getvalue())
    assert line["listing_id"] == "L-1"
    for field in ("access_token", "client_secret", "Authorization", "password"):
        assert line[field] == "<redacted>"
    assert "s3cret" not in out.getvalue()


def test_every_event_of_a_cycle_carries_the_run_id() -> None:
    out = io.StringIO()
    logs.configure("info", "json", out)
    with structlog.contextvars.bound_contextvars(run_id=42, connection_id="crmls"):
        structlog.get_logger("test").info("status_changed", listing_id="L-9")
    line = json.loads(out.getvalue())
    assert (line["run_id"], line["connection_id"], line["listing_id"]) == (42, "crmls", "L-9")


def test_below_the_level_nothing_is_written() -> None:
    out = io.StringIO()
    logs.configure("warning", "json", out)
    structlog.get_logger("test").info("chatty")
    assert out.getvalue() == ""
