"""Facebook Page posts: DELETE /{version}/{page-id}_{post-id} with the Page token."""

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


class FacebookAdapter:
    platform = "facebook"

    def __init__(self, http: httpx.AsyncClient, graph_url: str, version: str) -> None:
        self.http = http
        self.base = f"{graph_url}/{version}"

    async def delete(self, post: PostTarget, account: AccountCredentials) -> Outcome:
        auth = {"Authorization": f"Bearer {account.access_token}"}
        try:
            resp = await self.http.delete(f"{self.base}/{post.platform_post_id}", headers=auth)
        except httpx.HTTPError as exc:
            return RetryLater(f"Facebook unreachable: {type(exc).__name__}")
        if resp.status_code == 200:
            body = graph.success_body(resp)
            if body is not None and body.get("success") is True:
                return Deleted()
            # Seen for Stories, which the API cannot delete: check the body, not the status.
            return NeedsPerson(f"Facebook answered 200 without success: {resp.text[:200]}")
        error = graph.read_error(resp)
        if (error.code, error.subcode) == graph.MISSING_OBJECT:
            return await self._gone_or_forbidden(post, auth, error)
        return graph.classify(error, resp.headers)

    async def _gone_or_forbidden(
        self, post: PostTarget, auth: dict[str, str], error: graph.GraphError
    ) -> Outcome:
        """100/33 means "does not exist" OR "no permission". Only if the same token can still
        read the page is the post really gone; otherwise it is a permission problem."""
        page_id = post.platform_post_id.split("_", 1)[0]
        try:
            check = await self.http.get(
                f"{self.base}/{page_id}", params={"fields": "id"}, headers=auth
            )
        except httpx.HTTPError as exc:
            return RetryLater(f"Facebook unreachable for the 100/33 check: {type(exc).__name__}")
        if check.status_code == 200:
            return AlreadyGone(
                "Facebook says the post does not exist; the token can still read "
                "its page, so it was already deleted"
            )
        return NeedsPerson(
            f"{error.describe()}, and the token cannot read page {page_id}: "
            "a permission problem, not a deleted post"
        )
