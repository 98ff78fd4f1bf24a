"""The status page's templates (daemon/ui/templates), rendered with Jinja2: autoescaped, so
a value from the MLS or a platform (a listing key, an error) is shown as text, never as
markup; a name a template does not get is an error, not an empty string."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import jinja2

from daemon.timestamps import parse_iso


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("daemon.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["seconds"] = seconds
    env.filters["number"] = number
    env.filters["link"] = link
    env.filters["shown_url"] = shown_url
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def when(text: str | None) -> str:
    """An ISO time as people read it, in UTC (the daemon's own zone for everything)."""
    if not text:
        return "never"
    return parse_iso(text).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 600 else f"{value / 60:.0f} min"


def number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def link(url: str | None) -> str | None:
    """A link the page may put in an href: http(s) only (a post's permalink is checked when
    it is stored; this keeps a `javascript:` one out all the same)."""
    if url and urlsplit(url).scheme in ("http", "https"):
        return url
    return None


def shown_url(url: str) -> str:
    """A URL without what may be a secret in it: no user or password, no query."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def duration_seconds(started_at: str, finished_at: str | None, now: datetime) -> float:
    end = parse_iso(finished_at) if finished_at else now
    return max(0.0, (end - parse_iso(started_at)).total_seconds())
