"""Every key the product builds from Leap data fits DynamoDB's key limits (bytes of UTF-8).

DynamoDB refuses a partition key value over 2048 bytes or a sort key value over 1024 (GSI key
attributes alike), and one refused item fails a whole BatchWriteItem. The entry id is the only Leap
value inside a key, so the limit on it is computed from the longest prefix put in front of it; these
tests hold every key builder to it, through the real item builders where there is one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leap_tracker import table
from leap_tracker.adapters.poller_store import quarantine_item, snapshot_item
from leap_tracker.adapters.watch_store import item_from_watch
from leap_tracker.config import MeterWatchSettings
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import MalformedEntry, validate_entry
from leap_tracker.meters import schedule
from leap_tracker.outreach import ledger
from leap_tracker.outreach.decision import ALL_REASONS, Because
from leap_tracker.poller.changes import quarantine_record
from leap_tracker.poller.ports import SnapshotWrite
from leap_tracker.timeutil import format_instant
from leap_tracker.webhooks.targeted import InvalidPollRequestMessage, polled_ref_id
from tests.builders import T0, guide_entry

MAX_ATTRIBUTE_NAME_BYTES = 65_535  # a ledger entry is an attribute named SENT#<dedupe key>
CONTENT_HASH = "f" * 64  # sha256 hex: every content hash has this length


def utf8(value: str) -> int:
    return len(value.encode("utf-8"))  # raises on a lone surrogate: such a key could not be sent at all


def fits_partition_key(value: str) -> bool:
    return 0 < utf8(value) <= table.MAX_PARTITION_KEY_BYTES


def fits_sort_key(value: str) -> bool:
    return 0 < utf8(value) <= table.MAX_SORT_KEY_BYTES


def test_the_entry_id_limit_comes_from_the_longest_prefix() -> None:
    longest = max(table.ENTRY_ID_KEY_PREFIXES, key=len)
    assert longest == table.QUARANTINE_PREFIX
    assert table.MAX_ENTRY_ID_BYTES == 2048 - len("QUARANTINE#") == 2037
    for builder in (table.connection_key, table.outreach_state_key, table.watch_key):
        prefix = builder("x")[table.PK].removesuffix("x")
        assert prefix in table.ENTRY_ID_KEY_PREFIXES, f"{builder.__name__}: a prefix the limit ignores"


@pytest.mark.parametrize(
    ("text", "size"),
    [("ascii", 5), ("参", 3), ("🔌", 4), ("é", 2), ("bad\ud800", None)],
)
def test_utf8_length_counts_bytes_and_refuses_what_utf8_cannot_write(text: str, size: int | None) -> None:
    assert table.utf8_length(text) == size


# --- the property: an accepted id fits every key built from it ----------------------------------

any_character = st.characters(exclude_categories=())  # surrogates included: JSON can carry them
candidate_ids = st.builds(
    lambda ascii_length, unit, units, tail: "x" * ascii_length + unit * units + tail,
    st.integers(0, 2_100),
    any_character,
    st.integers(0, 700),
    st.text(any_character, max_size=8),
).filter(lambda text: text.strip())


def keys_built_from(entry_id: str, raw: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Every (pk, sk) the product builds for this entry, by what builds it."""
    entry = validate_entry(raw)
    watch = schedule.new_watch(
        entry_id=entry.entry_id,
        ref_id=entry.ref_id,
        transmission_region="CAISO",
        completed_at=T0,
        sequence=1,
        now=T0,
        settings=MeterWatchSettings(),
    )
    suppressions = [
        table.outreach_suppressed_key(entry_id, ledger.suppression_key(because, reason, CONTENT_HASH))
        for because in Because
        for reason in (*ALL_REASONS, None)
    ]
    quarantine = quarantine_item(quarantine_record(raw, MalformedEntry("late", entry_id), T0))
    items = {
        "snapshot": snapshot_item(SnapshotWrite(entry, 1), T0),
        "quarantine": quarantine,
        "watch": item_from_watch(watch),
    }
    keys = {name: (_text(item[table.PK]), _text(item[table.SK])) for name, item in items.items()}
    keys["outreach state"] = tuple(table.outreach_state_key(entry_id).values())  # type: ignore[assignment]
    keys.update({f"suppression {n}": (k[table.PK], k[table.SK]) for n, k in enumerate(suppressions)})
    return keys


def _text(value: Any) -> str:
    return value["S"] if isinstance(value, dict) else value


@settings(max_examples=300, deadline=None)
@given(entry_id=candidate_ids)
def test_every_key_built_from_an_accepted_entry_id_fits(entry_id: str) -> None:
    raw = {**guide_entry(), wire.ENTRY_ID: entry_id}
    try:
        validate_entry(raw)
    except MalformedEntry:
        return  # refused ids are the quarantine's business (next test)
    for name, (pk, sk) in keys_built_from(entry_id, raw).items():
        assert fits_partition_key(pk), name
        assert fits_sort_key(sk), name


@settings(max_examples=300, deadline=None)
@given(entry_id=candidate_ids)
def test_an_entry_ids_due_bucket_is_one_shard_of_its_kind_and_holds_no_leap_text(entry_id: str) -> None:
    for bucket in (table.METER_WATCH_BUCKET, table.OUTREACH_FOLLOW_UP_BUCKET):
        key = table.due_bucket(bucket, entry_id)
        assert key in table.due_partitions(bucket)[: table.DUE_SHARDS]  # a shard, never the bare bucket
        assert table.in_due_bucket(key, bucket)
        # The funnel's rule: the same stable hash of the entry id, over this index's shards.
        assert key == f"{bucket}#{table.entry_shard(entry_id, table.DUE_SHARDS)}"
    assert table.in_due_bucket(table.METER_WATCH_BUCKET, table.METER_WATCH_BUCKET)  # written before sharding
    assert not table.in_due_bucket(
        table.due_bucket(table.METER_WATCH_BUCKET, entry_id), table.OUTREACH_FOLLOW_UP_BUCKET
    )


@settings(max_examples=300, deadline=None)
@given(entry_id=candidate_ids, ref_id=candidate_ids)
def test_a_quarantined_entry_always_gets_a_key_that_fits(entry_id: str, ref_id: str) -> None:
    raw = {**guide_entry(), wire.ENTRY_ID: entry_id, wire.ENTRY_REF_ID: ref_id}
    try:
        validate_entry(raw)
        problem = MalformedEntry("some other problem", entry_id)
    except MalformedEntry as refused:
        problem = refused
    item = quarantine_item(quarantine_record(raw, problem, T0))
    assert fits_partition_key(item[table.PK]["S"])
    assert fits_sort_key(item[table.SK]["S"])
    for value in item.values():
        if "S" in value:
            utf8(value["S"])  # raises if any string attribute is one DynamoDB could not take


def test_keys_that_hold_no_leap_text_fit_by_construction() -> None:
    # The due-index (a GSI: the same limits) holds a constant bucket (sharded, or bare) and an instant.
    for bucket in (table.METER_WATCH_BUCKET, table.OUTREACH_FOLLOW_UP_BUCKET):
        assert all(fits_partition_key(partition) for partition in table.due_partitions(bucket))
    assert fits_sort_key(format_instant(datetime.max.replace(tzinfo=UTC)))
    # The outreach ledger: one attribute per message, named after its dedupe key.
    longest_reason = max(ALL_REASONS, key=len)
    name = ledger.ledger_attribute(ledger.dedupe_key(longest_reason, CONTENT_HASH, 10**6))
    assert utf8(name) <= MAX_ATTRIBUTE_NAME_BYTES
    # The poller's own items.
    assert fits_partition_key(table.POLLER_PK)
    assert fits_sort_key(table.CHECKPOINT_SK)
    assert fits_sort_key(table.LEASE_SK)


@settings(max_examples=300, deadline=None)
@given(ref_id=candidate_ids)
def test_a_targeted_poll_mark_fits_for_every_reference_id_a_poll_request_takes(ref_id: str) -> None:
    try:
        accepted = polled_ref_id(ref_id)  # the one rule: a ref_id poll's input
    except InvalidPollRequestMessage:
        return
    key = table.targeted_poll_key(accepted)
    assert fits_partition_key(key[table.PK])
    assert fits_sort_key(key[table.SK])
    assert len(table.TARGETED_PREFIX) <= len(table.QUARANTINE_PREFIX)  # MAX_REF_ID_BYTES leaves room
