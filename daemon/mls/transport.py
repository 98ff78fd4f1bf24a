"""Naming why a request never got an answer, and what an error answer said, in words an
operator can act on. Pure: exceptions and responses in, short text out."""

from __future__ import annotations

import socket
import ssl

import httpx

from daemon import foreign_json

# An error body's message is quoted up to this length; longer ones are cut.
MAX_QUOTED = 200


def transport_cause(exc: httpx.TransportError) -> str:
    """DNS failure, connection refused, timeout or TLS error (else the error's type)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    for inner in _chain(exc):
        if isinstance(inner, socket.gaierror):
            return "DNS failure (the host name does not resolve)"
        if isinstance(inner, ssl.SSLError | ssl.CertificateError):
            return "TLS error (the certificate or handshake was refused)"
        if isinstance(inner, ConnectionRefusedError):
            return "connection refused (nothing listens at that address)"
    text = str(exc).lower()
    if "name or service not known" in text or "name resolution" in text:
        return "DNS failure (the host name does not resolve)"
    if "ssl" in text or "certificate" in text:
        return "TLS error (the certificate or handshake was refused)"
    if "refused" in text:
        return "connection refused (nothing listens at that address)"
    return type(exc).__name__


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def answer_summary(resp: httpx.Response) -> str:
    """`HTTP 400` plus the server's own error message when it sent one in JSON (OData's
    `{"error": {"message": ...}}` or OAuth's `error_description`). Other bodies, an HTML
    error page above all, are never quoted."""
    summary = f"HTTP {resp.status_code}"
    message = _json_message(resp.content)
    if message:
        cut = message[:MAX_QUOTED] + ("..." if len(message) > MAX_QUOTED else "")
        summary += f": {cut!r}"
    return summary


def _json_message(body: bytes) -> str | None:
    try:
        doc = foreign_json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    error = doc.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    for name in ("error_description", "error"):
        if isinstance(doc.get(name), str):
            return str(doc[name])
    return None
