"""The embedded sandbox: a sandbox MLS and sandbox social platforms on loopback, wired into the
database as ordinary connections, accounts and posts, so that a newcomer sees the real engine
work without credentials or network.

The servers start first (the runtime must know their URLs), then `wire` records the sandbox
connections, listings, accounts and posts. The market and the platforms' posts are kept in a
file beside the database, so successive runs continue one story.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from daemon.composition import Progress, Runtime, open_runtime
from daemon.config import SandboxSettings, Settings
from daemon.encryption import SecretBox
from daemon.enums import EventType, KeyFilter
from daemon.ops import push
from daemon.platforms.registry import PLATFORM_NAMES, REGISTRY, Platform
from daemon.sandbox import market
from daemon.sandbox.mls_server import TOP_IS_TOTAL_PATH, SandboxMls, build_mls_app
from daemon.sandbox.platforms_server import (
    SandboxPlatforms,
    build_platforms_app,
    sandbox_urls,
)
from daemon.sandbox.pusher import SandboxPusher
from daemon.sandbox.smtp_sink import SmtpSink, smtp_sink_running
from daemon.serving import serving
from daemon.specs import AccountSpec, ConnectionSpec, ListingSpec, PostSpec, UserSpec
from daemon.state_dir import make_folder
from daemon.store import accounts, connections, listings, posts, users
from daemon.store.database import Database
from daemon.timestamps import iso, parse_iso, utcnow

STATE_FILE = "sandbox-mls.json"
MAIL_FILE = "sandbox-mail.jsonl"  # what the sandbox's SMTP sink received, a line a message
# One connection of each kind, so the demo exercises every query form.
FLAVOURS: list[dict[str, Any]] = [
    {"mode": "by_key", "key_filter": KeyFilter.IN},
    {"mode": "by_key", "key_filter": KeyFilter.OR, "batch_size": 5},
    # Incremental against a server that reads `$top` as a total (docs/mls-paging.md).
    {
        "mode": "incremental",
        "key_filter": KeyFilter.IN,
        "overlap_seconds": 60,
        "server_path": TOP_IS_TOTAL_PATH,
    },
    # The change log (docs/mls-reso.md), read every 10 s between cycles, and pushed to the
    # daemon (`mls-sync run`) by the sandbox MLS, faults and all (daemon/sandbox/pusher.py).
    {"mode": "events", "key_filter": KeyFilter.IN, "poll_seconds": 10, "push": True},
]
PUSH_EVERY_SECONDS = 5.0  # the pusher's tick: it moves one of its listings and pushes
# Each sandbox agent has one account on each platform. Tokens are made up per account and
# stored encrypted like real ones. Instagram's is connected through Facebook Login, the way
# whose API can delete.
CONNECTED_VIA: dict[str, str] = {Platform.INSTAGRAM: "facebook_login"}
POSTED_SHARE = 0.4  # the share of sandbox listings that were advertised on social media
# What a sandbox agent is e-mailed: what a person must know or do.
AGENT_NOTIFY_EVENTS = [
    EventType.LISTING_SOLD,
    EventType.POST_NEEDS_PERSON,
    EventType.ACCOUNT_NEEDS_REAUTH,
    EventType.CONNECTION_NEEDS_REAUTH,
]


@dataclass
class SandboxSession:
    mls: SandboxMls
    platforms: SandboxPlatforms
    mls_url: str
    platforms_url: str
    rng: random.Random
    state_path: Path
    sandbox: SandboxSettings
    mail: SmtpSink
    smtp_port: int
    # Connections the sandbox MLS pushes to: id -> (push token, the listings it tracks).
    pushed_to: dict[str, tuple[str, list[str]]] = field(default_factory=dict)

    def move_market(self, count: int, sparing: Collection[str] = ()) -> list[market.Move]:
        moves = market.move(self.mls, count, self.rng, sparing=sparing)
        save(self, self.state_path)
        return moves

    # -- the composition root's Environment ----------------------------------------------

    def describe(self) -> dict[str, str]:
        return {
            "MLS": self.mls_url,
            "platforms": self.platforms_url,
            "SMTP": f"smtp://127.0.0.1:{self.smtp_port}",
        }

    def pin(self, settings: Settings) -> Settings:
        return self.settings_for(settings)

    def before_cycle(self) -> list[str]:
        return [
            f"{m.key}: {m.before} -> {m.after}"
            for m in self.move_market(self.sandbox.moves_per_cycle)
        ]

    async def feed_pushes(self, daemon_url: str) -> None:
        """Runs the sandbox MLS's push feed to the daemon at `daemon_url`, for each
        connection that takes push; until cancelled."""
        async with anyio.create_task_group() as tg:
            for cid, (token, keys) in self.pushed_to.items():
                url = f"{daemon_url}/v1/mls-connections/{cid}/entity-events"
                pusher = SandboxPusher(self.mls, url, token, keys, self.rng)
                tg.start_soon(pusher.run, PUSH_EVERY_SECONDS)

    def settings_for(self, settings: Settings) -> Settings:
        """The settings with the platform URLs pointing at the sandbox platforms, and e-mail
        going to the sandbox's SMTP sink."""
        update = sandbox_urls(self.platforms_url)
        email = settings.email.model_copy(
            update={
                "enabled": True,
                "smtp_host": "127.0.0.1",
                "smtp_port": self.smtp_port,
                "security": "none",
                "username": "",
                "from_address": "mls-sync@sandbox.invalid",
            }
        )
        return settings.model_copy(
            update={
                "platforms": settings.platforms.model_copy(update=update),
                "email": email,
            }
        )

    async def wire(self, db: Database, box: SecretBox) -> None:
        """(Re)points the sandbox connections at this run's servers and records the sandbox
        listings, accounts and posts."""
        now = iso(utcnow())
        for agent in range(self.sandbox.agents):
            await users.upsert(db, _agent_user(agent), now)
        owners = _owners(self.sandbox)
        for i, keys in enumerate(_keys(self.sandbox)):
            cid = connection_id(i)
            client_id, secret = f"{cid}-client", f"{cid}-secret"
            self.mls.add_client(client_id, secret)
            flavour = dict(FLAVOURS[i % len(FLAVOURS)])
            path = flavour.pop("server_path", "")
            pushes = flavour.pop("push", False)
            spec = ConnectionSpec(
                id=cid,
                name=f"Sandbox MLS #{i + 1}",
                base_url=f"{self.mls_url}/{path}".rstrip("/"),
                auth_kind="oauth2",
                token_url=f"{self.mls_url}/oauth/token",
                client_id=client_id,
                scope="api",
                select_mlg_can_view=True,
                rate_per_second=50.0,
                **flavour,
            )
            await connections.upsert(db, spec, box.encrypt(secret), now)
            specs = [
                ListingSpec(id=f"L-{k}", connection_id=cid, listing_key=k, user_id=owners[k])
                for k in keys
            ]
            await listings.add_many(db, specs, now)
            if pushes:
                token = push.new_push_token()  # a new one each run: only its hash is stored
                await connections.set_push_token(db, cid, push.push_token_sha256(token), now)
                self.pushed_to[cid] = (token, keys)
        for agent in range(self.sandbox.agents):
            for platform in PLATFORM_NAMES:
                account_id = _account(agent, platform)
                token = _token(account_id)
                self.platforms.tokens.setdefault(token, "ok")
                spec_a = AccountSpec.model_validate(
                    {
                        "id": account_id,
                        "user_id": _agent_id(agent),
                        "platform": platform,
                        "connected_via": CONNECTED_VIA.get(platform),
                    }
                )
                await accounts.upsert(db, spec_a, box.encrypt(token), None, None, now)
        await _record_posts(db, self.platforms, now)


def connection_id(i: int) -> str:
    return f"sandbox-{i + 1}"


@asynccontextmanager
async def sandbox_running(settings: Settings) -> AsyncIterator[SandboxSession]:
    sandbox = settings.sandbox
    state_path = settings.database.path.parent / STATE_FILE
    make_folder(state_path.parent, state_path)
    mls = SandboxMls(max_page_size=100)
    platforms = SandboxPlatforms()
    rng = random.Random(sandbox.seed)
    keys = [k for ks in _keys(sandbox) for k in ks]
    if not load(mls, platforms, state_path):
        market.seed(mls, keys, rng)
        _publish(platforms, keys, sandbox.agents, rng)
        _sold_with_a_story(mls, platforms)
    else:  # a market saved with fewer connections: the new ones' listings join it
        market.seed(mls, [k for k in keys if k not in mls.records], rng)
    # Each run continues the story differently, yet repeatably for the same saved market.
    rng.seed(f"{sandbox.seed}:{iso(mls.last_stamp)}")
    sink = SmtpSink(log_path=state_path.parent / MAIL_FILE)
    async with (
        serving(build_mls_app(mls)) as mls_url,
        serving(build_platforms_app(platforms)) as platforms_url,
    ):
        with smtp_sink_running(sink) as smtp_port:
            session = SandboxSession(
                mls, platforms, mls_url, platforms_url, rng, state_path, sandbox, sink, smtp_port
            )
            save(session, state_path)
            yield session
            save(session, state_path)


def _keys(sandbox: SandboxSettings) -> list[list[str]]:
    per = max(sandbox.listings // sandbox.connections, 1)
    return [[market.listing_key(c + 1, n) for n in range(per)] for c in range(sandbox.connections)]


def _agent_id(agent: int) -> str:
    return f"sandbox-agent-{agent + 1}"


def _agent_user(agent: int) -> UserSpec:
    return UserSpec(
        id=_agent_id(agent),
        display_name=f"Sandbox agent {agent + 1}",
        email=f"agent{agent + 1}@sandbox.invalid",  # RFC 2606: never a real mailbox
        notify_events=[str(e) for e in AGENT_NOTIFY_EVENTS],
    )


def _agent_of(n: int, agents: int) -> int:
    """The agent of the n-th listing (in key order): whose accounts publish its posts."""
    return n % agents


def _owners(sandbox: SandboxSettings) -> dict[str, str]:
    """Each listing's user: its agent, so a sold listing's user owns its posts' accounts."""
    keys = sorted(k for ks in _keys(sandbox) for k in ks)
    return {key: _agent_id(_agent_of(n, sandbox.agents)) for n, key in enumerate(keys)}


def _publish(platforms: SandboxPlatforms, keys: list[str], agents: int, rng: random.Random) -> None:
    """Some listings were advertised by their agent: a post on each platform."""
    for n, key in enumerate(sorted(keys)):
        if rng.random() >= POSTED_SHARE:
            continue
        for platform in PLATFORM_NAMES:
            account_id = _account(_agent_of(n, agents), platform)
            platforms.publish(platform, _post_id(platform, n), _token(account_id), listing_key=key)


def _sold_with_a_story(mls: SandboxMls, platforms: SandboxPlatforms) -> None:
    """One advertised listing sold before the daemon first looked, and its agent had also
    put it in a Facebook story, which no API deletes: the first cycle takes its other posts
    down and leaves the story to a person (`mls-sync manual-actions`, the status page)."""
    posted = sorted({p.listing_key for p in platforms.posts.values() if p.listing_key})
    if not posted:
        return
    key = posted[0]
    mls.set_status(key, "Closed")
    for post in platforms.posts.values():
        if post.listing_key == key and post.platform == Platform.FACEBOOK:
            post.kind = "story"


def _account(agent: int, platform: str) -> str:
    return f"sandbox-agent{agent + 1}-{platform}"


def _token(account_id: str) -> str:
    return f"{account_id}-token"


def _post_id(platform: str, n: int) -> str:
    return REGISTRY[platform].post_id.numbered(n)


async def _record_posts(db: Database, platforms: SandboxPlatforms, now: str) -> None:
    """The app recorded each sandbox post when it published it; so do we, once."""
    for post in platforms.posts.values():
        key = post.listing_key
        if key is None:
            continue
        spec = PostSpec(
            id=f"{post.platform}-{key}",
            listing_id=f"L-{key}",
            account_id=post.owner_token.removesuffix("-token"),
            platform_post_id=post.id,
        )
        if await posts.get(db, spec.id) is None:
            await posts.add(db, spec, now)


def save(session: SandboxSession, path: Path) -> None:
    """Written to a temporary file and renamed: a crash leaves the old file or the new one."""
    doc = {
        "records": [
            {**r, "ModificationTimestamp": iso(r["ModificationTimestamp"])}
            if isinstance(r.get("ModificationTimestamp"), datetime)
            else r
            for r in session.mls.records.values()
        ],
        "posts": [
            {
                "platform": p.platform,
                "id": p.id,
                # The account, not its token: a sandbox token follows from its account's name.
                "account": p.owner_token.removesuffix("-token"),
                "deleted": p.deleted,
                "listing_key": p.listing_key,
                "kind": p.kind,
            }
            for p in session.platforms.posts.values()
        ],
        # The change log goes on from where it was: a consumer's sequence stays valid.
        "entity_events": session.mls.entity_events,
        "next_sequence": session.mls.next_sequence,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)


def load(mls: SandboxMls, platforms: SandboxPlatforms, path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return False  # no sandbox yet, or a damaged file: seed a new one
    for rec in doc.get("records", []):
        if isinstance(rec.get("ModificationTimestamp"), str):
            rec["ModificationTimestamp"] = parse_iso(rec["ModificationTimestamp"])
            mls.last_stamp = max(mls.last_stamp, rec["ModificationTimestamp"])
        mls.records[rec["ListingKey"]] = rec
    mls.entity_events = list(doc.get("entity_events", []))
    mls.next_sequence = int(doc.get("next_sequence", mls.next_sequence))
    for raw in doc.get("posts", []):
        post = platforms.publish(
            raw["platform"],
            raw["id"],
            _token(raw["account"]),
            kind=raw.get("kind", "post"),
            listing_key=raw.get("listing_key"),
        )
        post.deleted = raw["deleted"]
    return bool(mls.records)


@asynccontextmanager
async def runtime_for(
    settings: Settings, on_progress: Progress = lambda cid, done, total: None
) -> AsyncIterator[tuple[Runtime, SandboxSession]]:
    """The sandbox's `Opener` (daemon/composition.py), for a config with [sandbox] enabled
    (daemon/main.py chooses it then): the sandbox servers start first and every URL points
    at them, so nothing started from a sandbox config can reach a real MLS or social
    platform."""
    async with (
        sandbox_running(settings) as sandbox,
        open_runtime(sandbox.settings_for(settings), on_progress=on_progress) as rt,
    ):
        await sandbox.wire(rt.db, rt.require_box())
        yield rt, sandbox
