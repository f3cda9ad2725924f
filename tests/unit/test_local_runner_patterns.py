"""The local runner's Lambda filter-pattern matcher (EventBridge pattern semantics)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools.local_runner.patterns import PatternError, matches, matches_any, parse_filter_criteria

STREAM_RECORD = {
    "eventName": "MODIFY",
    "dynamodb": {
        "Keys": {"pk": {"S": "CONN#123"}, "sk": {"S": "STATE"}},
        "NewImage": {"sequence": {"N": "4"}},
    },
    "count": 7,
    "flag": True,
    "nothing": None,
    "tags": ["a", "b"],
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"eventName": ["INSERT", "MODIFY"]}, True),
        ({"eventName": ["REMOVE"]}, False),
        ({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "CONN#"}]}}}}, True),
        ({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "WATCH#"}]}}}}, False),
        ({"dynamodb": {"Keys": {"pk": {"S": [{"suffix": "#123"}]}}}}, True),
        ({"eventName": [{"equals-ignore-case": "modify"}]}, True),
        ({"eventName": [{"anything-but": ["REMOVE"]}]}, True),
        ({"eventName": [{"anything-but": "MODIFY"}]}, False),
        ({"eventName": [{"anything-but": {"prefix": "MOD"}}]}, False),
        ({"dynamodb": {"OldImage": [{"exists": False}]}}, True),
        ({"dynamodb": {"NewImage": {"sequence": [{"exists": True}]}}}, True),
        ({"dynamodb": {"OldImage": [{"exists": True}]}}, False),
        ({"count": [{"numeric": [">", 5, "<=", 7]}]}, True),
        ({"count": [{"numeric": [">", 7]}]}, False),
        ({"count": [7.0]}, True),
        ({"count": ["7"]}, False),  # a string is not a number
        ({"flag": [True]}, True),
        ({"nothing": [None]}, True),
        ({"tags": ["b"]}, True),  # an array matches when any element does
        ({"missing": ["x"]}, False),
        ({"missing": [{"anything-but": "x"}]}, False),  # anything-but needs the field
        ({"eventName": ["MODIFY"], "dynamodb": {"Keys": {"pk": {"S": ["CONN#9"]}}}}, False),  # AND
        ({"$or": [{"eventName": ["REMOVE"]}, {"count": [7]}]}, True),
        ({"$or": [{"eventName": ["REMOVE"]}, {"count": [8]}]}, False),
        ({"dynamodb": ["MODIFY"]}, False),  # a leaf pattern does not match an object
    ],
)
def test_pattern_semantics(pattern: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, STREAM_RECORD) is expected


def test_the_template_emitter_filter_passes_connection_changes_only() -> None:
    template_filter = {
        "Filters": [
            {
                "Pattern": json.dumps(
                    {
                        "eventName": ["INSERT", "MODIFY"],
                        "dynamodb": {"Keys": {"pk": {"S": [{"prefix": "CONN#"}]}}},
                    }
                )
            }
        ]
    }
    patterns = parse_filter_criteria(template_filter)

    def record(event_name: str, pk: str) -> dict[str, Any]:
        return {"eventName": event_name, "dynamodb": {"Keys": {"pk": {"S": pk}}}}

    assert matches_any(patterns, record("INSERT", "CONN#1"))
    assert not matches_any(patterns, record("REMOVE", "CONN#1"))
    assert not matches_any(patterns, record("MODIFY", "POLLER"))


def test_any_filter_may_match_and_no_filters_match_everything() -> None:
    patterns = [{"eventName": ["INSERT"]}, {"eventName": ["REMOVE"]}]
    assert matches_any(patterns, {"eventName": "REMOVE"})
    assert not matches_any(patterns, {"eventName": "MODIFY"})
    assert matches_any([], {"anything": 1})
    assert parse_filter_criteria(None) == []


@pytest.mark.parametrize(
    "pattern",
    [
        {"eventName": [{"wildcard": "M*"}]},
        {"count": [{"numeric": ["~", 1]}]},
        {"eventName": "MODIFY"},
        {"eventName": [{"prefix": "M", "suffix": "Y"}]},
    ],
)
def test_what_the_matcher_cannot_honour_is_an_error(pattern: dict[str, Any]) -> None:
    with pytest.raises(PatternError):
        matches(pattern, STREAM_RECORD)
