"""Links a person can open to find a post (for the "remove by hand" list)."""

from __future__ import annotations


def post_link(platform: str, platform_post_id: str, permalink: str | None = None) -> str | None:
    if permalink:
        return permalink
    if platform == "facebook":
        return f"https://www.facebook.com/{platform_post_id}"
    if platform == "linkedin":
        return f"https://www.linkedin.com/feed/update/{platform_post_id}"
    return None  # an Instagram media id does not make a URL; its permalink must be recorded
