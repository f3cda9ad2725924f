"""One Meters search for a batch of watches, and its meters mapped back to each watch (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leap_tracker.config import MeterWatchSettings
from leap_tracker.leap import wire
from leap_tracker.meters import schedule
from leap_tracker.meters.matching import (
    MAX_METER_FIELD_BYTES,
    match_meters,
    search_request,
    searchable,
    summarize,
)
from leap_tracker.meters.model import MeterWatch

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def watch(ref_id: str, completed_at: datetime = T0, entry_id: str | None = None) -> MeterWatch:
    return schedule.new_watch(
        entry_id=entry_id or f"CAISO_x_{ref_id}",
        ref_id=ref_id,
        transmission_region="CAISO",
        completed_at=completed_at,
        sequence=2,
        now=completed_at,
        settings=MeterWatchSettings(),
    )


def meter(
    meter_id: str, *refs: str, created_at: str | None = "2025-03-02T10:00:00.000+00:00"
) -> dict[str, Any]:
    """A Meters v2 meter, with the personal data Leap sends along."""
    body: dict[str, Any] = {
        wire.METER_ID: meter_id,
        wire.METER_CONNECTION_REFERENCES: list(refs),
        wire.METER_UTILITY: {"utility_name": "PGE", "electric_service_account_number": "12243243-121"},
        "customer": {"street_1": "132 My Street", "end_customer_email": "email@address.com"},
    }
    if created_at is not None:
        body[wire.METER_AUDIT] = {wire.METER_AUDIT_CREATED_AT: created_at}
    return body


def test_search_asks_once_for_unique_refs_from_the_earliest_completion() -> None:
    watches = [
        watch("a", T0 + timedelta(hours=3)),
        watch("b", T0),
        watch("a", T0 + timedelta(hours=5), "NYISO_y_a"),
    ]
    request = search_request(watches)
    assert request.reference_ids == ["a", "b"]
    assert request.created_after == T0


def test_search_refuses_more_reference_ids_than_leap_accepts() -> None:
    with pytest.raises(ValueError, match="100"):
        search_request([watch(f"r{i}") for i in range(wire.METERS_MAX_REFERENCE_IDS + 1)])
    with pytest.raises(ValueError, match="at least one"):
        search_request([])


@pytest.mark.parametrize(
    ("ref_id", "accepted"),
    [
        ("abc", True),
        ("ab", False),  # at least 3 characters
        ("x" * 256, True),
        ("x" * 257, False),  # at most 256
        ("参" * 256, True),  # characters, not bytes (768 bytes)
        ("Test1012", True),
        ("unique-reference-id-12345", True),
        *((f"a{c}b", False) for c in "/\\?][{}!#$%^&*()<>|"),
    ],
)
def test_a_reference_id_is_searchable_as_leaps_partner_reference_schema_allows(
    ref_id: str, accepted: bool
) -> None:
    assert searchable(ref_id) is accepted


def test_meters_map_back_to_every_watch_they_name_once_each() -> None:
    a, b, c = watch("a"), watch("b"), watch("c")
    answer = [meter("m1", "a"), meter("m2", "a", "b"), meter("m1", "a"), meter("m9", "zzz")]

    result = match_meters(answer, [a, b, c])

    assert [m.meter_id for m in result.meters_by_entry[a.entry_id]] == ["m1", "m2"]
    assert [m.meter_id for m in result.meters_by_entry[b.entry_id]] == ["m2"]
    assert c.entry_id not in result.meters_by_entry
    assert result.malformed == 0


def test_each_watch_is_held_to_its_own_completion() -> None:
    early = watch("early", T0)
    late = replace(watch("late"), completed_at=T0 + timedelta(days=2))
    answer = [
        meter("m-old", "late", created_at="2025-03-02T10:00:00Z"),  # before "late" completed
        meter("m-new", "late", created_at="2025-03-04T10:00:00Z"),
        meter("m-early", "early", created_at="2025-03-02T10:00:00Z"),
        meter("m-undated", "late", created_at=None),  # no creation time: the search's filter applied
    ]

    result = match_meters(answer, [early, late])

    assert [m.meter_id for m in result.meters_by_entry[late.entry_id]] == ["m-new", "m-undated"]
    assert [m.meter_id for m in result.meters_by_entry[early.entry_id]] == ["m-early"]


@pytest.mark.parametrize(
    "meter_id",
    [
        None,  # absent
        7,
        "",
        ["m1"],
        "m" * (MAX_METER_FIELD_BYTES + 1),  # it would be stored in the watch item and published
        "参" * 100,  # 300 bytes of UTF-8
        "m\ud800",  # not even UTF-8: the watch item could not be written
    ],
    ids=["absent", "number", "empty", "list", "oversized", "oversized-cjk", "lone-surrogate"],
)
def test_meters_without_a_usable_id_are_counted_and_skipped(meter_id: Any) -> None:
    body = {wire.METER_CONNECTION_REFERENCES: ["a"]}
    if meter_id is not None:
        body[wire.METER_ID] = meter_id
    result = match_meters([body, meter("m-good", "a")], [watch("a")])

    assert result.malformed == 1
    assert [m.meter_id for m in result.meters_by_entry["CAISO_x_a"]] == ["m-good"]


@pytest.mark.parametrize(
    "name",
    [7, "", "U" * (MAX_METER_FIELD_BYTES + 1), "U\ud800"],
    ids=["number", "empty", "oversized", "surrogate"],
)
def test_an_unusable_utility_name_is_left_out_and_the_meter_kept(name: Any) -> None:
    body = {**meter("m1", "a"), wire.METER_UTILITY: {wire.UTILITY_NAME: name}}

    summary = summarize(body)

    assert summary is not None
    assert (summary.meter_id, summary.utility_name) == ("m1", None)
    assert summarize(meter("m" * MAX_METER_FIELD_BYTES, "a")) is not None  # at the limit: kept


def test_a_summary_keeps_no_personal_data() -> None:
    summary = summarize(meter("m1", "a", created_at="2025-03-02T10:00:00.000+00:00"))
    assert summary is not None
    assert (summary.meter_id, summary.utility_name) == ("m1", "PGE")
    assert summary.created_at == datetime(2025, 3, 2, 10, 0, tzinfo=UTC)
    assert "12243243" not in repr(summary)
    assert "Street" not in repr(summary)


def test_odd_utility_and_audit_values_do_not_break_a_summary() -> None:
    odd = {
        wire.METER_ID: "m1",
        wire.METER_UTILITY: "PGE",
        wire.METER_AUDIT: {wire.METER_AUDIT_CREATED_AT: "soon"},
    }
    summary = summarize(odd)
    assert summary is not None
    assert (summary.utility_name, summary.created_at) == (None, None)
