"""What each notification says, as a person reads it (daemon/mail/compose.py), and when mail
goes out (daemon/mail/timing.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.config import ConfigError, load_settings
from daemon.enums import EventType
from daemon.mail import compose
from daemon.mail.timing import digest_due
from daemon.store.events import ACCOUNT_WHAT_TO_DO

BASE = "https://app.example.test"
LISTING = {
    "id": "L-1",
    "key": "3yd-1",
    "status": "sold",
    "mls_status": "Sold",
    "mls_standard_status": "Closed",
    "mls_modified_at": "2026-11-30T06:18:02.000000Z",
    "url": "/v1/listings/L-1",
}
DOWN = compose.PostState("linkedin", "urn:li:share:7", "unpublished", "https://li/7", None)
PERSON = compose.PostState(
    "facebook", "1_2", "manual_required", "https://www.facebook.com/1_2", None
)
RETRIED = compose.PostState("instagram", "99", "published", "https://ig/99", "2026-11-30T07:00Z")


@pytest.mark.parametrize(
    ("posts", "present", "absent"),
    [
        ([], ["It had no social posts recorded."], ["Taken down:", "Only you can"]),
        ([DOWN], ["Taken down:\n  - linkedin post urn:li:share:7: https://li/7"], ["Only you"]),
        (
            [DOWN, PERSON],
            ["Only you can take these down", "facebook post 1_2: https://www.facebook.com/1_2"],
            ["being tried again"],
        ),
        (
            [RETRIED],
            ["Still up, being tried again:", "instagram post 99: https://ig/99 (next try 2026"],
            ["Taken down:"],
        ),
    ],
)
def test_a_sale_says_what_sold_and_where_each_post_stands(
    posts: list[compose.PostState], present: list[str], absent: list[str]
) -> None:
    message = compose.sold({"listing": LISTING}, posts, BASE)
    assert message.subject == "Sold: listing 3yd-1"
    assert "Listing 3yd-1 sold (MLS status: Sold, modified 2026-11-30T06:18:02" in message.body
    assert f"{BASE}/v1/listings/L-1" in message.body
    for text in present:
        assert text in message.body
    for text in absent:
        assert text not in message.body


@pytest.mark.parametrize(
    ("event_type", "data", "subject", "in_body"),
    [
        (
            "account.needs_reauth",
            {
                "account": {"id": "fb-1", "platform": "facebook", "url": "/v1/accounts/fb-1"},
                "what_to_do": ACCOUNT_WHAT_TO_DO.replace("{id}", "fb-1"),
            },
            "Sign in again: facebook account fb-1",
            ["What to do: the platform refused", f"{BASE}/v1/accounts/fb-1"],
        ),
        (
            "connection.needs_reauth",
            {
                "connection": {"id": "crmls", "name": "CRMLS", "url": "/v1/mls-connections/c"},
                "what_to_do": "give it new ones",
            },
            "New credentials needed: MLS connection CRMLS",
            ["What to do: give it new ones"],
        ),
        (
            "post.needs_person",
            {
                "post": {
                    "platform": "facebook",
                    "platform_post_id": "1_2",
                    "permalink": None,
                    "url": "/v1/posts/p-1",
                },
                "listing": LISTING,
            },
            "Take down by hand: facebook post of listing 3yd-1",
            ["Open it: https://www.facebook.com/1_2", f"{BASE}/v1/posts/p-1"],
        ),
    ],
)
def test_a_message_that_needs_the_person_says_which_record_and_what_to_do(
    event_type: str, data: compose.Data, subject: str, in_body: list[str]
) -> None:
    message = compose.for_event(event_type, data, BASE)
    assert message.subject == subject
    for text in in_body:
        assert text in message.body


def test_a_digest_groups_the_days_items_by_what_happened() -> None:
    items = [
        compose.DigestItem("listing.sold", {"listing": LISTING}, [PERSON]),
        compose.DigestItem("account.needs_reauth", {"account": {"id": "a", "platform": "x"}}),
        compose.DigestItem("listing.sold", {"listing": {**LISTING, "key": "3yd-2"}}),
    ]
    message = compose.digest("2026-11-30", items, BASE)
    assert message.subject == "Your mls-sync digest for 2026-11-30 (3)"
    body = message.body
    assert body.index("== Sold (2)") < body.index("== Accounts to sign in again (1)")
    assert "Listing 3yd-1 sold" in body and "Listing 3yd-2 sold" in body
    assert "facebook post 1_2: https://www.facebook.com/1_2" in body


@pytest.mark.parametrize(
    ("event_at", "zone", "hour", "due"),
    [
        # 06:00 UTC is 01:00 in New York: the same day's 08:00 there (13:00 UTC).
        ("2026-11-30T06:00:00+00:00", "America/New_York", 8, "2026-11-30T13:00:00+00:00"),
        # 14:00 UTC is 09:00 there, past the hour: the next day's.
        ("2026-11-30T14:00:00+00:00", "America/New_York", 8, "2026-12-01T13:00:00+00:00"),
        # exactly at the hour: the next day's (the digest of that hour is being made)
        ("2026-11-30T08:00:00+00:00", "UTC", 8, "2026-12-01T08:00:00+00:00"),
        # a zone the system does not know is read as UTC
        ("2026-11-30T07:00:00+00:00", "Mars/Olympus", 8, "2026-11-30T08:00:00+00:00"),
    ],
)
def test_a_digest_goes_out_at_the_next_digest_hour_in_the_users_zone(
    event_at: str, zone: str, hour: int, due: str
) -> None:
    moment = datetime.fromisoformat(event_at)
    assert digest_due(moment, zone, hour) == datetime.fromisoformat(due).astimezone(UTC)


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ("security = 'none'\nsmtp_host = 'mail.example.com'", "allowed only to a loopback"),
        (
            "password = 'hunter2'",
            "set MLS_SYNC_SMTP_PASSWORD or put it in $CREDENTIALS_DIRECTORY/smtp-password",
        ),
        ("from_address = 'two@a.b, three@c.d'", "one plain e-mail address"),
        ("public_url = '/relative'", "absolute http(s) URL"),
    ],
)
def test_bad_email_settings_are_refused_naming_the_key(
    tmp_path: Path, section: str, error: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f"[email]\n{section}\n")
    with pytest.raises(ConfigError, match="email") as caught:
        load_settings(config, {})
    assert error in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_listing_key_with_a_line_break_stays_on_the_subject_line() -> None:
    """An MLS value is not ours: it cannot end the header it is put in."""
    message = compose.sold({"listing": {**LISTING, "key": "K1\r\nBcc: x@evil.test"}}, [], BASE)
    assert message.subject == "Sold: listing K1 Bcc: x@evil.test"


@pytest.mark.parametrize("event_type", [*EventType])
def test_every_event_type_has_a_message_and_a_digest_heading(event_type: EventType) -> None:
    """A type added to the log is mailed with what its event says, never a crash."""
    data = {"endpoint": {"id": 7, "url": "/v1/webhooks/7"}, "reason": "410", "what_to_do": "x"}
    message = compose.for_event(event_type, data, BASE)
    assert message.subject and message.body
    assert (
        f"== {compose._TITLES[event_type]} (1)"
        in compose.digest("2026-11-30", [compose.DigestItem(event_type, data)], BASE).body
    )
