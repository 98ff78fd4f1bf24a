"""What every command shares: loading the config, opening the runtime, failing clearly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import anyio
import click
from pydantic import BaseModel

from daemon import eventloop, logs
from daemon.cli.remote import DaemonUnreachable
from daemon.config import EX_CONFIG, ConfigError, Settings, load_settings
from daemon.errors import Unavailable
from daemon.ops.imports import ImportRefused
from daemon.ops.queries import DEFAULT_LIMIT, MAX_LIMIT
from daemon.specs import SpecError, SpecT, parse_spec
from daemon.state_dir import StatePathError
from daemon.store.database import SchemaError
from daemon.sync.engine import SyncRefused

EX_FAILURE = 1
EX_USAGE = 2
EX_PARTIAL = 3  # `sync --strict`: the cycle ran but recorded errors (outcome partial)
EX_DATAERR = 65  # sysexits.h: the input data was incorrect
EX_UNAVAILABLE = 69  # sysexits.h: the daemon (--api) did not answer
EX_CANTCREAT = 73  # sysexits.h: an output file cannot be created (the state path)
EX_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C
EX_TERMINATED = 143  # 128 + SIGTERM
# What a command cut short by each signal says, and its exit code.
CUT_BY = {
    signal.SIGINT: ("interrupted", EX_INTERRUPTED),
    signal.SIGTERM: ("terminated", EX_TERMINATED),
}

T = TypeVar("T")
FC = TypeVar("FC", bound=Callable[..., Any])

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    envvar="MLS_SYNC_CONFIG",
    show_envvar=True,
    help="Configuration file. Without it: $MLS_SYNC_CONFIG, else ./config.toml, else "
    "/etc/mls-sync/config.toml.",
)

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def record_command(id_name: str) -> Callable[[FC], FC]:
    """The options of a command on one record: --config, its ID, --json."""

    def options(command: FC) -> FC:
        return CONFIG_OPTION(click.argument(id_name, metavar="ID")(JSON_OPTION(command)))

    return options


def removal_command(id_name: str, force_help: str) -> Callable[[FC], FC]:
    """A command that removes one record: --config, its ID, --force (with what it drops),
    --json."""

    def options(command: FC) -> FC:
        force = click.option("--force", is_flag=True, help=force_help)
        return record_command(id_name)(force(command))

    return options


def choice_of(values: type[StrEnum]) -> click.Choice[str]:
    """The values of an enum, as a click choice."""
    return click.Choice([v.value for v in values])


def choice_option(
    flag: str, values: type[StrEnum], default: StrEnum, explained: str
) -> Callable[[FC], FC]:
    """An option that takes one value of an enum, with its default shown."""
    return click.option(
        flag, type=choice_of(values), default=default.value, show_default=True, help=explained
    )


def list_command(command: FC) -> FC:
    """The options of a list command: --config, --after, --limit, --json."""
    return CONFIG_OPTION(list_options(JSON_OPTION(command)))


def list_options(command: FC) -> FC:
    """--limit and --after: a list is read a page at a time."""
    command = click.option(
        "--after",
        metavar="CURSOR",
        help="Start after this cursor (the one a cut list names on stderr).",
    )(command)
    return click.option(
        "--limit",
        default=DEFAULT_LIMIT,
        show_default=True,
        type=click.IntRange(1, MAX_LIMIT),
        help="How many to show.",
    )(command)


def fail(message: str, code: int = EX_FAILURE) -> NoReturn:
    click.echo(f"mls-sync: {message}", err=True)
    sys.exit(code)


def on_this_machine(command: str) -> None:
    """Refuses --api (or MLS_SYNC_API_URL) for a command that works only on this machine's
    config, database and key, rather than silently ignoring it."""
    if click.get_current_context().find_root().params.get("api_url"):
        fail(
            f"{command} works on this machine's config and database, not over --api: run it "
            "where the daemon runs, without --api (and with MLS_SYNC_API_URL unset)",
            EX_USAGE,
        )


def settings_from(config_path: Path | None, verbose: bool = False) -> Settings:
    """Loads the settings or exits 78. A one-off command logs only warnings and errors unless
    `verbose`: its summary on stdout says what happened; the daemon logs at the configured level."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        problems = str(exc)
        # One problem fits on one line (what a journal shows); several get one line each.
        separator = "\n" if "\n" in problems else " "
        fail(f"invalid configuration:{separator}{problems}", EX_CONFIG)
    level = settings.logging.level
    if not verbose and level in ("debug", "info"):
        level = "warning"
    logs.configure(level, settings.logging.format)
    return settings


class CutShort(Exception):
    """Ctrl-C or SIGTERM cancelled the command's coroutine."""

    def __init__(self, signum: signal.Signals) -> None:
        super().__init__(signum.name)
        self.signum = signum


def run(main: Callable[[], Awaitable[T]], cut_short: Callable[[], str] = lambda: "") -> T:
    """Runs a coroutine; known failures become one clear line and an exit code. Ctrl-C or
    SIGTERM cancel the coroutine (which records what it must on the way out), then it exits
    130 saying `interrupted` or 143 saying `terminated`, followed by `cut_short()`: what the
    signal left behind, known only then."""
    try:
        return eventloop.run(_until_signal, main)
    except KeyboardInterrupt:  # Ctrl-C before or after the event loop
        fail(f"interrupted{cut_short()}", EX_INTERRUPTED)
    except CutShort as exc:
        said, code = CUT_BY[exc.signum]
        fail(f"{said}{cut_short()}", code)
    except DaemonUnreachable as exc:
        fail(str(exc), EX_UNAVAILABLE)
    except StatePathError as exc:
        fail(str(exc), EX_CANTCREAT)
    except (SchemaError, Unavailable, SyncRefused) as exc:
        fail(str(exc))
    except ImportRefused as exc:
        fail(str(exc), EX_DATAERR)
    except SpecError as exc:
        fail(f"invalid input:\n{exc}", EX_USAGE)
    except LookupError as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
    except ValueError as exc:
        fail(str(exc), EX_USAGE)


def progress_printer(enabled: bool) -> Callable[[str, int, int], None]:
    """One updating line on a terminal's stderr; silent otherwise."""
    if not enabled or not sys.stderr.isatty():
        return lambda cid, done, total: None

    def show(connection_id: str, done: int, total: int) -> None:
        click.echo(f"\r  {connection_id}: {done}/{total} listings checked", err=True, nl=False)
        if done >= total:
            click.echo("", err=True)

    return show


def secret_from(env_name: str | None, file: Path | None, prompt: str, required: bool) -> str | None:
    """A secret from an environment variable, a file, or a hidden prompt; never from argv,
    where any user of the machine could read it in the process list."""
    if env_name:
        value = os.environ.get(env_name, "").strip()
        if not value:
            fail(f"--secret-env {env_name}: that environment variable is empty or unset", EX_USAGE)
        return value
    if file:
        return secret_file(file, "--secret-file")
    if not required:
        return None
    if sys.stdin.isatty():
        return str(click.prompt(prompt, hide_input=True))
    fail(f"{prompt} is required: pass --secret-env NAME or --secret-file PATH", EX_USAGE)


def secret_file(path: Path, option: str) -> str:
    """A secret kept in a file (its surrounding whitespace dropped); exits 2 naming the
    option when the file cannot be read or is empty."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        fail(f"{option} {path}: {exc.strerror}", EX_USAGE)
    if not value:
        fail(f"{option} {path}: the file is empty", EX_USAGE)
    return value


def fields_or_fail(model: type[BaseModel], record_id: str, given: dict[str, Any]) -> dict[str, Any]:
    """The options given (those left out dropped), checked as `model` with the record's id
    before anything opens or is asked: a bad one exits 2 naming it."""
    fields = {k: v for k, v in given.items() if v is not None}
    spec_or_fail(model, {**fields, "id": record_id})
    return fields


def spec_or_fail(model: type[SpecT], data: dict[str, object], where: str = "") -> SpecT:
    try:
        return parse_spec(model, data, where)
    except SpecError as exc:
        fail(f"invalid input:\n{exc}", EX_USAGE)


async def _until_signal(main: Callable[[], Awaitable[T]]) -> T:
    """`main()`, cancelled by the first Ctrl-C or SIGTERM through an anyio cancel scope, so
    that everything on the way out (recording the run, freeing its leases, closing the
    database) still runs in its shielded scopes. Later signals are ignored: a second
    Ctrl-C would otherwise raise KeyboardInterrupt anywhere, and SIGTERM by default ends the
    process at once; either would leave its run recorded as still running."""
    loop = asyncio.get_running_loop()
    scope = anyio.CancelScope()
    first: list[signal.Signals] = []

    def cut(signum: signal.Signals) -> None:
        if not first:
            first.append(signum)
            scope.cancel()

    for signum in CUT_BY:
        loop.add_signal_handler(signum, cut, signum)
    try:
        with scope:
            return await main()
        raise CutShort(first[0])
    finally:
        for signum in CUT_BY:
            loop.remove_signal_handler(signum)
