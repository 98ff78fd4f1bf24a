"""The pure rules of webhook deliveries: what an answer means, when to try again, which
URLs may be called and which events an endpoint takes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.enums import DeliveryState
from daemon.outbound.retry import SCHEDULE, RetryPolicy, backoff, decide, parse_retry_after
from daemon.outbound.selection import check_types, wants
from daemon.outbound.urls import UrlPolicy, check_url
from daemon.specs import SpecError

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy()


def test_a_2xx_is_delivered_and_a_410_disables() -> None:
    """204 is success; 410 Gone gives up and disables the endpoint at once."""
    assert decide(204, None, 0, None, NOW, POLICY, 0.5).state == DeliveryState.DELIVERED
    gone = decide(410, None, 0, None, NOW, POLICY, 0.5)
    assert gone.state == DeliveryState.FAILED and gone.disable_reason


@pytest.mark.parametrize("status", [None, 301, 400, 404, 500, 502])
def test_other_answers_are_tried_again_after_the_schedule(status: int | None) -> None:
    """No answer, a redirect, any 4xx but 410 or a 5xx: tried again, 5 s after the first."""
    first = decide(status, None, 0, None, NOW, POLICY, 0.5)
    assert first.state == DeliveryState.PENDING
    assert first.next_attempt_at == NOW + timedelta(seconds=5)


def test_delays_grow_from_seconds_to_hours_with_jitter() -> None:
    """The spec's example schedule, each step within +-20%, the last repeating."""
    assert [backoff(n, 0.5).total_seconds() for n in range(1, 10)] == list(SCHEDULE)
    assert backoff(1, 0.0).total_seconds() == pytest.approx(4)
    assert backoff(1, 0.999).total_seconds() == pytest.approx(6, abs=0.01)
    assert backoff(50, 0.5) == timedelta(hours=24)


def test_the_last_try_is_at_the_end_of_the_window_then_the_endpoint_is_disabled() -> None:
    """A retry never lands past three days from the first failure; a failure at or after
    that moment gives up."""
    since = NOW - timedelta(days=2, hours=23)
    late = decide(500, None, 8, since, NOW, POLICY, 0.5)
    assert late.next_attempt_at == since + timedelta(days=3)
    done = decide(500, None, 9, since, since + timedelta(days=3), POLICY, 0.5)
    assert done.state == DeliveryState.FAILED and "3 days" in (done.disable_reason or "")


def test_retry_after_is_honoured_for_429_and_503_only_and_capped() -> None:
    """Seconds or an HTTP date; capped at max_retry_after; ignored on other statuses."""
    assert decide(429, "30", 0, None, NOW, POLICY, 0.5).next_attempt_at == NOW + timedelta(
        seconds=30
    )
    date = "Mon, 30 Nov 2026 12:02:00 GMT"
    assert decide(503, date, 0, None, NOW, POLICY, 0.5).next_attempt_at == NOW + timedelta(
        minutes=2
    )
    capped = decide(429, "999999", 0, None, NOW, POLICY, 0.5)
    assert capped.next_attempt_at == NOW + timedelta(hours=1)
    ignored = decide(500, "600", 0, None, NOW, POLICY, 0.5)
    assert ignored.next_attempt_at == NOW + timedelta(seconds=5)
    assert parse_retry_after("soon", NOW) is None


ALLOW_LOOPBACK = UrlPolicy(allow_http_loopback=True)


@pytest.mark.parametrize(
    ("url", "policy"),
    [
        ("https://app.example.com/hooks?k=v", UrlPolicy()),
        ("https://93.184.216.34:8443/hooks", UrlPolicy()),
        ("http://127.0.0.1:9000/hooks", ALLOW_LOOPBACK),
        ("http://[::1]:9000/hooks", ALLOW_LOOPBACK),
        ("http://localhost:9000/hooks", ALLOW_LOOPBACK),
        ("https://10.0.0.5/hooks", UrlPolicy(allow_private=True)),
        ("https://xn--bcher-kva.example/hooks", UrlPolicy()),
        ("https://API.Example.com./hooks", UrlPolicy()),
    ],
)
def test_good_urls_are_accepted(url: str, policy: UrlPolicy) -> None:
    assert check_url(url, policy) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://app.example.com/hooks",  # http to a public host, even with loopback allowed
        "http://10.0.0.5/hooks",
        "https://[::ffff:10.0.0.5]/hooks",  # an IPv4-mapped private address
        "https://[fe80::1]/hooks",
        "https://0.0.0.0/hooks",
        "https://017700000001/hooks",
        "https://[fe80::1%25eth0]/hooks",  # a zone id: not a name, and link-local
        "https://exa_mple.com/hooks",
        "https://100.100.100.200/latest/meta-data",  # shared address space: a cloud's metadata
        "https://[2002:a00:5::1]/hooks",  # 6to4 around 10.0.0.5
        "https://[64:ff9b::a00:5]/hooks",  # NAT64 around 10.0.0.5
    ],
)
def test_bad_urls_are_refused_even_with_loopback_allowed(url: str) -> None:
    with pytest.raises(SpecError) as refused:
        check_url(url, ALLOW_LOOPBACK)
    assert url not in str(refused.value)


def test_event_type_patterns() -> None:
    """Exact types, a family with .*, or * (daemon/event_types.py); none given is every
    type; an entry naming no type is refused."""
    assert check_types([]) == ["*"]
    assert check_types(["post.*", "listing.sold"]) == ["listing.sold", "post.*"]
    for bad in (["nothing.here"], ["listing.sold; drop"], ["listing*"]):
        with pytest.raises(SpecError):
            check_types(bad)


def test_an_endpoint_is_never_sent_its_own_disabling() -> None:
    data = '{"endpoint": {"id": 7}}'
    assert not wants(["*"], 7, "webhook.endpoint_disabled", data)
    assert wants(["*"], 8, "webhook.endpoint_disabled", data)
