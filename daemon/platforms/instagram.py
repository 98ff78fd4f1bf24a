"""Instagram media: DELETE /{version}/{ig-media-id}, only for accounts connected through
Facebook Login (the Instagram Login API cannot delete)."""

from __future__ import annotations

import httpx

from daemon.platforms import graph
from daemon.platforms.outcomes import (
    AccountCredentials,
    AlreadyGone,
    Deleted,
    NeedsPerson,
    Outcome,
    PostTarget,
    RetryLater,
)

INSTAGRAM_LOGIN = "instagram_login"


class InstagramAdapter:
    platform = "instagram"

    def __init__(self, http: httpx.AsyncClient, graph_url: str, version: str) -> None:
        self.http = http
        self.base = f"{graph_url}/{version}"

    async def delete(self, post: PostTarget, account: AccountCredentials) -> Outcome:
        if account.connected_via == INSTAGRAM_LOGIN:
            return NeedsPerson(
                "this account is connected with Instagram Login, whose API cannot "
                "delete posts: remove it in the Instagram app"
            )
        auth = {"Authorization": f"Bearer {account.access_token}"}
        media_id = post.platform_post_id
        try:
            resp = await self.http.delete(f"{self.base}/{media_id}", headers=auth)
        except httpx.HTTPError as exc:
            return RetryLater(f"Instagram unreachable: {type(exc).__name__}")
        if resp.status_code == 200:
            body = graph.success_body(resp) or {}
            if body.get("success") is True and str(body.get("deleted_id")) == media_id:
                return Deleted()
            return NeedsPerson(f"Instagram did not confirm deleting {media_id}: {resp.text[:200]}")
        error = graph.read_error(resp)
        if error.subcode == graph.CAROUSEL_SLIDE_SUBCODE:
            return NeedsPerson(
                "a single carousel slide cannot be deleted by API: delete the "
                "whole carousel or remove it by hand"
            )
        if (error.code, error.subcode) == graph.MISSING_OBJECT:
            return await self._gone_or_forbidden(auth, error)
        return graph.classify(error, resp.headers)

    async def _gone_or_forbidden(self, auth: dict[str, str], error: graph.GraphError) -> Outcome:
        try:
            check = await self.http.get(f"{self.base}/me", params={"fields": "id"}, headers=auth)
        except httpx.HTTPError as exc:
            return RetryLater(f"Instagram unreachable for the 100/33 check: {type(exc).__name__}")
        if check.status_code == 200:
            return AlreadyGone(
                "Instagram says the media does not exist and the token still "
                "works, so it was already deleted"
            )
        return NeedsPerson(f"{error.describe()}, and the token check failed: a permission problem")
