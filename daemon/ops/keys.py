"""The secret key: re-encrypting what is stored with the first configured key. It works on
this machine's database and key only (the CLI refuses it over --api)."""

from __future__ import annotations

from daemon.credentials import require_box
from daemon.ops.context import Topic
from daemon.ops.views import View
from daemon.store import vault


class KeyOps(Topic):
    async def rotate(self) -> View:
        """Every stored secret re-encrypted with the first key, in one transaction."""
        count = await vault.rotate(self.ctx.db, require_box(self.ctx.box))
        self.ctx.audit("rotated", "secret_key", "first", re_encrypted=count)
        return {"re_encrypted": count}
