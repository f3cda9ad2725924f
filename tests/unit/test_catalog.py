"""The event catalog: schemas, ids and SNS message attributes."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator, ValidationError

from devtools import event_samples as samples
from leap_tracker.events import catalog
from leap_tracker.events.diff import change_events
from leap_tracker.leap import wire


def validator(event_type: str) -> Draft202012Validator:
    return Draft202012Validator(
        catalog.json_schema(event_type), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def commercial_events() -> list[dict[str, Any]]:
    history = samples.commercial_history()
    return [
        event
        for sequence, entry in enumerate(history, start=1)
        for event in change_events(history[sequence - 2] if sequence > 1 else None, entry, sequence)
    ]


@pytest.mark.parametrize("event_type", list(catalog.CATALOG))
def test_every_schema_is_a_valid_draft_2020_12_schema(event_type: str) -> None:
    Draft202012Validator.check_schema(catalog.json_schema(event_type))


def test_every_connection_type_of_the_design_is_in_the_catalog() -> None:
    design = {
        "connection.started",
        "connection.not_started",
        "connection.partial",
        "connection.error",
        "connection.completed",
        "utility.connected",
        "utility.not_connected",
        "utility.error",
        "agreement.pending",
        "agreement.completed",
        "meter.appeared",
        "meter.overdue",
    }
    assert design <= set(catalog.CATALOG)


def test_emitted_events_validate_against_their_schema() -> None:
    for event in commercial_events():
        validator(event["type"]).validate(event)


def test_a_schema_rejects_an_event_of_another_type_or_without_its_payload() -> None:
    event = commercial_events()[1]
    other = validator(catalog.CONNECTION_COMPLETED)
    broken = {**event, "data": {k: v for k, v in event["data"].items() if k != "connection"}}

    with pytest.raises(ValidationError):
        other.validate(event)
    with pytest.raises(ValidationError):
        validator(event["type"]).validate(broken)
    with pytest.raises(ValidationError):
        validator(event["type"]).validate({**event, "time": "yesterday"})


def test_event_id_is_deterministic_and_depends_on_every_part() -> None:
    base = catalog.event_id("E", 3, catalog.UTILITY_ERROR, "u1")

    assert base == catalog.event_id("E", 3, catalog.UTILITY_ERROR, "u1")
    assert (
        len(
            {
                base,
                catalog.event_id("F", 3, catalog.UTILITY_ERROR, "u1"),
                catalog.event_id("E", 4, catalog.UTILITY_ERROR, "u1"),
                catalog.event_id("E", 3, catalog.UTILITY_CONNECTED, "u1"),
                catalog.event_id("E", 3, catalog.UTILITY_ERROR, "u2"),
            }
        )
        == 5
    )


def test_sequence_is_zero_padded_so_strings_sort_like_numbers() -> None:
    assert catalog.format_sequence(9) < catalog.format_sequence(10)
    assert catalog.format_sequence(42) == "000000000042"


def test_message_attributes_of_a_utility_event() -> None:
    event = next(e for e in commercial_events() if e["type"] == catalog.UTILITY_ERROR)

    assert catalog.message_attributes(event) == {
        "type": "utility.error",
        "connection_status": "ERROR",
        "transmission_region": "CAISO",
        "error_code": "USER_CANCELED",
    }


def test_connection_events_carry_the_first_error_code_of_a_required_utility() -> None:
    def utility(status: str, error_code: str | None, required: bool) -> dict[str, Any]:
        return {
            wire.UTILITY_STATUS: status,
            wire.UTILITY_ERROR_CODE: error_code,
            wire.UTILITY_IS_REQUIRED: required,
        }

    connection = {
        wire.ENTRY_CONNECTION_STATUS: "ERROR",
        wire.ENTRY_UTILITY_CONNECTIONS: [
            utility("ERROR", "MFA_FAILED", required=False),
            utility("CONNECTED", "STALE", required=True),
            utility("ERROR", None, required=True),
            utility("ERROR", "USER_CANCELED", required=True),
        ],
    }
    event = {"type": catalog.CONNECTION_ERROR, "data": {"connection": connection}}

    assert catalog.message_attributes(event)["error_code"] == "USER_CANCELED"


def test_attributes_without_a_value_are_left_out_and_nothing_personal_goes_in() -> None:
    event = next(e for e in commercial_events() if e["type"] == catalog.CONNECTION_STARTED)
    event["data"]["connection"][wire.ENTRY_TRANSMISSION_REGION] = None

    attributes = catalog.message_attributes(event)

    assert attributes == {"type": "connection.started", "connection_status": "NOT_STARTED"}
    assert set(attributes) <= {
        catalog.ATTR_TYPE,
        catalog.ATTR_CONNECTION_STATUS,
        catalog.ATTR_TRANSMISSION_REGION,
        catalog.ATTR_ERROR_CODE,
    }
