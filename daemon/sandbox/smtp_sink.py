"""A local SMTP server that keeps what it is sent: the sandbox's mail server, and the tests'.

aiosmtpd serves on 127.0.0.1 in a thread of its own. It can be told to refuse the next
messages with a 451 (try again later), as a real server does when busy. What it received can
also be appended to a file (one JSON line per message), so that `mls-sync demo` and a person
can read what the sandbox sent.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

EVENTS_HEADER = "X-MLS-Sync-Events"


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        return part.get_content() if isinstance(part, EmailMessage) else ""

    @property
    def event_ids(self) -> list[int]:
        text = str(self.message[EVENTS_HEADER] or "")
        return [int(i) for i in text.split(",") if i.strip().isdigit()]


@dataclass
class SmtpSink:
    received: list[Received] = field(default_factory=list)
    refuse_next: int = 0  # this many DATA commands are answered 451
    refused: int = 0
    log_path: Path | None = None
    # Seconds between keeping a message and answering 250: the window in which a sender that
    # dies has had its message accepted without knowing it.
    answer_delay: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            if self.refuse_next > 0:
                self.refuse_next -= 1
                self.refused += 1
                return "451 4.3.0 Busy, try again later"
            raw = bytes(envelope.content)
            parsed = message_from_bytes(raw, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            got = Received(envelope.mail_from, list(envelope.rcpt_tos), parsed)
            self.received.append(got)
            if self.log_path is not None:
                line = {"to": got.recipients, "subject": got.subject, "events": got.event_ids}
                with self.log_path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")
        if self.answer_delay:
            await asyncio.sleep(self.answer_delay)
        return "250 Message accepted for delivery"

    def by_recipient(self, address: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if address in r.recipients]


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def smtp_sink_running(sink: SmtpSink, port: int | None = None, **options: Any) -> Iterator[int]:
    """Serves `sink` on 127.0.0.1; yields its port. `options` go to aiosmtpd's server (such as
    `tls_context` and `require_starttls`)."""
    controller = Controller(
        sink, hostname="127.0.0.1", port=port or free_loopback_port(), **options
    )
    controller.start()
    try:
        yield int(controller.port)
    finally:
        controller.stop()
