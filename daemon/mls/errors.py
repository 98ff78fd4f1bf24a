"""What can go wrong talking to an MLS, sorted by how far the failure reaches (invariant 4)."""

from __future__ import annotations


class MlsError(Exception):
    """A request failed; the batch it belongs to fails, the rest of the cycle goes on."""


class Retryable(MlsError):
    """Worth another try: connect error, timeout, 5xx, 429, a truncated answer."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueryFailed(MlsError):
    """The server failed this query with an error of its own, no limit, no credential and no
    outage: what the query asked may be the cause (one key of a batch, say), so a batch that
    fails so is asked again in halves to find it (docs/reliability.md "One key the server
    fails on")."""


class ServerError(Retryable, QueryFailed):
    """A 5xx other than 503, or a body that cannot be read: worth the retries, and after
    them the query's own failure."""


class TokenUnavailable(Retryable):
    """The OAuth token endpoint failed (network, 5xx): retried like any request."""


class CursorStuck(MlsError):
    """The changes after some point cannot be read: the cursor cannot move past it."""


class OutOfOrder(CursorStuck):
    """The server does not keep the order asked for: a read of changes cut short by it
    would lose some. Nothing read from that query moves the cursor."""


class RequestTooLong(MlsError):
    """413/414: the server wants fewer keys per request."""


class ConnectionStopped(MlsError):
    """Nothing more is asked of this connection in this cycle."""


class NeedsReauth(ConnectionStopped):
    """Two 401s in a row, or the token endpoint refused the credentials."""


class TokenEndpointDown(ConnectionStopped):
    """The token endpoint kept failing: no batch of this connection can succeed this cycle."""


class CircuitOpen(ConnectionStopped):
    """Repeated 429s (or a Retry-After longer than we wait): leave the server alone."""


class ServerUnreachable(ConnectionStopped):
    """Several requests in a row could not reach the server (DNS, refused, timeout, TLS):
    its other batches would each wait out their retries for nothing."""
