"""`mls-sync run`: the daemon."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from daemon import eventloop, logs
from daemon.cli.common import CONFIG_OPTION, EX_CANTCREAT, fail, on_this_machine, settings_from
from daemon.cli.wiring import opener
from daemon.encryption import SecretKeyError
from daemon.state_dir import StatePathError
from daemon.store.database import SchemaError


@click.command()
@CONFIG_OPTION
def run(config_path: Path | None) -> None:
    """Run the daemon: a sync every [sync] interval_seconds (and at start), the HTTP server on
    [daemon] http_host:http_port, until SIGTERM or SIGINT.

    \b
    Signals: SIGUSR1 syncs now (systemctl kill -s USR1 mls-sync); SIGHUP reloads config.toml
    (a bad file is refused and the old settings kept); SIGTERM stops gracefully within
    [daemon] shutdown_grace_seconds. Under systemd (Type=notify) it reports READY, RELOADING,
    STOPPING and watchdog pings. Logs are JSON lines on stdout unless on a terminal.

    Exit codes: 0 after a clean stop, 78 for a bad configuration, 73 when its state path
    cannot be created, 1 when it cannot start for another reason.
    """
    # Here, not at the top: the daemon's service (the HTTP API, the scheduler, the workers)
    # is what `run` alone needs, and every other command would load it at start for nothing.
    from daemon.service.daemon import StartupError, run_daemon

    on_this_machine("run")
    settings = settings_from(config_path, verbose=True)
    logs.configure(settings.logging.level, settings.logging.format, sys.stdout)
    try:
        eventloop.run(run_daemon, config_path, settings, opener())
    except StatePathError as exc:
        fail(str(exc), EX_CANTCREAT)
    except (StartupError, SchemaError, SecretKeyError) as exc:
        fail(str(exc))
