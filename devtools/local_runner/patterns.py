"""Lambda event filtering: the EventBridge-style pattern language of ``FilterCriteria``.

A filter is a JSON pattern; an event passes when it matches ANY filter of the mapping. Within one
pattern every key must match (AND); the values listed for a leaf key are alternatives (OR). Supported:
exact values (string, number, bool, null), ``prefix``, ``suffix``, ``equals-ignore-case``,
``anything-but`` (values, or a prefix/suffix), ``exists``, ``numeric`` ranges and ``$or``. An unknown
operator is an error, so a pattern the runner cannot honour never passes silently.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

_MISSING = object()
_NUMERIC_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class PatternError(ValueError):
    """A filter pattern uses something this matcher does not implement."""


def parse_filter_criteria(filter_criteria: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The patterns of a CloudFormation ``FilterCriteria`` (each ``Pattern`` is JSON text)."""
    if not filter_criteria:
        return []
    patterns = []
    for entry in filter_criteria.get("Filters", []):
        pattern = entry["Pattern"]
        parsed = json.loads(pattern) if isinstance(pattern, str) else pattern
        if not isinstance(parsed, dict):
            raise PatternError(f"a filter pattern must be a JSON object: {pattern!r}")
        patterns.append(parsed)
    return patterns


def matches_any(patterns: Sequence[Mapping[str, Any]], event: Mapping[str, Any]) -> bool:
    """True when there are no patterns (no filtering) or the event matches at least one."""
    return not patterns or any(matches(pattern, event) for pattern in patterns)


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether ``event`` matches one pattern."""
    for key, expected in pattern.items():
        if key == "$or":
            if not any(matches(alternative, event) for alternative in expected):
                return False
            continue
        actual = event.get(key, _MISSING) if isinstance(event, Mapping) else _MISSING
        if isinstance(expected, Mapping):
            if not isinstance(actual, Mapping) or not matches(expected, actual):
                return False
        elif isinstance(expected, list):
            if not _leaf_matches(expected, actual):
                return False
        else:
            raise PatternError(f"pattern value for {key!r} must be an object or an array, got {expected!r}")
    return True


def _leaf_matches(alternatives: list[Any], actual: Any) -> bool:
    values = actual if isinstance(actual, list) else [actual]
    return any(_condition_matches(condition, value) for condition in alternatives for value in values)


def _condition_matches(condition: Any, value: Any) -> bool:
    if not isinstance(condition, Mapping):
        return value is not _MISSING and _same_value(condition, value)
    if len(condition) != 1:
        raise PatternError(f"one operator per condition, got {dict(condition)!r}")
    (name, argument), *_ = condition.items()
    if name == "exists":
        return (value is not _MISSING) == bool(argument)
    if value is _MISSING:
        return False
    check = _OPERATORS.get(name)
    if check is None:
        raise PatternError(f"unsupported filter operator {name!r}")
    return check(argument, value)


def _same_value(expected: Any, value: Any) -> bool:
    if _is_number(expected) and _is_number(value):
        return float(expected) == float(value)
    return type(expected) is type(value) and expected == value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _prefix(argument: Any, value: Any) -> bool:
    if isinstance(argument, Mapping):  # {"prefix": {"equals-ignore-case": "..."}}
        text = argument["equals-ignore-case"]
        return isinstance(value, str) and value.lower().startswith(text.lower())
    return isinstance(value, str) and value.startswith(argument)


def _suffix(argument: Any, value: Any) -> bool:
    if isinstance(argument, Mapping):
        text = argument["equals-ignore-case"]
        return isinstance(value, str) and value.lower().endswith(text.lower())
    return isinstance(value, str) and value.endswith(argument)


def _equals_ignore_case(argument: Any, value: Any) -> bool:
    return isinstance(value, str) and value.lower() == str(argument).lower()


def _anything_but(argument: Any, value: Any) -> bool:
    if isinstance(argument, Mapping):
        (name, inner), *_ = argument.items()
        if name not in {"prefix", "suffix", "equals-ignore-case"}:
            raise PatternError(f"unsupported anything-but operator {name!r}")
        return not _OPERATORS[name](inner, value)
    excluded = argument if isinstance(argument, list) else [argument]
    return not any(_same_value(item, value) for item in excluded)


def _numeric(argument: Any, value: Any) -> bool:
    if not _is_number(value):
        return False
    if len(argument) % 2:
        raise PatternError(f"numeric takes operator/value pairs, got {argument!r}")
    for symbol, bound in _pairs(argument):
        compare = _NUMERIC_OPERATORS.get(symbol)
        if compare is None:
            raise PatternError(f"unsupported numeric operator {symbol!r}")
        if not compare(float(value), float(bound)):
            return False
    return True


def _pairs(items: Sequence[Any]) -> Iterable[tuple[Any, Any]]:
    return zip(items[::2], items[1::2], strict=True)


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "prefix": _prefix,
    "suffix": _suffix,
    "equals-ignore-case": _equals_ignore_case,
    "anything-but": _anything_but,
    "numeric": _numeric,
}
