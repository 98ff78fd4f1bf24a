"""Platform accounts (the pages and profiles posts are published from) and their tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.errors import Conflict
from daemon.ops import views
from daemon.ops.records import Kind, Records
from daemon.ops.users import require_users
from daemon.ops.views import View
from daemon.specs import AccountSpec, parse_spec
from daemon.store import accounts as store


@dataclass(frozen=True)
class AccountTokens:
    """Given in plain text by the caller; stored encrypted, never shown again."""

    access_token: str | None = None
    refresh_token: str | None = None
    client_secret: str | None = None


class AccountOps(Records):
    kind = Kind("platform account", store.ACCOUNTS, store.get, views.account)

    async def put(
        self, account_id: str, fields: dict[str, Any], tokens: AccountTokens
    ) -> tuple[View, bool]:
        """Creates or updates. A new account needs its access token; new tokens re-activate
        an account that needed re-authentication."""
        spec = parse_spec(AccountSpec, {**fields, "id": account_id}, values=False)
        await require_users(self.ctx.db, [spec.user_id], "user_id")
        if tokens.access_token is None and await store.get(self.ctx.db, account_id) is None:
            raise Conflict(
                f"account {account_id!r} is new: its access token is required "
                "(--token-env NAME or --token-file PATH; `access_token` over HTTP)"
            )
        encrypt = self.ctx.encrypt
        created = await store.upsert(
            self.ctx.db,
            spec,
            encrypt(tokens.access_token),
            encrypt(tokens.refresh_token),
            encrypt(tokens.client_secret),
            self.ctx.now(),
        )
        self.ctx.audit(
            "created" if created else "replaced",
            "platform_account",
            account_id,
            new_auth=[k.removesuffix("_token") for k, v in vars(tokens).items() if v],
        )
        return await self.get(account_id), created

    async def remove(self, account_id: str) -> View:
        """Refused while posts still refer to it (their rows need the account to come down)."""
        await store.remove(self.ctx.db, account_id)
        self.ctx.audit("removed", "platform_account", account_id)
        return {"removed": account_id}
