"""The platform registry: the one place that says which social platforms there are and, for
each, how to build its adapter, the settings it uses (where its API is, its rate), the form of
its post ids and how a person finds a post. Specs, CLI choices, the runtime's HTTP clients,
the reconciler, the sandbox and the demo all read it; none keeps a list of its own.

Adding a platform: docs/architecture.md, "Adding a platform".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

import httpx

from daemon.platforms.facebook import FacebookAdapter, FacebookSettings
from daemon.platforms.instagram import InstagramAdapter, InstagramSettings
from daemon.platforms.linkedin import LinkedInAdapter, LinkedInSettings, TokenSaver
from daemon.platforms.outcomes import Pace, PlatformAdapter


class Platform(StrEnum):
    """The platforms a post can be on: the names stored in `platform_accounts.platform` (whose
    CHECK constraint, in the migrations, must list the same)."""

    FACEBOOK = "facebook"
    INSTAGRAM = "instagram"
    LINKEDIN = "linkedin"


PLATFORM_NAMES: tuple[str, ...] = tuple(p.value for p in Platform)


class RegisteredPlatformSettings(FacebookSettings, InstagramSettings, LinkedInSettings):
    """Every registered platform's own settings, each declared in its adapter module: the
    `[platforms]` section is these plus the limits shared by all (daemon.config)."""


@dataclass(frozen=True)
class AdapterWiring:
    """What an adapter is built from."""

    http: httpx.AsyncClient  # the platform's own client (and connection pool)
    settings: RegisteredPlatformSettings
    pace: Pace  # awaited before each call after a post's first (the reconciler's rate limit)
    save_token: TokenSaver  # stores a refreshed access token, encrypted


@dataclass(frozen=True)
class PostIdRule:
    """The form of a platform's post ids. Matched against the whole id (re.fullmatch: a `$`
    would also match before a final newline) and in ASCII only (re.ASCII: `\\d` would take
    any script's digits): the id goes into a URL as it is."""

    pattern: str
    shape: str  # what a person is told the id looks like
    example: str
    numbered: Callable[[int], str]  # the n-th made-up id of this form (the sandbox's posts)

    def matches(self, platform_post_id: str) -> bool:
        return re.fullmatch(self.pattern, platform_post_id, re.ASCII) is not None

    def describe(self) -> str:
        return f"{self.shape}, e.g. {self.example}"


@dataclass(frozen=True)
class PlatformEntry:
    platform: Platform
    adapter: Callable[[AdapterWiring], PlatformAdapter]
    post_id: PostIdRule
    # The page a person opens to find a post, from its id; None when the id alone makes no
    # URL (the post's recorded permalink is then the only way).
    link: Callable[[str], str | None]
    url_settings: tuple[str, ...]  # the settings that say where its APIs are
    rate_setting: str  # the setting with its delete calls per second


def _facebook(w: AdapterWiring) -> PlatformAdapter:
    return FacebookAdapter(w.http, w.settings.graph_url, w.settings.graph_version, w.pace)


def _instagram(w: AdapterWiring) -> PlatformAdapter:
    return InstagramAdapter(w.http, w.settings.graph_url, w.settings.graph_version, w.pace)


def _linkedin(w: AdapterWiring) -> PlatformAdapter:
    s = w.settings
    return LinkedInAdapter(
        w.http, s.linkedin_api_url, s.linkedin_oauth_url, s.linkedin_version, w.save_token, w.pace
    )


_ENTRIES = (
    PlatformEntry(
        platform=Platform.FACEBOOK,
        adapter=_facebook,
        post_id=PostIdRule(
            r"[0-9]+_[0-9]+", "{page-id}_{post-id}", "1093_4417", lambda n: f"1000_{n}"
        ),
        link=lambda post_id: f"https://www.facebook.com/{post_id}",
        url_settings=("graph_url",),
        rate_setting="facebook_rate_per_second",
    ),
    PlatformEntry(
        platform=Platform.INSTAGRAM,
        adapter=_instagram,
        post_id=PostIdRule(
            r"[0-9]+", "the numeric media id", "17895695668004550", lambda n: f"{17_000_000 + n}"
        ),
        link=lambda post_id: None,  # a media id does not make a URL; its permalink must be kept
        url_settings=("graph_url",),
        rate_setting="instagram_rate_per_second",
    ),
    PlatformEntry(
        platform=Platform.LINKEDIN,
        adapter=_linkedin,
        post_id=PostIdRule(
            r"urn:li:(share|ugcPost):[!-~]+",
            "a post URN",
            "urn:li:share:7012",
            lambda n: f"urn:li:share:{n}",
        ),
        link=lambda post_id: f"https://www.linkedin.com/feed/update/{post_id}",
        url_settings=("linkedin_api_url", "linkedin_oauth_url"),
        rate_setting="linkedin_rate_per_second",
    ),
)

# By name (a Platform member equals its name, so either looks an entry up).
REGISTRY: Mapping[str, PlatformEntry] = MappingProxyType({e.platform.value: e for e in _ENTRIES})
