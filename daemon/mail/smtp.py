"""One message out over SMTP with aiosmtplib. The message is built by the standard library's
`EmailMessage` (headers encoded, lines folded): no hand-written MIME."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from daemon.config import EmailSettings

# Names the events a message reports, so a receiver (and the tests) can tell which it covers.
EVENTS_HEADER = "X-MLS-Sync-Events"
# What a failed send can raise: the server's refusals, the network's, the timeout.
SEND_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)


def build(
    settings: EmailSettings,
    to: str,
    subject: str,
    body: str,
    outbox_id: int,
    event_ids: list[int],
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.from_address
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    # The same id on every attempt: a receiver can tell a resend after a crash from a new one.
    domain = settings.from_address.rsplit("@", 1)[-1]
    message["Message-ID"] = f"<outbox-{outbox_id}@{domain}>"
    message[EVENTS_HEADER] = ",".join(str(i) for i in event_ids) or "none"
    message.set_content(body)
    return message


async def send(settings: EmailSettings, password: str | None, message: EmailMessage) -> None:
    """Returns once the server accepted the message; raises one of SEND_ERRORS otherwise."""
    await aiosmtplib.send(
        message,
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=(settings.username or None) if password else None,
        password=password if settings.username else None,
        use_tls=settings.security == "tls",
        start_tls=settings.security == "starttls",
        timeout=settings.timeout_seconds,
    )
