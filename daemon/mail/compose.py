"""What each notification says, as plain text: a subject and a body. Pure: every input is the
data of events and the posts' rows as plain values, so each message is tested through tables.

Messages hold what a person needs to act (listing keys, statuses, links, what to do) and never
a secret: events hold none, and a post's last error is left out (a platform's answer is not
ours to forward).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.enums import EventType, PostStatus
from daemon.platforms.links import post_link

Data = Mapping[str, Any]


@dataclass(frozen=True)
class Message:
    subject: str
    body: str

    def __post_init__(self) -> None:
        # A subject is one header line: an MLS value with a line break or a control
        # character in it must not end it (or fail the message).
        line = "".join(c if c.isprintable() else " " for c in self.subject)
        object.__setattr__(self, "subject", " ".join(line.split())[:200])


@dataclass(frozen=True)
class PostState:
    """A post of a sold listing as it stands when its message is composed."""

    platform: str
    platform_post_id: str
    status: str
    link: str | None
    next_attempt_at: str | None


@dataclass(frozen=True)
class DigestItem:
    type: str
    data: Data
    posts: Sequence[PostState] = ()  # a sale's posts, when the digest is composed


def post_state(post: Data) -> PostState:
    """From a post as an event (or the outbox's query) shows it."""
    platform = str(post.get("platform") or "")
    post_id = str(post.get("platform_post_id") or "")
    return PostState(
        platform,
        post_id,
        str(post.get("status") or ""),
        post_link(platform, post_id, post.get("permalink")),
        post.get("next_attempt_at"),
    )


def sold(data: Data, posts: Sequence[PostState], base_url: str) -> Message:
    listing = data.get("listing") or {}
    key = listing.get("key", "?")
    return Message(f"Sold: listing {key}", "\n".join([*_sold_lines(data, posts, base_url), _FOOT]))


def for_event(event_type: str, data: Data, base_url: str) -> Message:
    """One event's own message (a sale's is `sold`, composed once its run has ended)."""
    if event_type in (EventType.ACCOUNT_NEEDS_REAUTH, EventType.CONNECTION_NEEDS_REAUTH):
        subject, lines = _needs_reauth(event_type, data, base_url)
    elif event_type == EventType.POST_NEEDS_PERSON:
        subject, lines = _needs_person(data, base_url)
    elif event_type.startswith("post."):
        subject, lines = _post(event_type, data, base_url)
    elif event_type == EventType.LISTING_SOLD:
        return sold(data, [], base_url)
    elif event_type.startswith("listing."):
        subject, lines = _listing(event_type, data, base_url)
    elif event_type == EventType.RUN_FINISHED:
        subject, lines = _run(data, base_url)
    else:
        subject, lines = _other(event_type, data, base_url)
    return Message(subject, "\n".join([*lines, _FOOT]))


def digest(day: str, items: Sequence[DigestItem], base_url: str) -> Message:
    """A user's items of one day, grouped by what happened, each as its own message says it."""
    n = len(items)
    plural = "s" if n != 1 else ""
    lines = [f"What mls-sync did for you since the last digest: {n} notification{plural}.", ""]
    for event_type in [*EventType]:
        of_type = [i for i in items if i.type == event_type]
        if not of_type:
            continue
        lines += [f"== {_TITLES.get(event_type, event_type)} ({len(of_type)})", ""]
        for item in of_type:
            if event_type == EventType.LISTING_SOLD:
                body = _sold_lines(item.data, item.posts, base_url)
            else:
                body = for_event(item.type, item.data, base_url).body.split("\n")[:-1]
            lines += [*body, ""]
    return Message(f"Your mls-sync digest for {day} ({n})", "\n".join([*lines, _FOOT]))


_FOOT = "\n-- \nmls-sync. Which events you are sent, and when, is set on your user."
_TITLES = {
    EventType.LISTING_SOLD: "Sold",
    EventType.POST_NEEDS_PERSON: "Posts only you can take down",
    EventType.ACCOUNT_NEEDS_REAUTH: "Accounts to sign in again",
    EventType.CONNECTION_NEEDS_REAUTH: "MLS connections that need new credentials",
    EventType.POST_UNPUBLISHED: "Posts taken down",
    EventType.POST_RETRY_SCHEDULED: "Posts to be tried again",
    EventType.LISTING_STATUS_CHANGED: "Status changes",
    EventType.LISTING_RESTORED: "Back on the market",
    EventType.LISTING_REMOVED: "No longer in the MLS feed",
    EventType.RUN_FINISHED: "Runs",
    EventType.WEBHOOK_ENDPOINT_DISABLED: "Webhook endpoints disabled",
}


def _url(base_url: str, path: object) -> str:
    return f"{base_url}{path}" if isinstance(path, str) and path.startswith("/") else ""


def _sold_lines(data: Data, posts: Sequence[PostState], base_url: str) -> list[str]:
    listing = data.get("listing") or {}
    mls = listing.get("mls_status") or listing.get("mls_standard_status") or "sold"
    when = listing.get("mls_modified_at") or "unknown"
    lines = [
        f"Listing {listing.get('key', '?')} sold (MLS status: {mls}, modified {when}).",
        f"Listing: {_url(base_url, listing.get('url'))}",
    ]
    down = [p for p in posts if p.status == PostStatus.UNPUBLISHED]
    person = [p for p in posts if p.status == PostStatus.MANUAL_REQUIRED]
    retried = [p for p in posts if p.status == PostStatus.PUBLISHED]
    if not posts:
        lines.append("It had no social posts recorded.")
    if down:
        lines += ["", "Taken down:", *(f"  - {_post_line(p)}" for p in down)]
    if person:
        lines += [
            "",
            "Only you can take these down (open each link and delete the post):",
            *(f"  - {_post_line(p)}" for p in person),
        ]
    if retried:
        lines += [
            "",
            "Still up, being tried again:",
            *(f"  - {_post_line(p)} (next try {p.next_attempt_at or 'soon'})" for p in retried),
        ]
    return lines


def _post_line(post: PostState) -> str:
    return f"{post.platform} post {post.platform_post_id}: {post.link or 'no link'}"


def _needs_reauth(event_type: str, data: Data, base_url: str) -> tuple[str, list[str]]:
    what = str(data.get("what_to_do") or "")
    if event_type == EventType.ACCOUNT_NEEDS_REAUTH:
        account = data.get("account") or {}
        name = f"{account.get('platform', '?')} account {account.get('id', '?')}"
        subject, url = f"Sign in again: {name}", account.get("url")
    else:
        connection = data.get("connection") or {}
        name = f"MLS connection {connection.get('name') or connection.get('id', '?')}"
        subject, url = f"New credentials needed: {name}", connection.get("url")
    return subject, [f"{name} needs you.", f"What to do: {what}", f"Record: {_url(base_url, url)}"]


def _needs_person(data: Data, base_url: str) -> tuple[str, list[str]]:
    post, listing = data.get("post") or {}, data.get("listing") or {}
    state = post_state(post)
    return (
        f"Take down by hand: {state.platform} post of listing {listing.get('key', '?')}",
        [
            f"Only you can take down the {state.platform} post {state.platform_post_id} of "
            f"listing {listing.get('key', '?')} (status {listing.get('status', '?')}).",
            f"Open it: {state.link or 'no link'}",
            "What to do: delete the post on the platform, then mark it removed by hand "
            f"({_url(base_url, post.get('url'))}).",
        ],
    )


def _post(event_type: str, data: Data, base_url: str) -> tuple[str, list[str]]:
    post, listing = data.get("post") or {}, data.get("listing") or {}
    state = post_state(post)
    key = listing.get("key", "?")
    if event_type == EventType.POST_UNPUBLISHED:
        subject = f"Taken down: {state.platform} post of listing {key}"
    else:
        subject = f"Will try again: {state.platform} post of listing {key}"
    return subject, [
        f"{subject}.",
        f"Post: {state.link or 'no link'}",
        _url(base_url, post.get("url")),
    ]


def _listing(event_type: str, data: Data, base_url: str) -> tuple[str, list[str]]:
    listing, change = data.get("listing") or {}, data.get("change") or {}
    key = listing.get("key", "?")
    subject = f"Listing {key}: {change.get('from') or 'new'} -> {change.get('to') or 'removed'}"
    mls = listing.get("mls_status") or listing.get("mls_standard_status") or "none"
    return subject, [f"{subject} (MLS status: {mls}).", _url(base_url, listing.get("url"))]


def _run(data: Data, base_url: str) -> tuple[str, list[str]]:
    run = data.get("run") or {}
    subject = f"Run {run.get('id', '?')} ended: {run.get('outcome', '?')}"
    return subject, [f"{subject}.", _url(base_url, run.get("url"))]


def _other(event_type: str, data: Data, base_url: str) -> tuple[str, list[str]]:
    """A type with no wording of its own (a webhook endpoint disabled, ...): what it is
    about, the reason and what to do when the event says them."""
    record = next((v for v in data.values() if isinstance(v, Mapping)), {})
    about = f"{event_type} ({record.get('id', '?')})"
    lines = [f"mls-sync: {about}."]
    if reason := data.get("reason"):
        lines.append(f"Why: {reason}")
    if what := data.get("what_to_do"):
        lines.append(f"What to do: {what}")
    return f"mls-sync: {about}", [*lines, _url(base_url, record.get("url"))]
