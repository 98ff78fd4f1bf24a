"""How the Graph API's and LinkedIn's answers to a delete become outcomes, through tables."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from daemon.platforms import graph, linkedin
from daemon.platforms.outcomes import (
    AlreadyGone,
    AuthFailed,
    Deleted,
    NeedsPerson,
    Outcome,
    RetryLater,
)

# What a table states of an outcome: its kind; for a retry, whether the platform refused to
# act (no read before the next DELETE) and how long it asked us to wait.
Shape = tuple[type[Outcome], bool, float | None]


def shape(outcome: Outcome) -> Shape:
    if isinstance(outcome, RetryLater):
        return (RetryLater, outcome.refused, outcome.retry_after)
    return (type(outcome), False, None)


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    """A platform's answer as httpx hands it over: JSON for a dict, text for a str."""
    if isinstance(body, dict):
        return httpx.Response(status, json=body, headers=headers)
    return httpx.Response(status, text=body or "", headers=headers)


def graph_error(code: Any, subcode: Any = None, **extra: Any) -> dict[str, Any]:
    error = {"message": "(#n) message", "type": "OAuthException", "code": code, **extra}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


def usage(*minutes: float | str) -> str:
    """An X-Business-Use-Case-Usage value asking to wait `minutes` (one use case each)."""
    entries = [{"type": "pages", "estimated_time_to_regain_access": m} for m in minutes]
    return json.dumps({"1093": entries})


RETRY = (RetryLater, False, None)
THROTTLED = (RetryLater, True, None)
AUTH = (AuthFailed, False, None)
PERSON = (NeedsPerson, False, None)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, graph_error(190, 460), AUTH),  # password changed
        (400, graph_error(190, 463), AUTH),  # token expired
        (500, graph_error(190), AUTH),  # the code wins over the status
        (400, graph_error(4), THROTTLED),  # application request limit
        (400, graph_error(17), THROTTLED),  # user request limit
        (400, graph_error(32), THROTTLED),  # page request limit
        (400, graph_error(613), THROTTLED),
        (400, graph_error(80001), THROTTLED),  # business use case limit
        (400, graph_error(341), THROTTLED),
        (500, graph_error(1), RETRY),  # unknown error
        (503, graph_error(2), RETRY),  # service temporarily unavailable
        (400, graph_error(368), RETRY),  # temporarily blocked
        (400, graph_error(9999, is_transient=True), RETRY),
        (400, graph_error(9999, is_transient="true"), PERSON),  # only a JSON true is
        (403, graph_error(10), PERSON),  # permission denied
        (403, graph_error(200), PERSON),
        (403, graph_error(299), PERSON),
        (400, graph_error(100, 2207073), PERSON),  # a carousel slide (Instagram says why)
        (400, graph_error(True), PERSON),  # a boolean is not a code
        (429, None, THROTTLED),
        (429, graph_error("4"), THROTTLED),  # a code as a string is no code: the status rules
        (502, "<html>Bad Gateway</html>", RETRY),
        (500, {"unexpected": "shape"}, RETRY),
        (400, {"error": "a string, not an object"}, PERSON),
        (400, "not JSON", PERSON),
    ],
)
def test_a_graph_error_becomes_the_outcome_its_code_and_status_mean(
    status: int, body: Any, expected: Shape
) -> None:
    resp = answer(status, body)
    assert shape(graph.classify(graph.read_error(resp), resp.headers)) == expected


@pytest.mark.parametrize(
    ("usage_header", "retry_after"),
    [
        (usage(5), 300.0),
        (usage(1, 30, 2), 1800.0),  # the longest wait of any use case
        (usage(0), None),
        (usage("soon"), None),
        (None, None),
        ("not json", None),
        ("[]", None),
        ("{}", None),
        ('{"1093": 5}', None),
    ],
)
def test_a_throttled_graph_call_waits_as_long_as_meta_asks(
    usage_header: str | None, retry_after: float | None
) -> None:
    headers = {"X-Business-Use-Case-Usage": usage_header} if usage_header else {}
    resp = answer(400, graph_error(80001), headers)
    outcome = graph.classify(graph.read_error(resp), resp.headers)
    assert shape(outcome) == (RetryLater, True, retry_after)


@pytest.mark.parametrize(
    ("body", "code", "subcode", "transient"),
    [
        (graph_error(100, 33), 100, 33, False),
        (graph_error(2, is_transient=True), 2, None, True),
        (graph_error("100", "33"), None, None, False),
        (graph_error(False, True), None, None, False),
        ("<html>oops</html>", None, None, False),
        ([1, 2], None, None, False),
    ],
)
def test_a_graph_error_body_is_read_for_its_numbers_only(
    body: Any, code: int | None, subcode: int | None, transient: bool
) -> None:
    resp = httpx.Response(400, json=body) if isinstance(body, list) else answer(400, body)
    error = graph.read_error(resp)
    assert (error.code, error.subcode, error.transient) == (code, subcode, transient)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (204, None, (Deleted, False, None)),
        (404, None, (AlreadyGone, False, None)),
        (401, {"code": "REVOKED_ACCESS_TOKEN", "status": 401}, AUTH),
        (401, {"code": "EXPIRED_ACCESS_TOKEN", "status": 401}, AUTH),  # once refreshed, still
        (401, None, AUTH),
        (403, {"message": "Not enough permissions"}, PERSON),
        (429, None, THROTTLED),
        (500, None, RETRY),
        (503, "<html>down</html>", RETRY),
        (400, {"message": "bad urn"}, PERSON),
        (200, None, PERSON),  # a delete answers 204: anything else is for a person to look at
    ],
)
def test_a_linkedin_answer_becomes_the_outcome_its_status_means(
    status: int, body: Any, expected: Shape
) -> None:
    assert shape(linkedin.classify(answer(status, body))) == expected


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"code": "REVOKED_ACCESS_TOKEN"}, "REVOKED_ACCESS_TOKEN"),
        ({"code": 65601}, "401"),
        ("nope", "401"),
    ],
)
def test_a_refused_linkedin_token_names_linkedins_code(body: Any, named: str) -> None:
    outcome = linkedin.classify(answer(401, body))
    assert isinstance(outcome, AuthFailed) and f"({named})" in outcome.reason
