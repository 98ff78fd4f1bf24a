"""A RESO server's `$metadata`: which resources it serves (docs/mls-reso.md "The change log").

RESO servers answer with OData's CSDL as XML; an OData 4.01 server may answer with CSDL as
JSON. The XML comes from a server we do not control, so it is parsed with defusedxml, which
refuses entity expansion and external references.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from daemon import foreign_json
from daemon.mls.errors import MlsError

# What a resource is declared as: an entity set of the container, or its entity type (some
# servers list only types).
_DECLARATIONS = ("EntitySet", "EntityType")


@dataclass(frozen=True)
class Metadata:
    resources: frozenset[str]
    next_link: None = None  # one document, never paged


def parse_metadata(body: bytes) -> Metadata:
    """The resources `$metadata` declares. MlsError when it is neither CSDL XML nor CSDL
    JSON (the message never quotes the body)."""
    return Metadata(_resources(body))


def _resources(body: bytes) -> frozenset[str]:
    if body.lstrip()[:1] == b"{":
        return _from_json(body)
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException, ValueError):
        raise MlsError("$metadata is not readable CSDL (neither XML nor JSON)") from None
    names = {
        element.get("Name", "")
        for element in root.iter()
        if isinstance(element.tag, str) and element.tag.rpartition("}")[2] in _DECLARATIONS
    }
    return frozenset(n for n in names if n)


def _from_json(body: bytes) -> frozenset[str]:
    try:
        document = foreign_json.loads(body)
    except ValueError:
        raise MlsError("$metadata is not readable CSDL (neither XML nor JSON)") from None
    names: set[str] = set()
    for schema in _objects(document):
        for name, member in _members(schema):
            if member.get("$Kind") == "EntityType":
                names.add(name)
            elif member.get("$Kind") == "EntityContainer":
                names.update(n for n, m in _members(member) if m.get("$Collection") is True)
    return frozenset(names)


def _objects(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, dict):
        return []
    return [v for v in document.values() if isinstance(v, dict)]


def _members(element: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(k, v) for k, v in element.items() if not k.startswith("$") and isinstance(v, dict)]
