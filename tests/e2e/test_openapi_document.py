"""The running daemon's /openapi.json says what each /v1 route really answers: the `bearer`
scheme, a named schema for each success, every problem as application/problem+json, and
request bodies with examples whose secrets are placeholders.
(tests/reliability/test_api_fuzz.py holds the answers to the document.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from daemon.encryption import generate_key
from daemon.service.problems import PROBLEM_JSON
from tests.e2e.daemon_process import api_client

PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
PLACEHOLDER = re.compile(r"[A-Z][A-Z_]+")  # MLS_BEARER_TOKEN, CLIENT_SECRET
SECRET_FIELDS = {"secret", "access_token", "refresh_token", "client_secret"}
Operation = tuple[str, str, dict[str, Any]]  # method, path, its OpenAPI object


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with api_client(tmp_path_factory.mktemp("openapi"), generate_key()) as client:
        answer = client.get("/openapi.json")
        assert answer.status_code == 200
        yield answer.json()


def _v1(document: dict[str, Any]) -> list[Operation]:
    return [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in methods.items()
    ]


PUSH = ("POST", "/v1/mls-connections/{connection_id}/entity-events")


def test_every_v1_route_asks_for_the_bearer_token(document: dict[str, Any]) -> None:
    """Every route but the MLS's push, which asks for the connection's push token."""
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for method, path, operation in _v1(document):
        if (method, path) == PUSH:
            assert operation["security"] == [{"push_token": []}]
            assert {"401", "413", "429"} <= set(operation["responses"])
            continue
        assert operation["security"] == [{"bearer": []}], (method, path)
        assert {"401", "403", "503"} <= set(operation["responses"]), (method, path)


def test_every_error_a_route_answers_is_a_problem_detail(document: dict[str, Any]) -> None:
    """One shape for every error, and FastAPI's own validation errors (which repeat the
    input) are nowhere."""
    for method, path, operation in _v1(document):
        errors = {code: r for code, r in operation["responses"].items() if int(code) >= 400}
        for code, response in errors.items():
            assert response["content"] == PROBLEM, (method, path, code)
    schemas = document["components"]["schemas"]
    assert set(schemas["Problem"]["required"]) == {"title", "status", "detail"}
    assert "ValidationError" not in schemas and "HTTPValidationError" not in schemas


def test_every_success_has_a_named_schema(document: dict[str, Any]) -> None:
    for method, path, operation in _v1(document):
        successes = {code: r for code, r in operation["responses"].items() if int(code) < 300}
        assert successes, (method, path)
        for code, response in successes.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema["$ref"].startswith("#/components/schemas/"), (method, path, code)


def test_a_put_says_201_when_it_made_the_record_and_200_when_it_replaced_one(
    document: dict[str, Any],
) -> None:
    puts = [(path, op) for method, path, op in _v1(document) if method == "PUT"]
    assert len(puts) == 5
    for path, operation in puts:
        assert {"200", "201"} <= set(operation["responses"]), path


def test_a_route_that_reads_a_json_body_lists_each_way_a_body_is_refused(
    document: dict[str, Any],
) -> None:
    """400 (not decodable), 413 (too large), 415 (not sent as JSON), 422 (does not validate)."""
    for method, path, operation in _v1(document):
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            assert {"400", "413", "415", "422"} <= set(operation["responses"]), (method, path)


def test_every_request_body_has_an_example_without_a_secret(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    bodies = 0
    for method, path, operation in _v1(document):
        for media, content in operation.get("requestBody", {}).get("content", {}).items():
            bodies += 1
            if "example" in content:  # the bulk import: text
                continue
            schema = schemas[content["schema"]["$ref"].rsplit("/", 1)[1]]
            assert schema.get("examples"), (method, path, media)
            for example in schema["examples"]:
                for name in SECRET_FIELDS & set(example):
                    assert PLACEHOLDER.fullmatch(example[name]), (path, name)
    assert bodies == 9  # five PUTs, a token, a webhook endpoint, and the import's two forms


def test_every_id_in_a_path_has_an_example(document: dict[str, Any]) -> None:
    for method, path, operation in _v1(document):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["schema"].get("examples"), (method, path, parameter["name"])
