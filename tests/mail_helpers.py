"""What the e-mail tests share: a notified user written with SQL (the users surface is not
needed to test the mail), and an [email] section pointing at a loopback SMTP sink."""

from __future__ import annotations

import json
from collections.abc import Sequence

from daemon.config import EmailSettings
from daemon.store.database import Database
from daemon.timestamps import iso, utcnow

PUBLIC_URL = "https://app.example.test"
UPSERT_USER = """
INSERT INTO users (id, display_name, email, time_zone, notify_events, notify_mode, created_at,
    updated_at)
VALUES (:id, :id, :email, :tz, :events, :mode, :now, :now)
ON CONFLICT (id) DO UPDATE SET email = excluded.email, time_zone = excluded.time_zone,
    notify_events = excluded.notify_events, notify_mode = excluded.notify_mode
"""


async def notify(
    db: Database,
    user_id: str = "default",
    email: str = "agent@example.test",
    events: Sequence[str] = ("listing.sold", "post.needs_person", "account.needs_reauth"),
    mode: str = "immediate",
    time_zone: str = "UTC",
) -> None:
    params = {
        "id": user_id,
        "email": email,
        "tz": time_zone,
        "events": json.dumps(list(events)),
        "mode": mode,
        "now": iso(utcnow()),
    }
    async with db.transaction() as conn:
        await conn.execute(UPSERT_USER, params)


def email_settings(port: int, **overrides: object) -> EmailSettings:
    values: dict[str, object] = {
        "enabled": True,
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "security": "none",
        "from_address": "mls-sync@example.test",
        "public_url": PUBLIC_URL,
        "timeout_seconds": 5,
    }
    return EmailSettings.model_validate(values | overrides)
