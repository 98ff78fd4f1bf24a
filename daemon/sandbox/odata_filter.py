"""Evaluating an OData `$filter` over in-memory records, for the sandbox MLS.

Parsing is odata-query's (a real grammar); this module only walks the tree it returns. The
subset is what RESO clients send: and/or/not, eq ne gt ge lt le, in, string/number/date/bool
literals.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from odata_query import ast
from odata_query.exceptions import ODataException
from odata_query.grammar import ODataLexer, ODataParser

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]
KEY_FIELD = "ListingKey"


@dataclass(frozen=True)
class CompiledFilter:
    """`matches` decides; `keys`, when not None, is every ListingKey that can match, so a
    by-key query is a lookup instead of a scan of the whole feed."""

    matches: Predicate
    keys: frozenset[Any] | None


class FilterError(ValueError):
    """The filter is not valid OData, or uses what the sandbox does not implement."""


_COMPARATORS: dict[type[Any], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
}


@lru_cache(maxsize=1024)
def compile_filter(text: str) -> CompiledFilter:
    try:
        tree = ODataParser().parse(ODataLexer().tokenize(text))
    except ODataException as exc:
        raise FilterError(f"invalid $filter: {exc}") from None
    return CompiledFilter(_compile(tree), _candidate_keys(tree))


def _candidate_keys(node: Any) -> frozenset[Any] | None:
    """The keys a filter can only match, when the tree says so (None: it could match any)."""
    if isinstance(node, ast.Compare) and _is_key(node.left):
        if isinstance(node.comparator, ast.Eq) and isinstance(node.right, ast._Literal):
            return frozenset([_literal(node.right)])
        if isinstance(node.comparator, ast.In) and isinstance(node.right, ast.List):
            return frozenset(_literal(v) for v in node.right.val)
        return None
    if isinstance(node, ast.BoolOp):
        left, right = _candidate_keys(node.left), _candidate_keys(node.right)
        if isinstance(node.op, ast.Or):
            return None if left is None or right is None else left | right
        if left is None or right is None:
            return left if right is None else right
        return left & right
    return None


def _is_key(node: Any) -> bool:
    return isinstance(node, ast.Identifier) and node.name == KEY_FIELD


def _compile(node: Any) -> Predicate:
    if isinstance(node, ast.BoolOp):
        left, right = _compile(node.left), _compile(node.right)
        if isinstance(node.op, ast.And):
            return lambda r: left(r) and right(r)
        return lambda r: left(r) or right(r)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _compile(node.operand)
        return lambda r: not inner(r)
    if isinstance(node, ast.Compare):
        return _compare(node)
    raise FilterError(f"unsupported in $filter: {type(node).__name__}")


def _compare(node: Any) -> Predicate:
    if not isinstance(node.left, ast.Identifier):
        raise FilterError("the left side of a comparison must be a field name")
    name = node.left.name
    if isinstance(node.comparator, ast.In):
        if not isinstance(node.right, ast.List):
            raise FilterError("`in` needs a list: Field in ('a','b')")
        wanted = frozenset(_literal(v) for v in node.right.val)
        return lambda r: r.get(name) in wanted
    compare = _COMPARATORS.get(type(node.comparator))
    if compare is None:
        raise FilterError(f"unsupported comparison {type(node.comparator).__name__}")
    value = _literal(node.right)

    def test(record: Record) -> bool:
        got = record.get(name)
        if compare is operator.eq or compare is operator.ne:
            return bool(compare(got, value))
        if got is None or value is None:
            return False
        try:
            return bool(compare(got, value))
        except TypeError:  # a string compared with a date, say: OData says no match
            return False

    return test


def _literal(node: Any) -> Any:
    if not isinstance(node, ast._Literal):
        raise FilterError(f"expected a literal value, got {type(node).__name__}")
    value = node.py_val
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value
