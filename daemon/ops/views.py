"""What each record looks like to a caller: the one public shape the API answers with and the
CLI prints (tables and --json alike). No view holds a secret: a stored credential shows as
"<set>"."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from daemon.models import LocalStatus, is_publishable
from daemon.platforms.links import post_link
from daemon.store.records import (
    AccountRow,
    ConnectionRow,
    ListingRow,
    PostRow,
    RunErrorRow,
    RunRow,
    StatusChangeRow,
    UserRow,
)

View = dict[str, Any]


def connection(row: ConnectionRow) -> View:
    out = row.public()
    out["select_mlg_can_view"] = bool(row.select_mlg_can_view)
    return out


def listing(row: ListingRow) -> View:
    out = asdict(row)
    out["excluded"] = bool(row.excluded)
    out["publishable"] = is_publishable(LocalStatus(row.status) if row.status else None)
    return out


def status_change(row: StatusChangeRow) -> View:
    return asdict(row)


def account(row: AccountRow) -> View:
    return row.public()


def post(row: PostRow) -> View:
    out = asdict(row)
    out["link"] = post_link(row.platform or "", row.platform_post_id, row.permalink)
    return out


def run(row: RunRow) -> View:
    return asdict(row)


def run_error(row: RunErrorRow) -> View:
    return asdict(row)


def user(row: UserRow) -> View:
    out = asdict(row)
    out["notify_events"] = json.loads(row.notify_events)
    return out
