"""Which endpoint URLs may be called: a pure check, applied when an endpoint is made and
again to every address its host resolves to at delivery (an SSRF guard: a URL given over the
API must not make the daemon call into its own network). Refusals name the problem, never
the URL (it may carry a token)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from daemon.specs import SpecError

MAX_URL_LENGTH = 2048
# Hosts that are numbers in a form other than a.b.c.d (2130706433, 0x7f.1, 0177.0.0.1):
# resolvers read them as addresses, and a check that did not would be walked around.
_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?")
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class UrlPolicy:
    allow_http_loopback: bool = False  # http:// and loopback addresses (tests, sandbox)
    allow_private: bool = False  # private, link-local and reserved addresses


def check_url(url: str, policy: UrlPolicy) -> str:
    """The URL as it will be called, or SpecError naming what is wrong with it."""
    if len(url) > MAX_URL_LENGTH:
        raise SpecError(f"url: at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise SpecError("url: must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SpecError("url: not a valid URL (its host or port cannot be read)") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http"):
        raise SpecError("url: must start with https://")
    if not host:
        raise SpecError("url: has no host")
    if parts.username is not None or parts.password is not None:
        raise SpecError(
            "url: must not carry a user or password (user@host); the receiver checks the "
            "signature instead"
        )
    if parts.fragment:
        raise SpecError("url: must not have a #fragment (it is never sent)")
    if port == 0:
        raise SpecError("url: port 0 cannot be called")
    loopback = _check_host(host, policy)
    if parts.scheme == "http" and not (policy.allow_http_loopback and loopback):
        raise SpecError(
            "url: must start with https:// (http:// only to a loopback address, and only "
            "when [webhooks] allow_http_loopback is on)"
        )
    return url


def _check_host(host: str, policy: UrlPolicy) -> bool:
    """Whether `host` is a loopback address or name; SpecError if it may not be called."""
    address = _literal(host)
    if address is None:
        if _NUMERIC_HOST.fullmatch(host):
            raise SpecError("url: the host is a number in an unusual form; write a.b.c.d")
        if not _HOST_NAME.fullmatch(host) or len(host) > 253:
            raise SpecError(
                "url: the host is neither a DNS name (letters, digits, - and .) nor an address"
            )
        if host in _LOOPBACK_NAMES:
            if not policy.allow_http_loopback:
                raise SpecError(address_refusal("loopback"))
            return True
        return False
    why = refused_address(address, policy)
    if why is not None:
        raise SpecError(address_refusal(why))
    return _unmapped(address).is_loopback


def refused_address(address: IpAddress, policy: UrlPolicy) -> str | None:
    """Why this address may not be called ("loopback", "private"), or None when it may."""
    address = _unmapped(address)
    if address.is_loopback:
        return None if policy.allow_http_loopback else "loopback"
    # Anything not on the public internet: private, link-local, reserved, multicast, and the
    # shared address space (100.64.0.0/10, where a cloud may keep its metadata service).
    if not address.is_global or address.is_multicast:
        return None if policy.allow_private else "private"
    return None


def address_refusal(why: str) -> str:
    if why == "loopback":
        return (
            "url: the host is a loopback address; allowed only with [webhooks] "
            "allow_http_loopback (on in sandbox mode)"
        )
    return (
        "url: the host is a private, link-local or reserved address; allowed only with "
        "[webhooks] allow_private_addresses"
    )


def _literal(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _unmapped(address: IpAddress) -> IpAddress:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64) is the one reached."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
