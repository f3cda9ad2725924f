"""The diff's rules, one example each (the property tests in test_event_diff_properties.py generalise)."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from devtools import event_samples as samples
from leap_tracker.events import catalog
from leap_tracker.events.diff import DiffRules, change_events, changed_fields, match_utilities
from leap_tracker.leap import wire

UUID_A = "910bfb80-8b22-4341-8b5b-8752a21dccad"
UUID_B = "5e0c9a0e-7d55-4c1b-9d0f-3a3f2b1c0d11"
T0 = "2023-01-11T02:44:57Z"
T1 = "2023-01-11T02:45:50Z"


def guide_entry() -> dict[str, Any]:
    """The shape of the example in Leap's guide: one required utility that the customer cancelled."""
    return {
        "id": "CAISO_62631455-9dfd-433b-9482-fd043f2336d4_Test1012",
        "transmission_region": "CAISO",
        "ref_id": "Test1012",
        "start_date_time_utc": T0,
        "last_interaction_date_time_utc": T1,
        "connection_status": "ERROR",
        "utility_connections": [
            samples.utility(UUID_A, samples.SDGE, T1, wire.UTILITY_ERROR, wire.ERROR_USER_CANCELED)
        ],
        "agreements": {
            samples.PRA_AGREEMENT: wire.AGREEMENT_NOT_REQUIRED,
            samples.DR_AGREEMENT: wire.AGREEMENT_NOT_REQUIRED,
        },
    }


def later(entry: dict[str, Any], minutes: int = 70, **fields: Any) -> dict[str, Any]:
    new = copy.deepcopy(entry)
    new["last_interaction_date_time_utc"] = f"2023-01-11T{3 + minutes // 60:02d}:{minutes % 60:02d}:00Z"
    new.update(fields)
    return new


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def test_first_seen_emits_started_then_every_entered_status() -> None:
    events = change_events(None, guide_entry(), 1)

    assert types(events) == [catalog.CONNECTION_STARTED, catalog.CONNECTION_ERROR, catalog.UTILITY_ERROR]
    assert all(event["data"]["previous"] == {} for event in events)
    assert events[2]["data"]["utility"]["error_code"] == wire.ERROR_USER_CANCELED


def test_envelope_is_cloudevents_with_time_sequence_and_actionable_at() -> None:
    event = change_events(None, guide_entry(), 7)[0]

    assert event["specversion"] == "1.0"
    assert event["source"] == catalog.SOURCE
    assert event["subject"] == "Test1012"
    assert event["time"] == T1
    assert event["sequence"] == "000000000007"
    assert event["data"]["actionable_at"] == "2023-01-11T03:45:50Z"
    assert event["data"]["connection"] == guide_entry()


def test_actionable_delay_comes_from_the_rules() -> None:
    rules = DiffRules(actionable_delay=timedelta(minutes=90))

    event = change_events(None, guide_entry(), 1, rules)[0]

    assert event["data"]["actionable_at"] == "2023-01-11T04:15:50Z"


def test_time_is_normalised_to_utc_seconds() -> None:
    entry = {**guide_entry(), "last_interaction_date_time_utc": "2023-01-11T04:45:50.250+02:00"}

    assert change_events(None, entry, 1)[0]["time"] == "2023-01-11T02:45:50Z"


def test_the_same_change_always_gives_the_same_ids() -> None:
    old, new = guide_entry(), later(guide_entry(), connection_status="PARTIAL")

    first = [e["id"] for e in change_events(old, new, 2)]
    again = [e["id"] for e in change_events(copy.deepcopy(old), copy.deepcopy(new), 2)]

    assert first == again
    assert set(first).isdisjoint(e["id"] for e in change_events(old, new, 3))


def test_a_write_that_changed_nothing_emits_nothing() -> None:
    assert change_events(guide_entry(), guide_entry(), 2) == []


def test_a_write_that_entered_no_status_emits_nothing() -> None:
    assert change_events(guide_entry(), later(guide_entry(), extra_field="new"), 2) == []


def test_connection_status_change_carries_what_changed() -> None:
    old = guide_entry()
    new = later(old, connection_status="PARTIAL")

    [event] = change_events(old, new, 2)

    assert event["type"] == catalog.CONNECTION_PARTIAL
    assert event["data"]["previous"] == {
        "connection_status": "ERROR",
        "last_interaction_date_time_utc": T1,
    }


def test_unknown_connection_status_gives_other_status_and_keeps_the_value() -> None:
    [event] = change_events(guide_entry(), later(guide_entry(), connection_status="EXPIRED"), 2)

    assert event["type"] == catalog.CONNECTION_OTHER_STATUS
    assert event["data"]["connection"]["connection_status"] == "EXPIRED"


def test_new_error_code_on_a_utility_in_error_emits_utility_error_again() -> None:
    old = guide_entry()
    new = later(old)
    new["utility_connections"][0]["error_code"] = wire.ERROR_MFA_FAILED

    [event] = change_events(old, new, 2)

    assert event["type"] == catalog.UTILITY_ERROR
    assert event["data"]["utility"]["error_code"] == wire.ERROR_MFA_FAILED
    assert event["data"]["previous"]["utility_connections"] == old["utility_connections"]


def test_utility_entering_connected() -> None:
    old = guide_entry()
    new = later(old, connection_status="COMPLETED")
    new["utility_connections"][0].update(status="CONNECTED", error_code=None)

    assert types(change_events(old, new, 2)) == [catalog.CONNECTION_COMPLETED, catalog.UTILITY_CONNECTED]


def test_unknown_utility_status_and_removed_utility() -> None:
    old = guide_entry()
    old["utility_connections"].append(samples.utility(UUID_B, samples.SCE, T1, "NOT_CONNECTED"))
    new = later(old)
    new["utility_connections"] = [{**old["utility_connections"][1], "status": "REVOKED"}]

    events = change_events(old, new, 2)

    assert types(events) == [catalog.UTILITY_OTHER_STATUS, catalog.UTILITY_REMOVED]
    assert events[0]["data"]["utility"]["status"] == "REVOKED"
    assert events[1]["data"]["utility"] == old["utility_connections"][0]


def test_a_utility_that_gains_its_uuid_stays_the_same_utility() -> None:
    old = guide_entry()
    old["utility_connections"][0]["authorization_uuid"] = None
    new = later(old)
    new["utility_connections"][0]["authorization_uuid"] = UUID_A

    assert change_events(old, new, 2) == []


def test_utilities_are_matched_by_uuid_before_name() -> None:
    first = samples.utility(UUID_A, samples.SDGE, T1, "CONNECTED")
    second = samples.utility(UUID_B, samples.SDGE, T1, "ERROR", "MFA_FAILED")

    pairs, gone = match_utilities([first, second], [second, first])

    assert pairs == [(second, second), (first, first)]
    assert gone == []


def test_two_utilities_with_one_name_and_no_uuid_get_distinct_ids() -> None:
    entry = guide_entry()
    entry["utility_connections"] = [
        samples.utility(None, samples.SDGE, T1, "NOT_CONNECTED"),
        samples.utility(None, samples.SDGE, T1, "NOT_CONNECTED"),
    ]

    events = change_events(None, entry, 1)

    assert types(events).count(catalog.UTILITY_NOT_CONNECTED) == 2
    assert len({event["id"] for event in events}) == len(events)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("NOT_REQUIRED", "PENDING", [catalog.AGREEMENT_PENDING]),
        ("PENDING", "SENT", [catalog.AGREEMENT_PENDING]),
        ("PENDING", "SIGNED", [catalog.AGREEMENT_COMPLETED]),
        ("NOT_REQUIRED", "COMPLETED", [catalog.AGREEMENT_COMPLETED]),
        ("PENDING", "NOT_REQUIRED", [catalog.AGREEMENT_NOT_REQUIRED]),
        ("PENDING", None, [catalog.AGREEMENT_NOT_REQUIRED]),
        (None, "NOT_REQUIRED", []),
        ("NOT_REQUIRED", None, []),
        ("SIGNED", "SIGNED", []),
    ],
)
def test_agreement_transitions(before: str | None, after: str | None, expected: list[str]) -> None:
    old, new = guide_entry(), later(guide_entry())
    for entry, value in ((old, before), (new, after)):
        entry["agreements"].pop(samples.DR_AGREEMENT)
        if value is not None:
            entry["agreements"][samples.DR_AGREEMENT] = value

    events = change_events(old, new, 2)

    assert types(events) == expected
    for event in events:
        assert event["data"]["agreement"] == {"name": samples.DR_AGREEMENT, "status": after}


def test_done_statuses_are_configurable() -> None:
    old = guide_entry()
    new = later(old)
    new["agreements"][samples.DR_AGREEMENT] = "ACKNOWLEDGED"

    default = change_events(old, new, 2)
    custom = change_events(old, new, 2, DiffRules(agreement_done_statuses=frozenset({"ACKNOWLEDGED"})))

    assert types(default) == [catalog.AGREEMENT_PENDING]
    assert types(custom) == [catalog.AGREEMENT_COMPLETED]


def test_first_seen_completed_entry_emits_the_whole_state_in_guide_order() -> None:
    entry = samples.commercial_history()[-1]

    events = change_events(None, entry, 1)

    assert types(events) == [
        catalog.CONNECTION_STARTED,
        catalog.CONNECTION_COMPLETED,
        catalog.UTILITY_CONNECTED,
        catalog.AGREEMENT_COMPLETED,
    ]


def test_missing_lists_are_empty_lists() -> None:
    old = {k: v for k, v in guide_entry().items() if k not in ("utility_connections", "agreements")}
    new = later(old, utility_connections=None, agreements=None)

    assert change_events(old, new, 2) == []


def test_changed_fields_marks_absent_fields_as_null() -> None:
    assert changed_fields({"a": 1, "b": 2}, {"a": 1, "c": 3}) == {"b": 2, "c": None}
    assert changed_fields(None, {"a": 1}) == {}


def test_a_snapshot_without_last_interaction_is_an_error() -> None:
    entry = guide_entry()
    del entry["last_interaction_date_time_utc"]

    with pytest.raises(KeyError):
        change_events(None, entry, 1)
