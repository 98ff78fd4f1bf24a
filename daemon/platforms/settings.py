"""What a platform's settings are made of. Each adapter module declares its own (where its API
is, its version, its rate) as a small model; the registry joins them, and the `[platforms]`
section of the configuration is that join plus the limits shared by all platforms."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL, like https://graph.facebook.com")
    return value.rstrip("/")


# A platform API's base URL, kept without a trailing slash (paths are appended to it).
ApiUrl = Annotated[str, AfterValidator(_http_url)]
