"""Change detection: per-entry decision, duplicates in a page, page validation and quarantine."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leap_tracker import table
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import MalformedEntry, UnknownValue, validate_entry
from leap_tracker.poller.changes import (
    MAX_QUARANTINE_REASON_CHARS,
    QUARANTINE_RETENTION,
    ChangeKind,
    EntryChange,
    decide_entry,
    decide_page,
    newest_per_id,
    quarantine_record,
    validate_page,
)
from leap_tracker.poller.ports import StoredState
from tests.builders import T0, guide_entry

EARLY, LATE = T0 - timedelta(hours=3), T0 - timedelta(hours=1)


def test_a_new_entry_is_written_with_sequence_one() -> None:
    assert decide_entry("h1", LATE, None) == EntryChange(ChangeKind.NEW, 1)


def test_the_same_content_is_not_written() -> None:
    assert decide_entry("h1", LATE, StoredState("h1", 4, LATE)) == EntryChange(ChangeKind.UNCHANGED)


def test_changed_content_gets_the_next_sequence() -> None:
    assert decide_entry("h2", LATE, StoredState("h1", 4, EARLY)) == EntryChange(ChangeKind.CHANGED, 5)
    # same last interaction but different content (e.g. an agreement signed): still a change
    assert decide_entry("h2", LATE, StoredState("h1", 4, LATE)) == EntryChange(ChangeKind.CHANGED, 5)


def test_an_older_entry_never_replaces_a_newer_one() -> None:
    assert decide_entry("h0", EARLY, StoredState("h1", 4, LATE)) == EntryChange(ChangeKind.STALE)


def test_an_unreadable_stored_last_interaction_does_not_block_a_change() -> None:
    assert decide_entry("h2", EARLY, StoredState("h1", 4, None)) == EntryChange(ChangeKind.CHANGED, 5)


versions = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(min_value=0, max_value=20)), max_size=30
)


@settings(max_examples=200, deadline=None)
@given(observed=versions)
def test_applying_decisions_never_regresses_and_sequences_strictly_increase(
    observed: list[tuple[str, int]],
) -> None:
    """Feed any order of (content, last interaction) observations through the decision, as polls would."""
    stored: StoredState | None = None
    written: list[int] = []
    for content, hour in observed:
        last = T0 + timedelta(hours=hour)
        decision = decide_entry(content, last, stored)
        if decision.outcome.writes:
            assert decision.sequence == (stored.sequence + 1 if stored else 1)
            if stored is not None:
                assert stored.last_interaction is not None
                assert last >= stored.last_interaction
                assert content != stored.content_hash  # never rewrite the same content
            stored = StoredState(content, int(decision.sequence or 0), last)
            written.append(stored.sequence)
        else:
            assert stored is not None
            assert decision.sequence is None
    assert written == list(range(1, len(written) + 1))


def test_duplicates_in_a_page_keep_the_newest_then_the_later_one() -> None:
    old = validate_entry(guide_entry("a", last=EARLY))
    new = validate_entry(guide_entry("a", last=LATE))
    tie = validate_entry(guide_entry("a", last=LATE, status=wire.CONNECTION_COMPLETED))
    other = validate_entry(guide_entry("b"))
    assert newest_per_id([new, other, old]) == [new, other]
    assert newest_per_id([old, new, tie]) == [tie]


def test_a_page_is_validated_entry_by_entry_and_malformed_ones_are_quarantined() -> None:
    good = [guide_entry(f"ok-{n}") for n in range(3)]
    no_date = guide_entry("bad-date")
    no_date[wire.ENTRY_LAST_INTERACTION] = "yesterday"
    page = [good[0], no_date, good[1], "garbage", good[2], guide_entry("ok-1", last=EARLY)]
    checked = validate_page(page, T0)
    assert [entry.ref_id for entry in checked.valid] == ["ok-0", "ok-1", "ok-2"]
    assert checked.duplicates == 1
    reasons = {record.key: record.reason for record in checked.quarantined}
    assert reasons[no_date[wire.ENTRY_ID]].startswith(wire.ENTRY_LAST_INTERACTION)
    anonymous = [record for record in checked.quarantined if record.entry_id is None]
    assert len(anonymous) == 1
    assert anonymous[0].key.startswith("sha256:")
    assert anonymous[0].raw_json == '"garbage"'
    assert all(record.expires_at == T0 + QUARANTINE_RETENTION for record in checked.quarantined)
    assert checked.max_last_interaction == max(entry.last_interaction for entry in checked.valid)


@pytest.mark.parametrize(
    ("entry_id", "keyed_by_id"),
    [
        pytest.param("CAISO_u_ok", True, id="fits"),
        pytest.param("x" * table.MAX_ENTRY_ID_BYTES, True, id="ascii-at-the-limit"),
        pytest.param("x" * (table.MAX_ENTRY_ID_BYTES + 1), False, id="ascii-one-byte-over"),
        pytest.param("参" * 700, False, id="700-cjk-characters"),
        pytest.param("bad\ud800", False, id="lone-surrogate"),
    ],
)
def test_a_quarantine_key_is_the_entry_id_only_when_it_fits(entry_id: str, keyed_by_id: bool) -> None:
    raw = {**guide_entry(), wire.ENTRY_ID: entry_id}
    record = quarantine_record(raw, MalformedEntry("something", entry_id), T0)
    assert (record.key == entry_id) is keyed_by_id
    assert (record.entry_id == entry_id) is keyed_by_id  # the attribute too: it must be valid text
    if not keyed_by_id:
        assert record.key.startswith("sha256:")
        assert record.entry_id is None
    assert table.entry_id_fits(record.key)


def test_a_quarantine_reason_is_storable_text_of_bounded_length() -> None:
    # A reason may quote a name Leap sent (an agreement's), which may be huge or not valid UTF-8.
    record = quarantine_record({}, MalformedEntry("agreements.\ud800" + "n" * 500_000), T0)
    assert len(record.reason) <= MAX_QUARANTINE_REASON_CHARS + 5  # the surrogate's escape
    assert record.reason.startswith("agreements.\\ud800n")
    record.reason.encode("utf-8")  # would raise if DynamoDB could not take it


def test_unknown_values_are_counted_per_page() -> None:
    page = [
        guide_entry("a", status="PAUSED"),
        guide_entry("b", utility_status="ERROR", error_code="ACCOUNT_LOCKED"),
        guide_entry("c", utility_status="ERROR", error_code="ACCOUNT_LOCKED"),
    ]
    checked = validate_page(page, T0)
    assert checked.unknown_values == Counter(
        {
            UnknownValue(wire.ENTRY_CONNECTION_STATUS, "PAUSED"): 1,
            UnknownValue("utility_connections.error_code", "ACCOUNT_LOCKED"): 2,
        }
    )
    assert len(checked.valid) == 3
    assert not checked.quarantined


def test_decide_page_writes_only_new_and_changed() -> None:
    entries = [validate_entry(guide_entry(ref, last=LATE)) for ref in ("new", "same", "changed", "stale")]
    by_ref = {entry.ref_id: entry for entry in entries}
    stored = {
        by_ref["same"].entry_id: StoredState(by_ref["same"].content_hash, 2, LATE),
        by_ref["changed"].entry_id: StoredState("other", 7, EARLY),
        by_ref["stale"].entry_id: StoredState("other", 3, LATE + timedelta(minutes=1)),
    }
    changes = decide_page(entries, stored)
    assert [(write.entry.ref_id, write.sequence) for write in changes.writes] == [("new", 1), ("changed", 8)]
    assert changes.count(ChangeKind.UNCHANGED) == 1
    assert changes.count(ChangeKind.STALE) == 1


def test_an_empty_page_has_no_watermark_candidate() -> None:
    checked = validate_page([], T0)
    assert checked.valid == []
    assert checked.max_last_interaction is None
