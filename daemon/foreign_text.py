"""Text another system sent (a platform's error message, a webhook receiver's answer), made
fit to store and show.

Such text is kept in the database and shown by the CLI, the API and the status page. Two
kinds of character break that: NUL, which PostgreSQL refuses in text (the write fails, and
with it every other outcome written beside it), and a lone surrogate (a JSON `\\ud800`), which
is no UTF-8 at all and fails any encoding of the string. Control characters would also garble
a table or a log line. All of them become a visible stand-in here, once, where the text
enters.
"""

from __future__ import annotations

import re

# C0 and C1 controls and DEL (tab and newline among them), and the Unicode line and paragraph
# separators: a stored message is one line.
_CONTROLS = {code: " " for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}

# For a value another system sends that is stored as it is and never holds one (a listing
# key, a status): its pydantic `pattern`, so that such a value is refused by name, alone,
# instead of failing the write of everything beside it.
_C0_AND_DEL = r"\x00-\x1f\x7f"
NO_CONTROL_CHARACTERS = rf"^[^{_C0_AND_DEL}]*$"
_CONTROL_CHARACTER = re.compile(rf"[{_C0_AND_DEL}]")


def has_control_characters(text: str) -> bool:
    """Whether `text` fails NO_CONTROL_CHARACTERS."""
    return _CONTROL_CHARACTER.search(text) is not None


def storable(text: str, limit: int) -> str:
    """The first `limit` characters of `text`, each control character a space and each lone
    surrogate a `?`."""
    cut = text[:limit]
    if cut.isprintable():  # the usual case, at C speed
        return cut
    return cut.encode("utf-8", "replace").decode("utf-8").translate(_CONTROLS)
