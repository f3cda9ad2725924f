"""The outreach store in moto: the claim / send / release protocol and the follow-up index."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devtools.template_tables import create_connections_table
from leap_tracker import table
from leap_tracker.adapters.outreach_store import ClaimLost, DynamoOutreachStore
from leap_tracker.adapters.poller_store import snapshot_item
from leap_tracker.leap.connect_model import validate_entry
from leap_tracker.outreach.ledger import Claim, LedgerStatus, Reservation
from leap_tracker.poller.ports import SnapshotWrite
from tests.builders import stalled_examples

TABLE = "connections"
NOW = datetime(2025, 3, 5, 10, 0, tzinfo=UTC)
LEASE = NOW + timedelta(minutes=3)
RAW = stalled_examples()["utility_not_connected"]
ENTRY_ID = RAW["id"]


@pytest.fixture
def store() -> Iterator[DynamoOutreachStore]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_connections_table(client)
        client.put_item(TableName=TABLE, Item=snapshot_item(SnapshotWrite(validate_entry(RAW), 3), NOW))
        yield DynamoOutreachStore(client, TABLE)


def reservation(
    key: str = "utility_not_connected#h#1", attempt: int = 1, channels=("webhook",)
) -> Reservation:
    return Reservation(ENTRY_ID, "NotConnected1", key, "utility_not_connected", "h", 3, attempt, 1, channels)


def raw_item(store: DynamoOutreachStore, key: dict[str, str]) -> dict[str, Any]:
    item = store._client.get_item(TableName=TABLE, Key={k: {"S": v} for k, v in key.items()}).get("Item", {})
    return {name: next(iter(value.values())) for name, value in item.items()}


def test_load_reads_the_snapshot_and_an_empty_history(store: DynamoOutreachStore) -> None:
    snapshot, history = store.load(ENTRY_ID)

    assert snapshot is not None
    assert (snapshot.entry, snapshot.sequence) == (RAW, 3)
    assert snapshot.content_hash == validate_entry(RAW).content_hash
    assert history.attempts == 0
    assert history.last_sent_at is None
    assert store.load("nobody")[0] is None


def test_a_claimed_then_sent_message_is_recorded_and_cannot_be_claimed_again(
    store: DynamoOutreachStore,
) -> None:
    first = reservation()

    assert store.claim(first, 0, NOW, LEASE).claim is Claim.NEW
    assert store.ledger_entry(ENTRY_ID, first.dedupe_key)["status"] == LedgerStatus.PENDING
    store.mark_sent(first, NOW, NOW + timedelta(hours=48), LEASE)

    entry = store.ledger_entry(ENTRY_ID, first.dedupe_key)
    assert (entry["status"], entry["webhook_id"], entry["attempt"]) == ("SENT", first.webhook_id, 1)
    assert "lease_until" not in entry
    assert "pending_key" not in raw_item(store, table.outreach_state_key(ENTRY_ID))
    _, history = store.load(ENTRY_ID)
    assert (history.attempts, history.last_sent_at, history.last_reason, history.state_sends) == (
        1,
        NOW,
        "utility_not_connected",
        1,
    )
    assert history.follow_up_at == NOW + timedelta(hours=48)
    assert store.claim(first, 0, NOW, LEASE).claim is Claim.ALREADY_SENT
    assert store.claim(first, 1, NOW, LEASE).claim is Claim.ALREADY_SENT


def test_a_claim_in_flight_blocks_others_until_its_lease_ends(store: DynamoOutreachStore) -> None:
    first = reservation()
    other = reservation("agreement_pending#h2#1")
    store.claim(first, 0, NOW, LEASE)

    assert store.claim(first, 0, NOW + timedelta(minutes=1), LEASE).claim is Claim.IN_FLIGHT
    assert store.claim(other, 0, NOW + timedelta(minutes=1), LEASE).claim is Claim.CONFLICT

    after = LEASE + timedelta(seconds=1)
    resumed = store.claim(first, 0, after, after + timedelta(minutes=3))
    assert (resumed.claim, resumed.reserved_at, resumed.delivered) == (Claim.RESUMED, NOW, frozenset())


def test_a_claim_needs_the_attempts_the_decision_saw(store: DynamoOutreachStore) -> None:
    store.claim(reservation(), 0, NOW, LEASE)
    store.mark_sent(reservation(), NOW, None, LEASE)

    assert store.claim(reservation("x#h#1", attempt=2), 0, NOW, LEASE).claim is Claim.CONFLICT
    assert store.claim(reservation("x#h#1", attempt=2), 1, NOW, LEASE).claim is Claim.NEW


def test_nothing_can_be_claimed_after_completion(store: DynamoOutreachStore) -> None:
    store.mark_completed(ENTRY_ID, "NotConnected1", NOW)

    assert store.claim(reservation(), 0, NOW, LEASE).claim is Claim.CONFLICT
    assert store.load(ENTRY_ID)[1].completed_at == NOW


def test_release_without_delivery_forgets_the_claim(store: DynamoOutreachStore) -> None:
    first = reservation()
    store.claim(first, 0, NOW, LEASE)

    store.release(first, frozenset(), NOW, LEASE)

    assert store.ledger_entry(ENTRY_ID, first.dedupe_key) is None
    assert "pending_key" not in raw_item(store, table.outreach_state_key(ENTRY_ID))
    assert store.claim(first, 0, NOW, LEASE).claim is Claim.NEW


def test_release_after_a_partial_delivery_keeps_it_for_the_retry(store: DynamoOutreachStore) -> None:
    both = reservation(channels=("topic", "webhook"))
    store.claim(both, 0, NOW, LEASE)

    store.release(both, frozenset({"topic"}), NOW, LEASE)

    retry = store.claim(both, 0, NOW + timedelta(seconds=5), LEASE)
    assert (retry.claim, retry.delivered, retry.reserved_at) == (Claim.RESUMED, frozenset({"topic"}), NOW)


def test_only_the_current_holder_can_mark_or_release(store: DynamoOutreachStore) -> None:
    first = reservation()
    store.claim(first, 0, NOW, LEASE)
    later = LEASE + timedelta(seconds=1)
    new_lease = later + timedelta(minutes=3)
    assert store.claim(first, 0, later, new_lease).claim is Claim.RESUMED

    with pytest.raises(ClaimLost):
        store.release(first, frozenset(), later, LEASE)  # the original holder, late: not its claim
    store.mark_sent(first, later, None, new_lease)  # the resumer finishes
    store.mark_sent(first, later, None, LEASE)  # the original holder again: already done, no error

    assert store.ledger_entry(ENTRY_ID, first.dedupe_key)["status"] == "SENT"
    with pytest.raises(ClaimLost):
        store.mark_sent(reservation("never#claimed#1"), NOW, None, LEASE)


def test_follow_ups_come_due_in_order_and_leave_the_index(store: DynamoOutreachStore) -> None:
    ids = [f"E{n}" for n in range(3)]
    for n, entry_id in enumerate(ids):
        store.set_follow_up(entry_id, NOW + timedelta(hours=n), create=True)
    store.set_follow_up("no-state-item", NOW)  # without create: nothing happens

    assert list(store.due_follow_ups(NOW + timedelta(hours=1))) == ["E0", "E1"]
    store.set_follow_up("E0", None)
    store.mark_completed("E1", "r", NOW)
    assert list(store.due_follow_ups(NOW + timedelta(days=1))) == ["E2"]
    assert raw_item(store, table.outreach_state_key("no-state-item")) == {}


def test_suppression_markers(store: DynamoOutreachStore) -> None:
    assert not store.suppression_published(ENTRY_ID, "cooldown#r#h")

    store.record_suppression(ENTRY_ID, "cooldown#r#h", "cooldown", "r", "h", NOW)

    assert store.suppression_published(ENTRY_ID, "cooldown#r#h")
    assert not store.suppression_published(ENTRY_ID, "cooldown#r#other")
