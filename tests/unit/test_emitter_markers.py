"""Which failure markers the emitter writes and deletes after a publishing pass (leap_tracker.emitter.
markers): one per failed record with what can be read of it and never its entry id in the reason; the
deletes only of records published now, found by one padded sort-key range."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leap_tracker import table
from leap_tracker.emitter.markers import (
    ENTRY_ID_PLACEHOLDER,
    REASON_CHARACTERS,
    FailureMarker,
    MarkerCounts,
    failure_markers,
    failure_reason,
    markers_to_delete,
    published_sort_keys,
    settle_markers,
)
from leap_tracker.emitter.processor import RecordNotPublished, SkippedAfterFailure
from leap_tracker.emitter.stream import NotASnapshot

FAILED_AT = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
ENTRY_ID = "CAISO_3f1e_Client-7"
MISSING = object()
SEQUENCE_3 = {"N": "3"}


def record(
    sequence_number: Any = "4100000000000000001",
    pk: Any = table.CONNECTION_PREFIX + ENTRY_ID,
    sequence: Any = SEQUENCE_3,
    keys: bool = True,
) -> dict[str, Any]:
    """A stream record in Lambda's JSON form; MISSING leaves the attribute out."""
    image: dict[str, Any] = {table.SK: {"S": table.CONNECTION_SK}}
    if pk is not MISSING:
        image[table.PK] = {"S": pk}
    if sequence is not MISSING:
        image[table.CONN_SEQUENCE] = sequence
    change: dict[str, Any] = {"NewImage": image, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    if keys and pk is not MISSING:
        change["Keys"] = {table.PK: {"S": pk}, table.SK: {"S": table.CONNECTION_SK}}
    if sequence_number is not MISSING:
        change["SequenceNumber"] = sequence_number
    return {"eventName": "MODIFY", "eventSource": "aws:dynamodb", "dynamodb": change}


def one_marker(failed_record: dict[str, Any], error: BaseException | None = None) -> FailureMarker:
    [marker] = failure_markers([(failed_record, error or NotASnapshot("why"))], FAILED_AT, 35)
    return marker


def test_a_failed_record_becomes_a_marker_of_its_entry_change() -> None:
    error = RecordNotPublished("4c7a-event-id: InternalError: injected")

    marker = one_marker(record(), error)

    assert marker == FailureMarker(
        stream_sequence="4100000000000000001",
        entry_id=ENTRY_ID,
        sequence=3,
        reason="RecordNotPublished: 4c7a-event-id: InternalError: injected",
        failed_at=FAILED_AT,
        expires_at=int((FAILED_AT + timedelta(days=35)).timestamp()),
    )
    assert marker.sort_key == "4100000000000000001".zfill(table.STREAM_SEQUENCE_DIGITS)
    assert table.emitter_failure_key(marker.stream_sequence)[table.SK] == marker.sort_key


def test_each_failed_record_gets_its_own_marker_in_order() -> None:
    failed = [
        (record("11"), RecordNotPublished("e: Throttling")),
        (record("12"), SkippedAfterFailure("an earlier record of this batch failed")),
    ]

    markers = failure_markers(failed, FAILED_AT, 7)

    assert [m.stream_sequence for m in markers] == ["11", "12"]
    assert markers[1].reason == "SkippedAfterFailure: an earlier record of this batch failed"
    assert {m.expires_at for m in markers} == {int((FAILED_AT + timedelta(days=7)).timestamp())}


def test_the_reason_never_shows_the_entry_id_and_stays_short() -> None:
    error = ValueError(f"cannot read {ENTRY_ID}: " + "x" * 500)

    reason = one_marker(record(), error).reason

    assert ENTRY_ID not in reason
    assert reason.startswith(f"ValueError: cannot read {ENTRY_ID_PLACEHOLDER}: xxx")
    assert len(reason) == REASON_CHARACTERS


def test_a_reason_is_always_text_the_table_can_store() -> None:
    reason = failure_reason(NotASnapshot("field \ud800 is odd"), None)

    assert reason.encode("utf-8").decode("utf-8") == reason


def test_a_record_whose_key_is_not_a_connection_key_still_gets_a_marker() -> None:
    marker = one_marker(record(pk="WATCH#x"))

    assert (marker.entry_id, marker.sequence, marker.stream_sequence) == (None, 3, "4100000000000000001")


def test_without_keys_the_entry_id_is_read_from_the_new_image() -> None:
    assert one_marker(record(keys=False)).entry_id == ENTRY_ID
    assert one_marker(record(pk=MISSING)).entry_id is None


@pytest.mark.parametrize(
    "sequence",
    [MISSING, {"N": "abc"}, {"N": "NaN"}, {"N": "Infinity"}, {"N": "1.5"}, {"N": "0"}, {"S": "3"}, "3"],
    ids=["absent", "not-a-number", "nan", "infinity", "fraction", "zero", "a-string", "not-an-attribute"],
)
def test_an_unreadable_sequence_is_left_out_and_the_marker_kept(sequence: Any) -> None:
    marker = one_marker(record(sequence=sequence))

    assert (marker.entry_id, marker.sequence) == (ENTRY_ID, None)


def test_a_record_without_new_image_still_gets_a_marker() -> None:
    removal = record()
    del removal["dynamodb"]["NewImage"]

    assert (one_marker(removal).entry_id, one_marker(removal).sequence) == (ENTRY_ID, None)


@pytest.mark.parametrize("sequence_number", [MISSING, "", "12a", "1" * 41, 12])
def test_a_record_without_a_usable_stream_sequence_number_cannot_be_marked(sequence_number: Any) -> None:
    with pytest.raises(ValueError, match=r"stream sequence number|SequenceNumber"):
        failure_markers([(record(sequence_number), NotASnapshot("why"))], FAILED_AT, 35)


def test_only_the_markers_of_records_published_now_are_deleted() -> None:
    published = published_sort_keys([record("9"), record("10")])
    found = [table.stream_sequence_sort_key(n) for n in ("9", "10", "95")]  # 95: another shard's

    assert markers_to_delete(published, found) == published
    assert markers_to_delete(published, []) == []


@dataclass
class Store:
    """An in-memory FailureMarkerStore: sort key -> marker, with the calls it got."""

    markers: dict[str, FailureMarker | None] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    fail_on: str = ""

    def find(self, low: str, high: str) -> list[str]:
        self._call("find", (low, high))
        return sorted(key for key in self.markers if low <= key <= high)

    def write(self, markers: Sequence[FailureMarker]) -> None:
        self._call("write", [m.stream_sequence for m in markers])
        self.markers.update({m.sort_key: m for m in markers})

    def delete(self, sort_keys: Sequence[str]) -> None:
        self._call("delete", list(sort_keys))
        for key in sort_keys:
            del self.markers[key]

    def _call(self, name: str, argument: Any) -> None:
        self.calls.append((name, argument))
        if name == self.fail_on:
            raise RuntimeError(f"{name} failed")


def key(stream_sequence: str) -> str:
    return table.stream_sequence_sort_key(stream_sequence)


def test_settling_writes_the_failed_and_deletes_the_published_records_markers() -> None:
    store = Store(markers={key("9"): None, key("10"): None, key("12"): None, key("95"): None})
    failed = [(record("11"), RecordNotPublished("e: refused")), (record("12"), SkippedAfterFailure("x"))]

    counts = settle_markers(store, [record("9"), record("10")], failed, FAILED_AT, 35)

    assert counts == MarkerCounts(written=2, deleted=2)
    # one lookup, by number order (unpadded, "10" < "9"), then deletes of exactly the published ones
    assert store.calls == [
        ("write", ["11", "12"]),
        ("find", (key("9"), key("10"))),
        ("delete", [key("9"), key("10")]),
    ]
    assert sorted(store.markers) == [key("11"), key("12"), key("95")]


def test_a_batch_that_published_everything_without_markers_costs_one_lookup() -> None:
    store = Store()

    counts = settle_markers(store, [record("5"), record("6")], [], FAILED_AT, 35)

    assert counts == MarkerCounts()
    assert store.calls == [("find", (key("5"), key("6")))]


def test_a_batch_that_published_nothing_looks_nothing_up() -> None:
    store = Store()

    counts = settle_markers(store, [], [(record("5"), NotASnapshot("why"))], FAILED_AT, 35)

    assert counts == MarkerCounts(written=1)
    assert store.calls == [("write", ["5"])]


@pytest.mark.parametrize("fail_on", ["write", "find", "delete"])
def test_a_store_error_propagates_and_the_counts_show_what_was_done(fail_on: str) -> None:
    store = Store(markers={key("5"): None}, fail_on=fail_on)
    counts = MarkerCounts()

    with pytest.raises(RuntimeError, match=fail_on):
        settle_markers(store, [record("5")], [(record("6"), NotASnapshot("why"))], FAILED_AT, 35, counts)

    assert counts.written == (0 if fail_on == "write" else 1)
    assert counts.deleted == 0
