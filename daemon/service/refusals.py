"""The answer to a request whose body or parameters do not validate: 415 for a body that was
not sent as JSON, else 422 naming each bad field and its rule.

Neither repeats what was sent, as FastAPI's own answer does (`input` in each error): a body
may hold a secret (a token, a client secret), and an error answer ends up in logs, terminals
and bug reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from daemon.specs import explain

SEND_JSON = (
    "the body is not JSON: send it with the header Content-Type: application/json "
    "(with curl: -H 'Content-Type: application/json')"
)
_WHERE = ("body", "query", "path", "header")
_NOT_AN_OBJECT = ("model_attributes_type", "model_type", "dict_type")


def refusal(content_type: str | None, errors: Sequence[Mapping[str, Any]]) -> tuple[int, str]:
    """The status and `detail` for `errors` (FastAPI's RequestValidationError.errors())."""
    sent_a_body = any(e["loc"][:1] == ("body",) and e["type"] != "missing" for e in errors)
    if sent_a_body and not is_json(content_type or ""):
        return 415, SEND_JSON  # FastAPI parses a body as JSON only when it says it is JSON
    return 422, explain([_readable(e) for e in errors], values=False)


def is_json(content_type: str) -> bool:
    """As FastAPI decides whether to parse a body as JSON: application/json or */*+json."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _readable(error: Mapping[str, Any]) -> dict[str, Any]:
    """The error with its location as a person names it (`name`, not `body.name`) and the
    body-wide problems said plainly."""
    loc = tuple(error["loc"])
    field = loc[1:] if loc[:1] in [(w,) for w in _WHERE] and len(loc) > 1 else loc
    msg = str(error["msg"])
    if error["type"] == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "invalid")
        position = f" at character {loc[1]}" if len(loc) > 1 else ""
        field, msg = ("body",), f"not valid JSON ({reason}{position})"
    elif loc == ("body",) and error["type"] in _NOT_AN_OBJECT:
        msg = "must be a JSON object of the record's fields"
    elif error["type"] == "extra_forbidden":
        # The name of an unknown field is input too: a secret pasted as a key is not repeated.
        if loc[:1] == ("query",):
            field = ("query string",)
            msg = "has a parameter the route does not take (its parameters: /openapi.json)"
        else:
            field = ("body",)
            msg = "has a field the record does not have (its fields are listed in /openapi.json)"
        return {"type": "unknown_field", "loc": field, "msg": msg}
    return {"type": error["type"], "loc": field, "msg": msg}
