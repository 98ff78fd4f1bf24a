"""Facebook Page posts: DELETE /{version}/{page-id}_{post-id} with the Page token."""

from __future__ import annotations

from pydantic import Field

from daemon.foreign_text import storable
from daemon.platforms import graph
from daemon.platforms.outcomes import (
    AccountCredentials,
    Deleted,
    NeedsPerson,
    Outcome,
    PostTarget,
    RetryLater,
)


class FacebookSettings(graph.GraphSettings):
    facebook_rate_per_second: float = Field(default=5.0, gt=0, le=1000)


class FacebookAdapter(graph.GraphAdapter):
    platform = "facebook"
    name = "Facebook"

    async def delete(self, post: PostTarget, account: AccountCredentials) -> Outcome:
        resp = await self._delete(post.platform_post_id, account.access_token)
        if isinstance(resp, RetryLater):
            return resp
        if resp.status_code == 200:
            body = graph.success_body(resp)
            if body is not None and body.get("success") is True:
                return Deleted()
            # Seen for Stories, which the API cannot delete: check the body, not the status.
            return NeedsPerson(f"Facebook answered 200 without success: {storable(resp.text, 200)}")
        error = graph.read_error(resp)
        if (error.code, error.subcode) == graph.MISSING_OBJECT:
            return await self._gone_or_forbidden(
                self._owner(post.platform_post_id),
                account.access_token,
                error,
                "Facebook says the post does not exist; the token can still read its page, "
                "so it was already deleted",
            )
        return graph.classify(error, resp.headers)

    def _owner(self, object_id: str) -> str:
        return object_id.split("_", 1)[0]  # the page of {page-id}_{post-id}
