"""Reading a server's $metadata (daemon/mls/metadata.py): which resources it declares."""

from __future__ import annotations

import json

import pytest

from daemon.mls.errors import MlsError
from daemon.mls.metadata import parse_metadata
from daemon.sandbox.mls_server import csdl_document


def test_the_resources_of_csdl_xml_are_its_entity_sets_and_types() -> None:
    assert parse_metadata(csdl_document(["Property", "EntityEvent"]).encode()).resources == {
        "Property",
        "EntityEvent",
    }


def test_the_resources_of_csdl_json_are_its_container_collections_and_entity_types() -> None:
    document = {
        "$Version": "4.01",
        "$EntityContainer": "org.reso.metadata.Default",
        "org.reso.metadata": {
            "Property": {"$Kind": "EntityType", "ListingKey": {}},
            "Default": {
                "$Kind": "EntityContainer",
                "Property": {"$Collection": True, "$Type": "org.reso.metadata.Property"},
                "EntityEvent": {"$Collection": True, "$Type": "org.reso.metadata.EntityEvent"},
            },
        },
    }
    assert parse_metadata(json.dumps(document).encode()).resources == {"Property", "EntityEvent"}


@pytest.mark.parametrize(
    "body",
    [
        b"<not closed",
        b"{not json",
        # An entity that expands into a billion: refused, never expanded.
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><a>&lol2;</a>',
        # An external entity: never fetched.
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
    ],
)
def test_a_body_that_is_not_plain_csdl_is_refused_without_quoting_it(body: bytes) -> None:
    with pytest.raises(MlsError) as refused:
        parse_metadata(body)
    assert "not readable CSDL" in str(refused.value) and "lol" not in str(refused.value)
