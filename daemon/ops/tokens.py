"""API tokens: made, listed, revoked, and who a presented bearer token is.

A token is 32 random bytes (URL-safe base64) behind a recognisable `mls_` prefix, so that a
secret scanner or a person can tell what leaked. Only its SHA-256 is stored: for a random
token that long a fast hash is enough (nobody can guess their way back), and a token is found
by looking its hash up. It is shown once, when made. The token configured in
MLS_SYNC_API_TOKEN (or $CREDENTIALS_DIRECTORY/api-token) keeps working, as an admin token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

import structlog

from daemon.credentials import Secret
from daemon.errors import Conflict, NotFound
from daemon.ops.context import Topic
from daemon.ops.views import View
from daemon.scopes import Scope
from daemon.specs import ID_PATTERN, SpecError
from daemon.store import api_tokens as store
from daemon.store.database import Database
from daemon.store.errors import StoreError
from daemon.store.records import ApiTokenRow
from daemon.timestamps import iso, utcnow

log = structlog.get_logger("mls_sync.tokens")

PREFIX = "mls_"
# The configured token's name in what a caller is known by (audit lines): not a valid token
# name, so no stored token can take it.
CONFIGURED = "(configured)"
# last_used_at is written at most this often per token: not a write on every request.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Caller:
    """Who a request's bearer token says it is: the token's name and scope."""

    name: str
    scope: Scope


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def valid_name(name: str) -> str:
    if not re.fullmatch(ID_PATTERN, name):
        raise SpecError(
            "name: 1 to 128 letters, digits and . _ : - starting with a letter or digit"
        )
    return name


def due_for_touch(last_used_at: str | None, now: datetime) -> bool:
    """Whether a use at `now` should be written (times are ISO text: text order is time order)."""
    return last_used_at is None or last_used_at < iso(now - TOUCH_EVERY)


def view(row: ApiTokenRow) -> View:
    """A token as the CLI and the API show it: never the token, nor its hash (not read)."""
    return asdict(row)


class TokenOps(Topic):
    async def create(self, name: str, scope: Scope) -> tuple[View, str]:
        """The new token's record and the token itself, which nothing can show again."""
        token = new_token()
        row = await store.create(
            self.ctx.db, valid_name(name), scope, token_sha256(token), self.ctx.now()
        )
        if row is None:
            raise Conflict(
                "a token with this name exists already (a revoked token keeps its name): "
                "choose another name"
            )
        self.ctx.audit("created", "api_token", name, scope=str(scope))
        return view(row), token

    async def list(self) -> list[View]:
        return [view(row) for row in await store.list_all(self.ctx.db)]

    async def revoke(self, name: str) -> View:
        """Revokes at once: the next request with it is refused (nothing is cached)."""
        row = await store.get(self.ctx.db, name)
        if row is None:
            raise NotFound("no token has this name (see `mls-sync tokens list`)")
        now = self.ctx.now()
        if not await store.revoke(self.ctx.db, name, now):
            raise Conflict(f"token {name!r} was revoked already, at {row.revoked_at}")
        self.ctx.audit("revoked", "api_token", name)
        return view(replace(row, revoked_at=now))


async def authenticate(db: Database, configured: Secret | None, presented: str) -> Caller | None:
    """Who the presented token is, or None for no token or a wrong or revoked one."""
    if not presented:
        return None
    if configured and hmac.compare_digest(
        presented.encode("utf-8"), configured.value.encode("utf-8")
    ):
        return Caller(CONFIGURED, Scope.ADMIN)
    row = await store.live_by_hash(db, token_sha256(presented))
    if row is None:
        return None
    await _note_use(db, row)
    return Caller(row.name, Scope(row.scope))


async def api_is_on(db: Database, configured: Secret | None) -> bool:
    """Whether any token could be accepted: the configured one, or a live stored one."""
    return configured is not None or await store.any_live(db)


async def _note_use(db: Database, row: ApiTokenRow) -> None:
    now = utcnow()
    if not due_for_touch(row.last_used_at, now):
        return
    try:
        await store.touch(db, row.id, iso(now))
    except StoreError as exc:
        # When a token was last used is a hint for people: never a reason to refuse a request.
        # (`caller`, not `token_name`: the log redacts any field named like a secret.)
        log.warning("token_use_not_recorded", caller=row.name, error=str(exc))
