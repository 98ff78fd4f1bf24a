"""Faults the sandbox servers can be told to produce, one request at a time."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Literal

from starlette.responses import Response

FaultKind = Literal["status", "slow", "malformed_json", "truncated"]


@dataclass
class Fault:
    """`status`: answer with `status` (and Retry-After if given). `slow`: wait `seconds`
    before answering. `malformed_json` / `truncated`: a 200 whose body is not valid JSON.
    `times`: how many requests it applies to; `after`: how many requests pass untouched
    first (to hit, say, the second page of a query). `matching`: the fault applies only to
    requests whose query contains this text (a key, say), and waits for one that does."""

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0
    times: int = 1
    after: int = 0
    body: str | None = None
    matching: str | None = None
    headers: dict[str, str] | None = None  # more headers for a `status` answer


@dataclass
class FaultRates:
    """Random faults, each request rolling the dice (the soak test's weather): `server_error`
    answers 500/502/503, `timeout` holds the answer `timeout_seconds`, `malformed_record`
    garbles that share of the records in an answer."""

    server_error: float = 0.0
    timeout: float = 0.0
    timeout_seconds: float = 5.0
    malformed_record: float = 0.0
    seed: int = 1
    rolled: int = 0
    _rng: random.Random = field(default_factory=lambda: random.Random(1))

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def roll(self) -> Fault | None:
        """A fault for this request, or None."""
        draw = self._rng.random()
        if draw < self.server_error:
            self.rolled += 1
            return Fault("status", status=self._rng.choice([500, 502, 503]))
        if draw < self.server_error + self.timeout:
            self.rolled += 1
            return Fault("slow", seconds=self.timeout_seconds)
        return None

    def garble(self) -> bool:
        return self.malformed_record > 0 and self._rng.random() < self.malformed_record


class FaultQueue:
    def __init__(self) -> None:
        self._queue: list[Fault] = []
        self.injected = 0

    def add(self, fault: Fault) -> None:
        self._queue.append(fault)

    def clear(self) -> None:
        self._queue.clear()

    def take(self, query: str = "") -> Fault | None:
        """The fault for a request whose query is `query`: the first queued one that applies."""
        index = next(
            (
                i
                for i, fault in enumerate(self._queue)
                if fault.matching is None or fault.matching in query
            ),
            None,
        )
        if index is None:
            return None
        fault = self._queue[index]
        if fault.after > 0:
            fault.after -= 1
            return None
        fault.times -= 1
        if fault.times <= 0:
            self._queue.pop(index)
        self.injected += 1
        return fault

    def __len__(self) -> int:
        return len(self._queue)


def fault_response(fault: Fault) -> Response | None:
    """The answer a fault stands for, or None when it only delays (`slow`)."""
    if fault.kind == "slow":
        return None
    if fault.kind == "malformed_json":
        return Response(fault.body or '{"value": [ {"ListingKey": ', media_type="application/json")
    if fault.kind == "truncated":
        return Response('{"value": [', media_type="application/json")
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    headers |= fault.headers or {}
    body = fault.body or json.dumps(
        {"error": {"code": str(fault.status), "message": f"injected HTTP {fault.status}"}}
    )
    return Response(body, status_code=fault.status, headers=headers, media_type="application/json")
