"""Links a person can open to find a post (for the "remove by hand" list)."""

from __future__ import annotations

from daemon.platforms.registry import REGISTRY


def post_link(platform: str, platform_post_id: str, permalink: str | None = None) -> str | None:
    if permalink:
        return permalink
    entry = REGISTRY.get(platform)
    return entry.link(platform_post_id) if entry else None
