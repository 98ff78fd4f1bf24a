"""config.toml and MLS_SYNC_* variables: refused clearly, or turned into typed settings."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from daemon.config import ConfigError, Settings, find_config, load_settings
from daemon.models import LocalStatus
from tests.helpers import undocumented_keys
from tests.paths import REPO


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_settings(path, env or {})


def test_the_shipped_config_is_valid_and_runs_the_sandbox() -> None:
    settings = load_settings(REPO / "config.toml", {})
    assert settings.sandbox.enabled is True
    assert settings.sync.interval_seconds == 900
    assert settings.database.path == REPO / "state" / "mls-sync.db"


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    settings = _load(tmp_path, "")
    assert settings.sync.unpublish_on == (LocalStatus.SOLD,)
    assert settings.mls.breaker_after_429s == 3


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[sync]\nintervall = 5\n", ["[sync] intervall", "unknown key", "interval_seconds"]),
        (
            "[synk]\n",
            [
                "[synk]",
                "unknown key",
                "allowed here: check_intervals, daemon, database, email, events, logging, mls, "
                "platforms, push, sandbox, sync",
            ],
        ),
        ("[sync]\ninterval_seconds = 'often'\n", ["[sync] interval_seconds: ", "integer"]),
        (
            "[sync]\ninterval_seconds = 5\n",
            ["[sync] interval_seconds: ", "greater than or equal to 10"],
        ),
        ("[sync]\nunpublish_on = ['gone']\n", ["unpublish_on.0: ", "'sold'"]),
        ("[logging]\nlevel = 'loud'\n", ["[logging] level: ", "'debug', 'info'"]),
        (
            "[mls.status_map]\nClosed = 'gone'\n",
            ["'Closed' maps to a value that is not one of", "off_market"],
        ),
        ("[sync\n", ["not valid TOML"]),
        ("[mls]\ntoken = 'abc'\n", ["secrets are not read from config.toml", "MLS_SYNC_TOKEN"]),
    ],
)
def test_bad_config_names_the_key_and_what_is_allowed(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "line",
    [
        "graph_version = 'v\uff12\uff15.\uff10'",
        "linkedin_version = '\u0662\u0660\u0662\u0665\u0661\u0660'",
    ],
)
def test_a_platform_api_version_in_other_digits_is_refused(tmp_path: Path, line: str) -> None:
    """The version goes into every platform URL: ASCII digits only, matched as a whole."""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"[platforms]\n{line}\n")
    assert f"[platforms] {line.split(' ')[0]}" in str(caught.value)


def test_environment_variables_override_the_file_with_their_types(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        "[sync]\ninterval_seconds = 900\n",
        {
            "MLS_SYNC_SYNC__INTERVAL_SECONDS": "60",
            "MLS_SYNC_SYNC__UNPUBLISH_ON": '["sold", "off_market"]',
            "MLS_SYNC_SANDBOX__ENABLED": "false",
            "MLS_SYNC_DATABASE__PATH": "/var/lib/mls-sync/x.db",
            "MLS_SYNC_SECRET_KEY": "not a setting, ignored here",
        },
    )
    assert settings.sync.interval_seconds == 60
    assert settings.sync.unpublish_on == (LocalStatus.SOLD, LocalStatus.OFF_MARKET)
    assert settings.sandbox.enabled is False
    assert settings.database.path == Path("/var/lib/mls-sync/x.db")


def test_a_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="environment variable MLS_SYNC_SYNC__INTERVAL_SECONDS"):
        _load(tmp_path, "", {"MLS_SYNC_SYNC__INTERVAL_SECONDS": "soon"})
    with pytest.raises(ConfigError, match="unknown key"):
        _load(tmp_path, "", {"MLS_SYNC_SYNC__NOPE": "1"})


def test_a_missing_file_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file; pass --config PATH"):
        load_settings(tmp_path / "absent.toml", {})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a = " + "[" * 5000, "nested too deeply"),
        ('[database]\npath = "state\\u0000.db"\n', "must not contain a NUL character"),
        ("[sync]\ninterval_seconds = " + "9" * 5000 + "\n", "a number too long to read"),
    ],
)
def test_a_file_that_cannot_be_used_is_a_config_error_never_a_crash(
    tmp_path: Path, text: str, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        _load(tmp_path, text)


def test_an_environment_value_nested_too_deeply_is_a_config_error_never_a_crash(
    tmp_path: Path,
) -> None:
    """MLS_SYNC_SYNC__JITTER_SECONDS='[[[[...' names the variable instead of a traceback."""
    with pytest.raises(ConfigError, match="MLS_SYNC_SYNC__JITTER_SECONDS") as caught:
        _load(tmp_path, "", {"MLS_SYNC_SYNC__JITTER_SECONDS": "[" * 5000})
    assert "[[[" not in str(caught.value)


def test_a_bad_status_map_target_is_named_by_its_key_never_its_value(tmp_path: Path) -> None:
    """A value pasted under [mls.status_map] by mistake is not printed back."""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, "[mls.status_map]\nClosed = 'hunter2-secret'\n")
    assert "'Closed'" in str(caught.value) and "hunter2" not in str(caught.value)


HERE = Path("/srv/here")
LOCAL = HERE / "config.toml"
SYSTEM = Path("/etc/mls-sync/config.toml")


@pytest.mark.parametrize(
    ("given", "variable", "existing", "found"),
    [
        # --config wins over everything, even when the file is absent (the error names it).
        (Path("mine.toml"), "env.toml", {LOCAL, SYSTEM}, HERE / "mine.toml"),
        (Path("/abs/mine.toml"), None, set(), Path("/abs/mine.toml")),
        # then MLS_SYNC_CONFIG, relative to the working directory, also when absent
        (None, "env.toml", {LOCAL, SYSTEM}, HERE / "env.toml"),
        (None, "/opt/env.toml", set(), Path("/opt/env.toml")),
        # then ./config.toml, then /etc/mls-sync/config.toml, whichever exists first
        (None, None, {LOCAL, SYSTEM}, LOCAL),
        (None, "", {LOCAL, SYSTEM}, LOCAL),  # an empty variable counts as unset
        (None, None, {SYSTEM}, SYSTEM),
        (None, None, set(), None),
    ],
)
def test_the_config_is_found_in_the_order_operators_expect(
    given: Path | None, variable: str | None, existing: set[Path], found: Path | None
) -> None:
    environ = {} if variable is None else {"MLS_SYNC_CONFIG": variable}
    assert find_config(given, environ, HERE, existing.__contains__) == found


def test_without_a_config_file_the_error_names_every_place_looked_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    if SYSTEM.exists():
        pytest.skip(f"{SYSTEM} exists on this machine")
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {})
    assert str(caught.value) == (
        f"no config file: MLS_SYNC_CONFIG is not set, and neither {tmp_path / 'config.toml'} "
        f"nor {SYSTEM} exists; pass --config PATH, set MLS_SYNC_CONFIG, or copy the shipped "
        "config.toml (systemd/config.toml for production) to one of them"
    )


def test_mls_sync_config_names_the_file_when_no_path_is_given(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.toml").write_text("[sync]\ninterval_seconds = 60\n")
    environ = {"MLS_SYNC_CONFIG": str(tmp_path / "elsewhere.toml")}
    assert load_settings(None, environ).sync.interval_seconds == 60


def test_the_shipped_config_shows_and_documents_every_section_and_key() -> None:
    """A new setting fails here until config.toml shows it with a comment saying what it is."""
    text = (REPO / "config.toml").read_text()
    shown = tomllib.loads(text)
    for section, field in Settings.model_fields.items():
        assert section in shown, f"[{section}] is missing from config.toml"
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        missing = sorted(set(model.model_fields) - set(shown[section]))
        assert not missing, f"[{section}] {', '.join(missing)} missing from config.toml"
    assert undocumented_keys(text) == []


def test_the_cycle_runs_as_often_as_the_fastest_check_tier_when_that_is_sooner() -> None:
    shipped = Settings()
    assert shipped.cycle_seconds() == 900
    faster = Settings.model_validate({"check_intervals": {"pending_seconds": 300}})
    assert faster.cycle_seconds() == 300
    off = Settings.model_validate({"check_intervals": {"enabled": False, "pending_seconds": 60}})
    assert off.cycle_seconds() == 900


def test_the_sandbox_compresses_the_tiers_onto_its_own_cycle() -> None:
    sandbox = Settings.model_validate({"sandbox": {"enabled": True, "interval_seconds": 30}})
    tiers = sandbox.effective_check_intervals()

    assert (tiers.recent_seconds, tiers.pending_seconds, tiers.active_seconds) == (30, 30, 30)
    assert tiers.closed_seconds == 2880  # its day, at 30 s for 15 minutes
    assert sandbox.cycle_seconds() == 30
    production = Settings()
    assert production.effective_check_intervals() == production.check_intervals
