"""Sandbox social platforms: Meta's Graph API (Facebook Page posts, Instagram media) and
LinkedIn's Posts API, over real HTTP, answering with the bodies docs/platforms.md
documents. They keep which posts exist, count every successful delete (a post must never get
two), record every call, and throw the platforms' errors on request.

Served under one base URL: Graph at {base}/graph, LinkedIn at {base}/linkedin.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from daemon.platforms.registry import PLATFORM_NAMES, REGISTRY
from daemon.sandbox.faults import Fault, FaultQueue, FaultRates, fault_response

PostKind = Literal["post", "story", "carousel_slide"]


@dataclass
class SandboxPost:
    platform: str  # a registered platform's name
    id: str
    owner_token: str
    kind: PostKind = "post"
    deleted: bool = False
    listing_key: str | None = None  # the sandbox's own bookkeeping: which listing it advertises
    deleted_at: float | None = None  # time.monotonic() of its deletion: for latency figures


@dataclass
class Call:
    platform: str
    method: str
    path: str
    token: str | None
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


@dataclass
class SandboxPlatforms:
    posts: dict[str, SandboxPost] = field(default_factory=dict)
    # token -> state: "ok", "expired" or "revoked"
    tokens: dict[str, str] = field(default_factory=dict)
    linkedin_refresh: dict[str, str] = field(default_factory=dict)  # refresh token -> client id
    # How long LinkedIn's token endpoint takes to answer (a test holds the database meanwhile).
    linkedin_refresh_seconds: float = 0.0
    # The `expires_in` of the tokens it gives (60 days, as LinkedIn's): a test sends others.
    linkedin_token_lifetime: Any = 5_184_000
    faults: dict[str, FaultQueue] = field(
        default_factory=lambda: {p: FaultQueue() for p in PLATFORM_NAMES}
    )
    calls: list[Call] = field(default_factory=list)
    weather: FaultRates = field(default_factory=FaultRates)
    successful_deletes: Counter[str] = field(default_factory=Counter)
    # DELETEs of a post already deleted ("already gone"): a repeat some platforms count
    # against the app.
    repeated_deletes: Counter[str] = field(default_factory=Counter)

    def publish(
        self,
        platform: str,
        post_id: str,
        token: str,
        kind: PostKind = "post",
        listing_key: str | None = None,
    ) -> SandboxPost:
        self.tokens.setdefault(token, "ok")
        post = SandboxPost(platform, post_id, token, kind, listing_key=listing_key)
        self.posts[post_id] = post
        return post

    def exists(self, post_id: str) -> bool:
        post = self.posts.get(post_id)
        return post is not None and not post.deleted

    def inject(self, platform: str, fault: Fault) -> None:
        self.faults[platform].add(fault)

    def calls_to(self, platform: str, method: str = "DELETE") -> list[Call]:
        return [c for c in self.calls if c.platform == platform and c.method == method]


def graph_error(
    code: int,
    subcode: int | None = None,
    status: int = 400,
    transient: bool = False,
    message: str = "sandbox Graph error",
) -> str:
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "SANDBOX",
        "is_transient": transient,
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return json.dumps({"error": error})


def graph_fault(
    code: int,
    subcode: int | None = None,
    status: int = 400,
    times: int = 1,
    transient: bool = False,
    headers: dict[str, str] | None = None,
) -> Fault:
    return Fault(
        "status",
        status=status,
        times=times,
        body=graph_error(code, subcode, status, transient),
        headers=headers,
    )


def linkedin_error(status: int, code: str, message: str = "sandbox LinkedIn error") -> str:
    return json.dumps(
        {"status": status, "serviceErrorCode": 65601, "code": code, "message": message}
    )


def build_platforms_app(state: SandboxPlatforms) -> Starlette:
    def token_of(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            return auth.removeprefix("Bearer ").strip()
        return request.query_params.get("access_token")

    def record(platform: str, request: Request, token: str | None) -> None:
        state.calls.append(
            Call(platform, request.method, request.url.path, token, dict(request.headers))
        )

    async def faulted(platform: str) -> Response | None:
        fault = state.faults[platform].take() or state.weather.roll()
        if fault is None:
            return None
        if fault.kind == "slow":
            await anyio.sleep(fault.seconds)
        return fault_response(fault)

    def graph_json(body: str, status: int = 400) -> Response:
        return Response(body, status_code=status, media_type="application/json")

    async def graph_object(request: Request) -> Response:
        object_id = request.path_params["object_id"]
        token = token_of(request)
        post = state.posts.get(object_id)
        facebook_pages = {
            p.id.split("_")[0] for p in state.posts.values() if p.platform == "facebook"
        }
        if post is not None:
            platform = post.platform
        else:
            platform = (
                "facebook" if "_" in object_id or object_id in facebook_pages else "instagram"
            )
        record(platform, request, token)
        if (answer := await faulted(platform)) is not None:
            return answer
        if token is None or state.tokens.get(token) != "ok":
            return graph_json(graph_error(190, 463, message="Error validating access token"))
        if request.method == "GET" and post is not None and post.owner_token == token:
            if post.deleted:
                return graph_json(graph_error(100, 33))
            return JSONResponse({"id": object_id})
        if request.method == "GET":  # the token check after 100/33
            known_pages = {
                p.id.split("_")[0] for p in state.posts.values() if p.owner_token == token
            }
            if object_id == "me" or object_id in known_pages:
                return JSONResponse({"id": object_id})
            return graph_json(graph_error(100, 33))
        if post is not None and post.deleted:
            state.repeated_deletes[object_id] += 1
        if post is None or post.deleted or post.owner_token != token:
            return graph_json(
                graph_error(
                    100,
                    33,
                    message=(
                        f"Unsupported delete request. Object with ID '{object_id}' does not "
                        "exist, cannot be loaded due to missing permissions, or does not "
                        "support this operation"
                    ),
                )
            )
        if post.kind == "story":
            return JSONResponse({"success": False})
        if post.kind == "carousel_slide":
            return graph_json(graph_error(-1, 2207073, message="Media Type Not Supported"))
        post.deleted, post.deleted_at = True, time.monotonic()
        state.successful_deletes[object_id] += 1
        if post.platform == "instagram":
            return JSONResponse({"success": True, "deleted_id": object_id})
        return JSONResponse({"success": True})

    async def linkedin_post(request: Request) -> Response:
        urn = unquote(request.path_params["urn"])
        token = token_of(request)
        record("linkedin", request, token)
        if (answer := await faulted("linkedin")) is not None:
            return answer
        if request.headers.get("x-restli-protocol-version") != "2.0.0" or not request.headers.get(
            "linkedin-version"
        ):
            return graph_json(
                linkedin_error(
                    400, "MISSING_HEADERS", "LinkedIn-Version and X-Restli-Protocol-Version"
                )
            )
        token_state = state.tokens.get(token or "")
        if token_state == "expired":
            return graph_json(linkedin_error(401, "EXPIRED_ACCESS_TOKEN"), 401)
        if token_state != "ok":
            return graph_json(linkedin_error(401, "REVOKED_ACCESS_TOKEN"), 401)
        post = state.posts.get(urn)
        if post is not None and post.deleted and request.method == "DELETE":
            state.repeated_deletes[urn] += 1
        if post is None or post.deleted:
            return graph_json(linkedin_error(404, "NOT_FOUND"), 404)
        if post.owner_token != token and state.tokens.get(post.owner_token) != "expired":
            return graph_json(linkedin_error(403, "ACCESS_DENIED"), 403)
        if request.method == "GET":
            return JSONResponse({"id": urn, "lifecycleState": "PUBLISHED"})
        post.deleted, post.deleted_at = True, time.monotonic()
        state.successful_deletes[urn] += 1
        return Response(status_code=204)

    async def linkedin_token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        record("linkedin", request, None)
        await anyio.sleep(state.linkedin_refresh_seconds)
        client = state.linkedin_refresh.get(form.get("refresh_token", ""))
        if (
            form.get("grant_type") != "refresh_token"
            or client is None
            or client != form.get("client_id")
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        token = secrets.token_hex(16)
        state.tokens[token] = "ok"
        # The new token may delete what the old one owned.
        for post in state.posts.values():
            if post.platform == "linkedin" and state.tokens.get(post.owner_token) == "expired":
                post.owner_token = token
        return JSONResponse({"access_token": token, "expires_in": state.linkedin_token_lifetime})

    async def admin_publish(request: Request) -> Response:
        """Bulk set-up for benchmarks: [{"platform", "id", "token"}, ...]."""
        items = await request.json()
        for item in items:
            state.publish(item["platform"], item["id"], item["token"])
        return JSONResponse({"published": len(items)})

    async def admin_stats(request: Request) -> Response:
        return JSONResponse(
            {
                "successful_deletes": sum(state.successful_deletes.values()),
                "posts_deleted_twice": sum(1 for n in state.successful_deletes.values() if n > 1),
                "repeated_deletes": sum(state.repeated_deletes.values()),
                "calls": len(state.calls),
            }
        )

    return Starlette(
        routes=[
            Route("/admin/publish", admin_publish, methods=["POST"]),
            Route("/admin/stats", admin_stats, methods=["GET"]),
            Route("/graph/{version}/{object_id}", graph_object, methods=["DELETE", "GET"]),
            Route("/linkedin/rest/posts/{urn:path}", linkedin_post, methods=["DELETE", "GET"]),
            Route("/linkedin/oauth/v2/accessToken", linkedin_token, methods=["POST"]),
        ]
    )


# Where each setting that says where a platform's API is points here (the routes above).
SANDBOX_PATHS = {
    "graph_url": "/graph",
    "linkedin_api_url": "/linkedin",
    "linkedin_oauth_url": "/linkedin",
}


def sandbox_urls(base_url: str) -> dict[str, str]:
    """Each registered platform's URL settings (`graph_url`...), pointing at these sandbox
    platforms."""
    names = sorted({name for entry in REGISTRY.values() for name in entry.url_settings})
    if missing := [name for name in names if name not in SANDBOX_PATHS]:
        raise LookupError(
            f"the sandbox stands in for no {', '.join(missing)}: add to SANDBOX_PATHS"
        )
    return {name: f"{base_url}{SANDBOX_PATHS[name]}" for name in names}


def platform_env(base_url: str) -> dict[str, str]:
    """MLS_SYNC_PLATFORMS__* settings that point mls-sync at these sandbox platforms."""
    return {
        f"MLS_SYNC_PLATFORMS__{name.upper()}": url for name, url in sandbox_urls(base_url).items()
    }
