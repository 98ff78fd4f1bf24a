"""Meta's Graph API: reading its error bodies, shared by the Facebook and Instagram adapters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, Field

from daemon import foreign_json
from daemon.foreign_text import storable
from daemon.platforms.outcomes import (
    AccountCredentials,
    AlreadyGone,
    AuthFailed,
    NeedsPerson,
    Outcome,
    Pace,
    PostTarget,
    RetryLater,
    no_pace,
)
from daemon.platforms.settings import ApiUrl

THROTTLED = frozenset({4, 17, 32, 613, 80001, 80002, 341})
TRANSIENT = frozenset({1, 2})
TOKEN_INVALID = 190
TEMPORARILY_BLOCKED = 368
PERMISSION = frozenset({10, *range(200, 300)})
MISSING_OBJECT = (100, 33)
CAROUSEL_SLIDE_SUBCODE = 2207073


class GraphSettings(BaseModel):
    """Where Meta's Graph API is (for Facebook and Instagram). The version is a setting, not
    code: Meta retires old ones on a schedule."""

    graph_url: ApiUrl = "https://graph.facebook.com"
    graph_version: str = Field(default="v25.0", pattern=r"^v[0-9]+\.[0-9]+$")


@dataclass(frozen=True)
class GraphError:
    status: int
    code: int | None
    subcode: int | None
    message: str
    transient: bool

    def describe(self) -> str:
        sub = f"/{self.subcode}" if self.subcode is not None else ""
        return f"Graph API error {self.code}{sub} (HTTP {self.status}): {self.message}"


def read_error(resp: httpx.Response) -> GraphError:
    try:
        body: Any = foreign_json.loads(resp.content)
    except ValueError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return GraphError(
            resp.status_code, None, None, storable(resp.text, 200) or resp.reason_phrase, False
        )
    return GraphError(
        status=resp.status_code,
        code=_int(err.get("code")),
        subcode=_int(err.get("error_subcode")),
        message=storable(str(err.get("message", "")), 300),
        transient=err.get("is_transient") is True,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def classify(error: GraphError, headers: httpx.Headers) -> Outcome:
    """Every Graph error but 100/33 (which needs a check call) and the Instagram carousel slide
    (which the Instagram adapter knows) maps to an outcome by its code alone."""
    text = error.describe()
    if error.code == TOKEN_INVALID:
        return AuthFailed(f"{text}; the account must log in again")
    if error.code in THROTTLED:
        return RetryLater(f"throttled: {text}", _regain_access_seconds(headers), refused=True)
    if error.code in TRANSIENT or error.transient or error.code == TEMPORARILY_BLOCKED:
        return RetryLater(text)
    if error.code in PERMISSION:
        return NeedsPerson(f"permission missing: {text}")
    if error.status == 429:
        return RetryLater(text, refused=True)
    if error.status >= 500:
        return RetryLater(text)
    return NeedsPerson(text)


def _regain_access_seconds(headers: httpx.Headers) -> float | None:
    """X-Business-Use-Case-Usage: {"<id>": [{"estimated_time_to_regain_access": minutes}]}."""
    raw = headers.get("x-business-use-case-usage")
    if not raw:
        return None
    try:
        usage = foreign_json.loads(raw)
        minutes = max(
            float(entry.get("estimated_time_to_regain_access", 0))
            for entries in usage.values()
            for entry in entries
        )
    except (ValueError, TypeError, AttributeError, OverflowError):  # overflow: a huge integer
        return None
    return minutes * 60 if minutes > 0 else None


def success_body(resp: httpx.Response) -> dict[str, Any] | None:
    try:
        body = foreign_json.loads(resp.content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class GraphAdapter:
    """What the Facebook and Instagram adapters share: the DELETE on the Graph API, and the
    check that tells "already deleted" from "not allowed" after an error 100/33."""

    name = "Graph API"

    def __init__(
        self, http: httpx.AsyncClient, graph_url: str, version: str, pace: Pace = no_pace
    ) -> None:
        self.http = http
        self.base = f"{graph_url}/{version}"
        self.pace = pace

    async def _delete(self, object_id: str, token: str) -> httpx.Response | RetryLater:
        try:
            return await self.http.delete(f"{self.base}/{object_id}", headers=_bearer(token))
        except httpx.HTTPError as exc:
            return RetryLater(f"{self.name} unreachable: {type(exc).__name__}")

    async def check(self, post: PostTarget, account: AccountCredentials) -> Outcome | None:
        """Before a second DELETE (the first one's answer was never recorded): None when the
        post is still there, else what it came to. A read, so it deletes nothing."""
        try:
            resp = await self.http.get(
                f"{self.base}/{post.platform_post_id}",
                params={"fields": "id"},
                headers=_bearer(account.access_token),
            )
        except httpx.HTTPError as exc:
            return RetryLater(f"{self.name} unreachable for the check: {type(exc).__name__}")
        if resp.status_code == 200:
            return None
        error = read_error(resp)
        if (error.code, error.subcode) == MISSING_OBJECT:
            return await self._gone_or_forbidden(
                self._owner(post.platform_post_id),
                account.access_token,
                error,
                f"{self.name} no longer has it: the DELETE sent before, whose answer was "
                "never recorded, went through",
            )
        return classify(error, resp.headers)

    def _owner(self, object_id: str) -> str:
        """What the same token must still read for a missing object to count as gone."""
        return "me"

    async def _gone_or_forbidden(
        self, check_object: str, token: str, error: GraphError, gone_note: str
    ) -> Outcome:
        """100/33 means "does not exist" OR "no permission". Only if the same token can still
        read `check_object` is the post really gone; otherwise it is a permission problem."""
        await self.pace()
        try:
            check = await self.http.get(
                f"{self.base}/{check_object}", params={"fields": "id"}, headers=_bearer(token)
            )
        except httpx.HTTPError as exc:
            return RetryLater(f"{self.name} unreachable for the 100/33 check: {type(exc).__name__}")
        if check.status_code == 200:
            return AlreadyGone(gone_note)
        return NeedsPerson(
            f"{error.describe()}, and the token cannot read {check_object}: a permission "
            "problem, not a deleted post"
        )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
