"""Instagram media: DELETE /{version}/{ig-media-id}, only for accounts connected through
Facebook Login (the Instagram Login API cannot delete)."""

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

INSTAGRAM_LOGIN = "instagram_login"


class InstagramSettings(graph.GraphSettings):
    instagram_rate_per_second: float = Field(default=5.0, gt=0, le=1000)


class InstagramAdapter(graph.GraphAdapter):
    platform = "instagram"
    name = "Instagram"

    async def check(self, post: PostTarget, account: AccountCredentials) -> Outcome | None:
        if account.connected_via == INSTAGRAM_LOGIN:
            return None  # no call was made: `delete` says a person must do it
        return await super().check(post, account)

    async def delete(self, post: PostTarget, account: AccountCredentials) -> Outcome:
        if account.connected_via == INSTAGRAM_LOGIN:
            return NeedsPerson(
                "this account is connected with Instagram Login, whose API cannot delete "
                "posts: remove it in the Instagram app"
            )
        media_id = post.platform_post_id
        resp = await self._delete(media_id, account.access_token)
        if isinstance(resp, RetryLater):
            return resp
        if resp.status_code == 200:
            body = graph.success_body(resp) or {}
            if body.get("success") is True and str(body.get("deleted_id")) == media_id:
                return Deleted()
            return NeedsPerson(
                f"Instagram did not confirm deleting {media_id}: {storable(resp.text, 200)}"
            )
        error = graph.read_error(resp)
        if error.subcode == graph.CAROUSEL_SLIDE_SUBCODE:
            return NeedsPerson(
                "a single carousel slide cannot be deleted by API: delete the whole carousel "
                "or remove it by hand"
            )
        if (error.code, error.subcode) == graph.MISSING_OBJECT:
            return await self._gone_or_forbidden(
                self._owner(media_id),
                account.access_token,
                error,
                "Instagram says the media does not exist and the token still works, so it "
                "was already deleted",
            )
        return graph.classify(error, resp.headers)
