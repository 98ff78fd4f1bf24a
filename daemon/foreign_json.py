"""JSON another system sent (an MLS answer, a platform's, a push, a file to import), read so
that every way it cannot be read is the one error its caller already handles."""

from __future__ import annotations

import json
from typing import Any


def loads(document: bytes | str) -> Any:
    """`json.loads`, except that valid JSON nested deeper than the parser goes (a
    RecursionError, which is no ValueError) is a ValueError too: such a body is refused by
    name like any unreadable one, where it used to crash the pass or the request reading it."""
    try:
        return json.loads(document)
    except RecursionError:
        raise ValueError("nested too deep to read") from None
