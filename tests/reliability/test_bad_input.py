"""Bad input (invariant 7): a corpus of invalid config files, and MLS answers of any shape.

Each invalid config exits 78 with a message naming the key (through the real CLI entry point);
no MLS answer, however broken, makes reading a page raise anything but its own clear error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.cli import cli
from daemon.mls.client import _answer_for
from daemon.mls.payload import BadPayload, parse_page
from daemon.models import StatusMapping
from daemon.sync.batch_plan import plan_batch

CORPUS = Path(__file__).parent / "bad_configs"
NAMED = {
    "01_unknown_section": "[synk]",
    "02_unknown_key": "[sync] intervall_seconds",
    "03_interval_text": "[sync] interval_seconds",
    "04_interval_too_small": "[sync] interval_seconds",
    "05_interval_too_big": "[sync] interval_seconds",
    "06_jitter_negative": "[sync] jitter_seconds",
    "07_unpublish_on_unknown": "[sync] unpublish_on.0",
    "08_unpublish_on_empty": "[sync] unpublish_on",
    "09_concurrency_zero": "[sync] max_concurrent_connections",
    "10_timeout_zero": "[mls] timeout_seconds",
    "11_attempts_text": "[mls] max_attempts",
    "12_status_map_bad_target": "'Closed' maps to a value that is not one of",
    "13_mls_status_map_bad": "'Sold - Funded' maps to a value that is not one of",
    "14_log_level": "[logging] level",
    "15_log_format": "[logging] format",
    "16_secret_in_config": "[mls] token",
    "17_graph_version": "[platforms] graph_version",
    "18_graph_url": "[platforms] graph_url",
    "19_linkedin_version": "[platforms] linkedin_version",
    "20_http_port": "[daemon] http_port",
    "21_sandbox_enabled_text": "[sandbox] enabled",
    "22_not_toml": "not valid TOML",
    "23_section_is_a_value": "[sync]: Input should be a valid dictionary",
    "24_busy_timeout": "[database] busy_timeout_ms",
}


def test_the_corpus_has_at_least_twenty_files_and_each_is_named() -> None:
    files = sorted(p.stem for p in CORPUS.glob("*.toml"))
    assert len(files) >= 20
    assert files == sorted(NAMED)


@pytest.mark.parametrize("name", sorted(NAMED))
def test_an_invalid_config_exits_78_naming_the_key(name: str) -> None:
    result = CliRunner().invoke(cli, ["check-config", "--config", str(CORPUS / f"{name}.toml")])
    assert result.exit_code == 78, result.output
    assert NAMED[name] in result.output


@pytest.mark.parametrize(
    ("name", "value"),
    [("03_interval_text", "often"), ("12_status_map_bad_target", "gone"), ("14_log_level", "loud")],
)
def test_a_config_error_never_repeats_the_value(name: str, value: str) -> None:
    """A value in the wrong place may be a secret: the error names the key, never the value."""
    result = CliRunner().invoke(cli, ["check-config", "--config", str(CORPUS / f"{name}.toml")])
    assert result.exit_code == 78
    assert NAMED[name] in result.output and value not in result.output


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.text(min_size=5000, max_size=6000),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = ["ListingKey", "StandardStatus", "MlsStatus", "ModificationTimestamp", "MlgCanView"]
RECORDS = st.dictionaries(
    st.sampled_from(FIELDS),
    JSON_VALUES
    | st.sampled_from(
        ["K1", "K2", "Active", "Closed", "Active Under Contract", "2026-01-01T00:00:00Z", True]
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000) | st.text(max_size=500).map(str.encode))
def test_any_bytes_give_a_page_or_a_clear_bad_payload(body: bytes) -> None:
    try:
        parse_page(body)
    except BadPayload as exc:
        message = str(exc)
    else:
        return
    assert message.startswith(("the answer", "@odata.nextLink"))


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(RECORDS | JSON_VALUES, max_size=8),
    next_link=st.none() | st.text(max_size=20) | st.integers(),
)
def test_any_records_are_sorted_into_good_hidden_or_errors_and_plans_never_fail(
    records: list[Any], next_link: Any
) -> None:
    body = json.dumps({"value": records, "@odata.nextLink": next_link}).encode()
    try:
        page = parse_page(body)
    except BadPayload:
        return
    wanted = ["K1", "K2", "K3"]
    answer, absent = _answer_for(wanted, [page])
    assert absent == []  # one page: nothing to ask again
    for key in wanted:  # every key asked for ends up in exactly one place
        places = [key in answer.records, key in answer.removed, key in answer.errors]
        assert places.count(True) == 1, (key, answer)
    if any(e.listing_key is None for e in page.errors):
        assert answer.removed.get("K3") is None  # never "removed" on a doubt
    plan = plan_batch(
        {f"L-{k}": None for k in wanted},
        [(f"L-{k}", rec) for k, rec in answer.records.items()],
        [(f"L-{k}", msg) for k, msg in answer.errors.items()],
        StatusMapping.build(),
    )
    assert len(plan.changes) <= len(answer.records)
