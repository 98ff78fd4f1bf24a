"""config.toml + environment -> validated, typed settings.

The file is the first of: `--config PATH`, `$MLS_SYNC_CONFIG`, `./config.toml`,
`/etc/mls-sync/config.toml` (see `find_config`). Sources, later wins: the defaults below, that
file, then `MLS_SYNC_<SECTION>__<KEY>` environment variables. Secrets never come from here
(see `daemon.credentials`): a secret key in config.toml is refused with a hint, so that it
cannot end up in a file that is world-readable or under version control.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from daemon.models import LocalStatus, StatusMapping
from daemon.platforms.registry import REGISTRY, RegisteredPlatformSettings

ENV_PREFIX = "MLS_SYNC_"
ENV_SEPARATOR = "__"
EX_CONFIG = 78  # sysexits.h: configuration error; systemd's RestartPreventExitStatus=78
CONFIG_ENV = "MLS_SYNC_CONFIG"
DEFAULT_CONFIG_PATH = Path("config.toml")  # in the working directory
SYSTEM_CONFIG_PATH = Path("/etc/mls-sync/config.toml")
SECRET_KEYS = frozenset(
    {"secret_key", "api_token", "token", "password", "smtp_password", "client_secret"}
)
# Where a secret put in the file belongs instead, when it is not MLS_SYNC_<KEY>.
SECRET_HOMES = {
    ("database", "password"): ("MLS_SYNC_DATABASE_PASSWORD", "database-password"),
    ("email", "password"): ("MLS_SYNC_SMTP_PASSWORD", "smtp-password"),
    ("email", "smtp_password"): ("MLS_SYNC_SMTP_PASSWORD", "smtp-password"),
}


class ConfigError(Exception):
    """The configuration cannot be used; the message names each bad key and value."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    path: Path = Field(
        default=Path("state/mls-sync.db"),
        description="SQLite file; a relative path is taken from the config file's folder",
    )
    # PostgreSQL instead of the SQLite file (docs/postgresql.md). Its password never comes
    # from here: MLS_SYNC_DATABASE_PASSWORD, or $CREDENTIALS_DIRECTORY/database-password.
    url: str = Field(default="", max_length=2000, description="empty: the SQLite file at path")
    busy_timeout_ms: int = Field(default=5000, ge=100, le=600_000)

    @field_validator("path")
    @classmethod
    def _no_nul(cls, v: Path) -> Path:
        if "\0" in str(v):  # no file system takes one; resolving the path would raise
            raise ValueError("must not contain a NUL character")
        return v

    @field_validator("url")
    @classmethod
    def _a_postgresql_url_without_password(cls, v: str) -> str:
        if not v:
            return v
        # Messages never quote the URL: a mistaken one may hold a password.
        if not v.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "must be a PostgreSQL URL, postgresql://USER@HOST:PORT/DATABASE (leave it out "
                "to use the SQLite file at [database] path)"
            )
        # Here, not at the top: psycopg takes a tenth of a second to import, and only a
        # PostgreSQL user needs it.
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            parts = conninfo_to_dict(v)
        except psycopg.ProgrammingError:
            raise ValueError(
                "is not a URL PostgreSQL can read: postgresql://USER@HOST:PORT/DATABASE"
            ) from None
        if parts.get("password"):
            raise ValueError(
                "must not hold the password: set MLS_SYNC_DATABASE_PASSWORD, or put it in "
                "$CREDENTIALS_DIRECTORY/database-password (systemd LoadCredential=)"
            )
        return v


class SyncSettings(_Section):
    interval_seconds: int = Field(default=900, ge=10, le=86_400)
    jitter_seconds: int = Field(default=30, ge=0, le=3600)
    max_concurrent_connections: int = Field(default=4, ge=1, le=256)
    unpublish_on: tuple[LocalStatus, ...] = Field(default=(LocalStatus.SOLD,), min_length=1)
    lease_seconds: int = Field(
        default=600,
        ge=30,
        le=86_400,
        description="how long a lease (a connection's sync, the unpublish pass) lasts before "
        "another process may take it over (renewed while the work runs): how long a daemon "
        "that died on another VM holds its unpublish pass back from the others (its "
        "connections are taken once its process lease runs out, within 15 s)",
    )


class MlsSettings(_Section):
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    max_concurrent_requests: int = Field(default=8, ge=1, le=1024)
    max_attempts: int = Field(default=4, ge=1, le=20)
    backoff_initial_seconds: float = Field(default=0.5, ge=0, le=60)
    backoff_max_seconds: float = Field(default=30.0, ge=0, le=3600)
    max_retry_after_seconds: float = Field(default=120.0, ge=0, le=3600)
    breaker_after_429s: int = Field(default=3, ge=1, le=100)
    max_url_length: int = Field(default=2000, ge=256, le=65_536)
    # The engine under httpx for MLS requests: aiohttp's costs less CPU per request than
    # httpcore, httpx's own, which stays as a fallback (docs/benchmarks.md "The HTTP engine").
    http_engine: Literal["aiohttp", "httpcore"] = "aiohttp"
    status_map: dict[str, str] = Field(default_factory=dict)
    mls_status_map: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _maps_are_valid(self) -> MlsSettings:
        self.status_mapping()  # raises ValueError naming the bad entry
        return self

    def status_mapping(self) -> StatusMapping:
        return StatusMapping.build(self.status_map, self.mls_status_map)


class PlatformSettings(_Section, RegisteredPlatformSettings):
    """How hard we may call the social platforms. Where each platform is, its API version and
    its rate are that platform's own settings, declared with its adapter and joined by the
    platform registry."""

    timeout_seconds: float = Field(default=20.0, gt=0, le=600)
    max_concurrent_per_account: int = Field(default=2, ge=1, le=64)
    max_concurrent_requests: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="delete calls in flight over all platforms (taken after the rate "
        "limiter, so it bounds only calls really out); also the HTTP pool's size, so "
        "requests never queue inside the pool (whose queue costs O(queue x connections))",
    )
    retry_initial_seconds: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="first wait before a failed delete is tried again (doubles each time)",
    )
    retry_max_seconds: float = Field(default=6 * 3600.0, ge=0, le=7 * 86_400)

    def rate_for(self, platform: str) -> float:
        rate: float = getattr(self, REGISTRY[platform].rate_setting)
        return rate


class DaemonSettings(_Section):
    """`mls-sync run`: the HTTP server and the shutdown behaviour."""

    http_host: str = Field(
        default="127.0.0.1",
        description="address the health/status/metrics/API server binds; loopback by default",
    )
    http_port: int = Field(default=8787, ge=0, le=65_535)
    ui_login: Literal["auto", "always"] = Field(
        default="auto",
        description="the status page (/ui) asks for an API token: `auto` when http_host is "
        "not a loopback address; `always` also on loopback (behind a reverse proxy on this "
        "machine, which would otherwise open it to whoever reaches the proxy)",
    )
    shutdown_grace_seconds: float = Field(default=20.0, ge=0, le=600)
    startup_grace_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description="how long /readyz passes before the first cycle has completed",
    )
    max_body_bytes: int = Field(default=65_536, ge=1024, le=10_000_000)
    # A bulk import (POST /v1/listings/import) may be larger: 100,000 CSV rows fit in 8 MiB.
    max_import_bytes: int = Field(default=8_388_608, ge=1024, le=1_073_741_824)
    access_log: bool = Field(
        default=True,
        description="one `http_request` line per request (method, route, status, duration) "
        "at info; health and metrics routes at debug",
    )


class PushSettings(_Section):
    """RESO push (RCP-28): the MLS POSTs change-log events to the daemon (docs/mls-reso.md
    "Push")."""

    http_host: str = Field(
        default="",
        description="an address of its own for push alone (the MLS must reach it; the API "
        "stays on [daemon] http_host); empty: push is received on [daemon]'s address",
    )
    http_port: int = Field(default=8788, ge=0, le=65_535)
    queue_limit: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="pushed events a connection may have waiting; past it a push is answered "
        "429 with Retry-After, and the MLS sends it again later",
    )
    retry_after_seconds: int = Field(default=10, ge=1, le=3600)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=100_000_000)


class CheckIntervalSettings(_Section):
    """Smart intervals for by_key connections (docs/mls-reso.md "Check tiers"): a scheduled
    cycle asks the MLS only for the listings whose tier's interval has passed since their
    last check. A sync someone asks for (SIGUSR1, POST /v1/sync, `mls-sync sync`) asks for
    every listing."""

    enabled: bool = True
    recent_window_seconds: int = Field(
        default=86_400,
        ge=0,
        le=30 * 86_400,
        description="a listing whose status changed less than this long ago is `recent`",
    )
    # A live status is never asked less often than every 15 minutes: the brief's detection
    # time (requirement 5.1). Shipped at 15 minutes, as every listing was before: a faster
    # tier shortens every cycle, and on small connections costs more requests than it saves
    # (docs/benchmarks.md, scenario G).
    recent_seconds: int = Field(default=900, ge=10, le=900)
    pending_seconds: int = Field(
        default=900, ge=10, le=900, description="listings pending or coming_soon"
    )
    active_seconds: int = Field(default=900, ge=10, le=900)
    closed_seconds: int = Field(
        default=86_400, ge=10, le=30 * 86_400, description="listings sold or off_market"
    )

    def fastest_seconds(self) -> int:
        return min(self.recent_seconds, self.pending_seconds, self.active_seconds)


class SandboxSettings(_Section):
    enabled: bool = False
    interval_seconds: int = Field(
        default=30,
        ge=1,
        le=86_400,
        description="`mls-sync run` in sandbox mode syncs this often instead of [sync]'s "
        "interval, so a newcomer sees the market move",
    )
    agents: int = Field(default=3, ge=1, le=100)
    connections: int = Field(default=4, ge=1, le=1000)
    listings: int = Field(default=300, ge=1, le=1_000_000)
    moves_per_cycle: int = Field(default=12, ge=0, le=100_000)
    seed: int = 7


class WebhookSettings(_Section):
    """Signed outbound webhooks (docs/webhooks.md): how hard and how long we try."""

    timeout_seconds: float = Field(
        default=15.0, gt=0, le=120, description="one delivery's whole request, answer included"
    )
    max_in_flight: int = Field(
        default=8, ge=1, le=256, description="deliveries sent at once over all endpoints"
    )
    retry_window_seconds: float = Field(
        default=3 * 86_400.0,
        ge=60,
        le=30 * 86_400,
        description="how long an endpoint keeps failing before it is disabled",
    )
    max_retry_after_seconds: float = Field(
        default=3600.0,
        ge=0,
        le=86_400,
        description="the longest Retry-After (of a 429 or 503) that is honoured as given",
    )
    secret_overlap_seconds: float = Field(
        default=86_400.0,
        ge=0,
        le=30 * 86_400,
        description="after a rotation, how long the previous secret still signs",
    )
    allow_http_loopback: bool = Field(
        default=False,
        description="accept http:// endpoints and addresses on 127.0.0.0/8 and ::1 (tests, "
        "sandbox); always on in sandbox mode",
    )
    allow_private_addresses: bool = Field(
        default=False,
        description="accept endpoints on private and link-local addresses (an internal "
        "receiver); off, an endpoint URL cannot reach the daemon's own network",
    )
    niceness: int = Field(
        default=10,
        ge=0,
        le=19,
        description="the delivery process's CPU niceness: above 0, a busy machine gives the "
        "sync its CPU first and the deliveries what is left",
    )


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class EventSettings(_Section):
    """The event log (docs/events.md)."""

    retention_days: int = Field(default=30, ge=1, le=3650)


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class EmailSettings(_Section):
    """E-mail notifications (docs/email.md). The SMTP password is a secret: it comes from
    MLS_SYNC_SMTP_PASSWORD or $CREDENTIALS_DIRECTORY/smtp-password, never from here."""

    enabled: bool = False
    smtp_host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    smtp_port: int = Field(default=587, ge=1, le=65_535)
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls (port 587), tls (implicit TLS, port 465), or none: plain text, "
        "allowed only to a loopback host",
    )
    username: str = Field(default="", max_length=320, description="the SMTP login; empty: no login")
    from_address: str = Field(default="mls-sync@localhost", min_length=3, max_length=320)
    public_url: str = Field(
        default="http://127.0.0.1:8787",
        description="absolute base URL put before the /v1 paths of records in messages",
    )
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    max_in_flight: int = Field(default=4, ge=1, le=256)
    digest_hour: int = Field(default=8, ge=0, le=23)
    give_up_after_hours: float = Field(default=72.0, gt=0, le=24 * 30)

    @field_validator("from_address")
    @classmethod
    def _an_address(cls, v: str) -> str:
        if "@" not in v or any(c in v for c in "\r\n<>, "):
            raise ValueError("must be one plain e-mail address, such as mls-sync@example.com")
        return v

    @field_validator("public_url")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")) or any(c in v for c in "\r\n "):
            raise ValueError("must be an absolute http(s) URL, such as https://app.example.com")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _plain_text_only_to_loopback(self) -> EmailSettings:
        if self.security == "none" and self.smtp_host not in LOOPBACK_HOSTS:
            raise ValueError(
                "security = 'none' sends the password and the messages in plain text: it is "
                "allowed only to a loopback smtp_host (127.0.0.1, ::1, localhost); use "
                "'starttls' or 'tls'"
            )
        return self


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    sync: SyncSettings = SyncSettings()
    mls: MlsSettings = MlsSettings()
    platforms: PlatformSettings = PlatformSettings()
    daemon: DaemonSettings = DaemonSettings()
    sandbox: SandboxSettings = SandboxSettings()
    logging: LoggingSettings = LoggingSettings()
    events: EventSettings = EventSettings()
    email: EmailSettings = EmailSettings()
    webhooks: WebhookSettings = WebhookSettings()
    push: PushSettings = PushSettings()
    check_intervals: CheckIntervalSettings = CheckIntervalSettings()

    def cycle_seconds(self) -> int:
        """How often the scheduled cycle runs: [sync]'s interval ([sandbox]'s in sandbox
        mode), or sooner when a check tier is due sooner (a tier means what it says)."""
        interval = (
            self.sandbox.interval_seconds if self.sandbox.enabled else self.sync.interval_seconds
        )
        tiers = self.effective_check_intervals()
        return min(interval, tiers.fastest_seconds()) if tiers.enabled else interval

    def effective_check_intervals(self) -> CheckIntervalSettings:
        """[check_intervals] as the daemon applies it. In sandbox mode, on the sandbox's
        compressed clock: a live listing is asked at every cycle (its 15 minutes), a closed
        one as much less often as the tiers say, scaled the same way, so that `connections
        show` and /status show tiers at work."""
        tiers = self.check_intervals
        if not self.sandbox.enabled:
            return tiers
        cycle = self.sandbox.interval_seconds
        scale = cycle / SyncSettings().interval_seconds
        return tiers.model_copy(
            update={
                "recent_seconds": cycle,
                "pending_seconds": cycle,
                "active_seconds": cycle,
                "closed_seconds": max(cycle, round(tiers.closed_seconds * scale)),
                "recent_window_seconds": round(tiers.recent_window_seconds * scale),
            }
        )

    def effective_webhooks(self) -> WebhookSettings:
        """[webhooks] as the daemon applies it: sandbox mode allows its loopback receivers."""
        if self.sandbox.enabled and not self.webhooks.allow_http_loopback:
            return self.webhooks.model_copy(update={"allow_http_loopback": True})
        return self.webhooks


def find_config(
    given: Path | None,
    environ: Mapping[str, str],
    cwd: Path,
    exists: Callable[[Path], bool] = Path.exists,
) -> Path | None:
    """The config file, as operators expect: `--config` (`given`), else `$MLS_SYNC_CONFIG`,
    else the first of `./config.toml` and `/etc/mls-sync/config.toml` that exists; None when
    none does. A file named explicitly is returned even if absent, so the error names it
    rather than quietly reading another."""
    if given is not None:
        return cwd / given
    if named := environ.get(CONFIG_ENV, ""):  # an empty variable is unset, as for --config
        return cwd / named
    return next((p for p in (cwd / DEFAULT_CONFIG_PATH, SYSTEM_CONFIG_PATH) if exists(p)), None)


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Reads, merges and validates the file `find_config` finds; raises ConfigError with one
    line per problem."""
    environ = os.environ if environ is None else environ
    # Relative to the working directory as given, so that messages name "config.toml".
    found = find_config(path, environ, Path())
    if found is None:
        raise ConfigError(_none_found())
    path = found
    raw = _read_toml(path)
    sources: dict[str, str] = {}
    _refuse_secrets(raw, path)
    for dotted, value, env_name in _env_overrides(environ):
        _set_dotted(raw, dotted, value)
        sources[dotted] = f"environment variable {env_name}"
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, path, sources)) from None
    db_path = settings.database.path
    if not db_path.is_absolute():
        db_path = (path.parent / db_path).resolve()
    return settings.model_copy(
        update={"database": settings.database.model_copy(update={"path": db_path})}
    )


def _none_found() -> str:
    here = DEFAULT_CONFIG_PATH.absolute()
    return (
        f"no config file: {CONFIG_ENV} is not set, and neither {here} nor "
        f"{SYSTEM_CONFIG_PATH} exists; pass --config PATH, set {CONFIG_ENV}, or copy the "
        "shipped config.toml (systemd/config.toml for production) to one of them"
    )


def _read_toml(path: Path) -> dict[str, Any]:
    """Every way a file can be unusable is a ConfigError naming the file and where, never
    quoting it: a config file may hold a comment or value that must not reach a log."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file; pass --config PATH or copy the shipped config.toml"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line, column = _line_and_column(data, exc.start)
        raise ConfigError(
            f"{path}: not UTF-8 text (line {line}, column {column}); save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: arrays or tables nested too deeply to read") from None
    except ValueError:  # an integer of thousands of digits: Python refuses to convert it
        raise ConfigError(f"{path}: a number too long to read") from None


def _line_and_column(data: bytes, offset: int) -> tuple[int, int]:
    """1-based, as editors count; the column in bytes."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _refuse_secrets(raw: Mapping[str, Any], path: Path) -> None:
    for section, body in raw.items():
        if isinstance(body, Mapping):
            for key in body:
                if key in SECRET_KEYS:
                    env, credential = SECRET_HOMES.get(
                        (section, key), (f"MLS_SYNC_{key.upper()}", "")
                    )
                    raise ConfigError(
                        f"{path}: [{section}] {key}: secrets are not read from config.toml; "
                        f"set {env} or put it in $CREDENTIALS_DIRECTORY"
                        + (f"/{credential}" if credential else "")
                    )


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[str, Any, str]]:
    found = []
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or ENV_SEPARATOR not in name:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split(ENV_SEPARATOR)
        found.append((".".join(parts), _env_value(text), name))
    return found


def _env_value(text: str) -> Any:
    """An environment value is read as a TOML value (so 30, true and ["sold"] keep their
    types), or else taken as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError, ValueError):  # too deep, too long
        return text


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *sections, key = dotted.split(".")
    node = raw
    for part in sections:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[key] = value


def _explain(exc: ValidationError, path: Path, sources: Mapping[str, str]) -> str:
    """One line per problem: where it is (file or variable), the key, the rule. Never the
    value: a secret put in the wrong place would end up in a terminal or the journal."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        dotted = ".".join(loc)
        where = sources.get(dotted, str(path))
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            lines.append(
                f"{where}: {_display_key(loc)}: unknown key; allowed here: {', '.join(allowed)}"
            )
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {_display_key(loc)}: {msg}")
    return "\n".join(lines)


def _display_key(loc: list[str]) -> str:
    if len(loc) == 1:
        return f"[{loc[0]}]"
    return f"[{loc[0]}] {'.'.join(loc[1:])}"


def _allowed_keys(section: list[str]) -> list[str]:
    model: type[BaseModel] = Settings
    for part in section:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def describe(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, for `check-config`."""
    return settings.model_dump(mode="json")
