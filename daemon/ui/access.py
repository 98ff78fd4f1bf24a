"""Who may look at the status page.

On a loopback address (`[daemon] http_host`, 127.0.0.1 by default) the page is open, as
/status is: whoever reaches it is on the machine already (or came through an SSH tunnel).
On any other address it asks for an API token once, in a form; the token stays on the
server, and the browser gets a random session id in an HttpOnly, SameSite=Strict cookie
(never in a URL). Sessions live in memory: a restart asks again, and each request checks the
token behind the session anew, so a revoked token ends its sessions at once.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "mls_sync_ui"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1000  # the oldest is forgotten beyond this: memory stays bounded


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: whatever it resolves to, treat it as reachable from outside


@dataclass(frozen=True)
class _Session:
    token: str
    expires: float


class Sessions:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Keyed by the id's hash: the ids themselves are kept nowhere on the server.
        self._open: OrderedDict[str, _Session] = OrderedDict()

    def open(self, token: str) -> str:
        """A new session for a token already checked; its id, for the cookie."""
        session_id = secrets.token_urlsafe(32)
        self._open[_key(session_id)] = _Session(token, self._clock() + SESSION_SECONDS)
        while len(self._open) > MAX_SESSIONS:
            self._open.popitem(last=False)
        return session_id

    def token(self, session_id: str | None) -> str | None:
        """The token behind a session id, while it lasts."""
        if not session_id:
            return None
        found = self._open.get(_key(session_id))
        if found is None or found.expires < self._clock():
            return None
        return found.token

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._open.pop(_key(session_id), None)


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
