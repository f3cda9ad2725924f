"""The meter.* CloudEvents: valid against the catalog's schemas, deterministic ids, no personal data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from leap_tracker.config import MeterWatchSettings
from leap_tracker.events import catalog
from leap_tracker.events.publishing import to_message
from leap_tracker.meters import schedule
from leap_tracker.meters.events import watch_event
from leap_tracker.meters.model import MeterSummary

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
RULES = MeterWatchSettings()
WATCH = schedule.new_watch(
    entry_id="CAISO_e1_ref-1",
    ref_id="ref-1",
    transmission_region="CAISO",
    completed_at=T0,
    sequence=5,
    now=T0,
    settings=RULES,
)
METERS = [
    MeterSummary("3fa85f64-5717-4562-b3fc-2c963f66afa6", "PGE", T0 + timedelta(hours=20)),
    MeterSummary("3fa85f64-5717-4562-b3fc-2c963f66afa7", None, None),
]


def event_of(event_type: str, checked_at: datetime = T0 + timedelta(hours=30)) -> dict:
    meter_ids = [m.meter_id for m in METERS] if event_type == catalog.METER_APPEARED else []
    after = schedule.after_check(WATCH, meter_ids, checked_at, RULES).watch
    return watch_event(event_type, after, checked_at, RULES, METERS)


@pytest.mark.parametrize(
    "event_type", [catalog.METER_APPEARED, catalog.METER_OVERDUE, catalog.METER_WATCH_EXPIRED]
)
def test_each_event_is_valid_against_its_schema(event_type: str) -> None:
    event = event_of(event_type)
    Draft202012Validator(catalog.json_schema(event_type), format_checker=FormatChecker()).validate(event)
    assert event["subject"] == "ref-1"
    assert event["sequence"] == catalog.format_sequence(5)  # the completion's
    assert event["data"]["checks"] == 1


def test_each_event_is_dated_when_its_fact_became_true() -> None:
    assert event_of(catalog.METER_APPEARED)["time"] == "2025-03-02T05:00:00Z"  # the first meter's creation
    assert event_of(catalog.METER_WATCH_EXPIRED)["time"] == "2025-03-15T09:00:00Z"  # the horizon
    undated = schedule.after_check(WATCH, ["m"], T0 + timedelta(hours=30), RULES).watch
    event = watch_event(catalog.METER_APPEARED, undated, T0 + timedelta(hours=30), RULES, [METERS[1]])
    assert event["time"] == "2025-03-02T15:00:00Z"  # no creation time: the check that found it


def test_appeared_carries_meter_ids_and_utility_only() -> None:
    event = event_of(catalog.METER_APPEARED)
    assert event["data"]["meters"] == [
        {"meter_id": METERS[0].meter_id, "utility_name": "PGE", "created_at": "2025-03-02T05:00:00Z"},
        {"meter_id": METERS[1].meter_id, "utility_name": None, "created_at": None},
    ]


def test_ids_and_times_depend_on_the_watch_and_type_not_on_when_it_was_checked() -> None:
    first = event_of(catalog.METER_OVERDUE, T0 + timedelta(hours=72))
    retried = event_of(catalog.METER_OVERDUE, T0 + timedelta(hours=73))
    assert first["id"] == retried["id"]
    assert first["time"] == retried["time"] == "2025-03-04T09:00:00Z"  # the overdue moment
    assert first["id"] != event_of(catalog.METER_WATCH_EXPIRED)["id"]
    assert first["id"] != catalog.event_id(WATCH.entry_id, WATCH.sequence, catalog.METER_OVERDUE)


def test_message_attributes_let_partners_filter_by_type_and_region() -> None:
    message = to_message(event_of(catalog.METER_APPEARED), WATCH.entry_id)
    assert dict(message.attributes) == {"type": catalog.METER_APPEARED, "transmission_region": "CAISO"}
    assert json.loads(message.body)["id"] == message.event_id


def test_other_types_are_refused() -> None:
    with pytest.raises(ValueError, match="not a meter watch event"):
        watch_event(catalog.CONNECTION_COMPLETED, WATCH, T0, RULES)
