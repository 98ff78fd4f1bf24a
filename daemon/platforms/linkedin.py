"""LinkedIn posts: DELETE /rest/posts/{url-encoded urn} (and GET, to check before a second
DELETE), with one token refresh on expiry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field

from daemon import foreign_json
from daemon.foreign_text import storable
from daemon.platforms.outcomes import (
    AccountCredentials,
    AlreadyGone,
    AuthFailed,
    Deleted,
    NeedsPerson,
    Outcome,
    Pace,
    PostTarget,
    RetryLater,
    no_pace,
)
from daemon.platforms.settings import ApiUrl

# Matched by name, not number. Only an expired token is worth a refresh; REVOKED_ACCESS_TOKEN
# and any other 401 mean the member must log in again.
EXPIRED = "EXPIRED_ACCESS_TOKEN"

# Called with (account id, new access token, its lifetime in seconds) to store it encrypted.
TokenSaver = Callable[[str, str, float | None], Awaitable[None]]


class LinkedInSettings(BaseModel):
    """Where LinkedIn's APIs are. The version (the LinkedIn-Version header, YYYYMM) is a
    setting, not code: LinkedIn sunsets versions about a year after release."""

    linkedin_api_url: ApiUrl = "https://api.linkedin.com"
    linkedin_oauth_url: ApiUrl = "https://www.linkedin.com"
    linkedin_version: str = Field(default="202510", pattern=r"^[0-9]{6}$")
    linkedin_rate_per_second: float = Field(default=2.0, gt=0, le=1000)


class LinkedInAdapter:
    platform = "linkedin"

    def __init__(
        self,
        http: httpx.AsyncClient,
        api_url: str,
        oauth_url: str,
        version: str,
        save_token: TokenSaver,
        pace: Pace = no_pace,
    ) -> None:
        self.http = http
        self.api_url = api_url
        self.oauth_url = oauth_url
        self.version = version
        self.save_token = save_token
        self.pace = pace

    async def delete(self, post: PostTarget, account: AccountCredentials) -> Outcome:
        resp = await self._call("DELETE", post, account)
        return classify(resp) if isinstance(resp, httpx.Response) else resp

    async def check(self, post: PostTarget, account: AccountCredentials) -> Outcome | None:
        """Before a second DELETE (the first one's answer was never recorded): None when the
        post is still there, else what it came to. A read, so it deletes nothing."""
        resp = await self._call("GET", post, account)
        if not isinstance(resp, httpx.Response):
            return resp
        if resp.status_code == 200:
            return None
        if resp.status_code == 404:
            return AlreadyGone(
                "LinkedIn no longer has it (404): the DELETE sent before, whose answer was "
                "never recorded, went through"
            )
        return classify(resp)

    async def _call(
        self, method: str, post: PostTarget, account: AccountCredentials
    ) -> httpx.Response | Outcome:
        """One request, with one token refresh if the token expired."""
        resp = await self._send(method, post, account)
        if isinstance(resp, RetryLater):
            return resp
        if resp.status_code == 401 and _error_code(resp) == EXPIRED and account.refresh_token:
            refreshed = await self._refresh(account)
            if refreshed is not None:
                return refreshed
            await self.pace()
            return await self._send(method, post, account)
        return resp

    async def _send(
        self, method: str, post: PostTarget, account: AccountCredentials
    ) -> httpx.Response | RetryLater:
        url = f"{self.api_url}/rest/posts/{quote(post.platform_post_id, safe='')}"
        headers = {
            "Authorization": f"Bearer {account.access_token}",
            "LinkedIn-Version": self.version,
            "X-Restli-Protocol-Version": "2.0.0",
        }
        try:
            return await self.http.request(method, url, headers=headers)
        except httpx.HTTPError as exc:
            return RetryLater(f"LinkedIn unreachable: {type(exc).__name__}")

    async def _refresh(self, account: AccountCredentials) -> Outcome | None:
        """One refresh with the refresh token; on success the new token is stored (encrypted)
        and used from now on. Returns an outcome only when the refresh itself failed."""
        form = {
            "grant_type": "refresh_token",
            "refresh_token": account.refresh_token or "",
            "client_id": account.client_id or "",
            "client_secret": account.client_secret or "",
        }
        try:
            resp = await self.http.post(f"{self.oauth_url}/oauth/v2/accessToken", data=form)
        except httpx.HTTPError as exc:
            return RetryLater(f"LinkedIn token refresh unreachable: {type(exc).__name__}")
        if resp.status_code >= 500:
            return RetryLater(f"LinkedIn token refresh: HTTP {resp.status_code}")
        try:
            body = foreign_json.loads(resp.content)
            token = body["access_token"] if resp.status_code == 200 else None
        except (ValueError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            return AuthFailed(
                f"the access token expired and the refresh was refused "
                f"(HTTP {resp.status_code}): the account must log in again"
            )
        account.access_token = token
        await self.save_token(account.id, token, _lifetime(body.get("expires_in")))
        return None


# Longer than any token LinkedIn gives (access tokens 60 days, refresh tokens a year).
MAX_TOKEN_LIFETIME_SECONDS = 366 * 86_400


def _lifetime(expires_in: Any) -> float | None:
    """A new token's `expires_in` as seconds, when it is a number of them a token may live;
    anything else (text, a negative, a figure past any date, which would overflow the date
    arithmetic) is no expiry to keep. Compared before it is made a float: a huge whole
    number does not fit one."""
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        return None
    return float(expires_in) if 0 < expires_in <= MAX_TOKEN_LIFETIME_SECONDS else None


def _error_code(resp: httpx.Response) -> str | None:
    """LinkedIn's `code` string (EXPIRED_ACCESS_TOKEN...): matched by name, not number."""
    try:
        body = foreign_json.loads(resp.content)
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def classify(resp: httpx.Response) -> Outcome:
    """A LinkedIn answer as an outcome, by its status alone (a 401 names its `code`). An
    expired token is refreshed before an answer gets here."""
    status = resp.status_code
    if status == 204:
        return Deleted()
    if status == 404:
        return AlreadyGone("LinkedIn has no such post (404): already deleted")
    if status == 401:
        code = _error_code(resp) or "401"
        return AuthFailed(f"LinkedIn refused the token ({code}): the account must log in again")
    if status == 403:
        return NeedsPerson(
            f"LinkedIn refused the delete (403, permission): {storable(resp.text, 200)}"
        )
    if status == 429:
        return RetryLater("LinkedIn answered HTTP 429 (throttled)", refused=True)
    if status >= 500:
        return RetryLater(f"LinkedIn answered HTTP {status}")
    return NeedsPerson(f"LinkedIn answered HTTP {status}: {storable(resp.text, 200)}")
