"""An HTTP client that never keeps a cookie.

One client (one connection pool) serves every credential of an MLS server, and every account
of a platform. A cookie a server sets in answer to one credential's request (a session, a
load balancer's affinity) would otherwise ride along on the next credential's requests. None
of these APIs needs cookies: each request carries its own bearer token or access token.

It is also cheaper: httpx builds a urllib request and response for its cookie jar on every
answer, a twentieth of the event loop's CPU when taking down 10,000 posts.
"""

from __future__ import annotations

from http.cookiejar import Cookie, CookieJar

import httpx


class _RefusingJar(CookieJar):
    def set_cookie(self, cookie: Cookie) -> None:
        return None  # every way of adding a cookie ends here


class _NoCookies(httpx.Cookies):
    """Always empty: what a server sets is dropped unread."""

    def __init__(self) -> None:
        super().__init__(_RefusingJar())

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class CookielessClient(httpx.AsyncClient):
    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        if cookies:
            raise ValueError("this client never keeps cookies")


_NO_COOKIES = _NoCookies()
