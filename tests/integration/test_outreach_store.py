"""The outreach store in moto: the claim / send / release protocol, the suppression markers and the
follow-up index.

The contract tests run against the in-memory store too (tests/fakes/outreach.py), which the unit tests
use. The last tests run the service on the DynamoDB store with a write failing after an audit, and hold
the republished ``outreach.sent`` / ``outreach.suppressed`` to byte-for-byte equality, as
tests/unit/test_outreach_retries.py does on the in-memory store.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from leap_tracker import table
from leap_tracker.adapters.outreach_store import ClaimLost, DynamoOutreachStore
from leap_tracker.adapters.poller_store import snapshot_item
from leap_tracker.events import catalog
from leap_tracker.events.publishing import OutgoingMessage
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import validate_entry
from leap_tracker.outreach.decision import Action
from leap_tracker.outreach.ledger import Claim, LedgerStatus, Reservation, Stamp, Suppression
from leap_tracker.poller.ports import SnapshotWrite
from leap_tracker.timeutil import format_instant
from tests.builders import ACTIONABLE, entry, stalled_examples, utility
from tests.fakes.dynamodb import FailingWrites
from tests.fakes.outreach import MemoryOutreachStore, RecordingChannel, RecordingSink, outreach_service

NOW = datetime(2025, 3, 5, 10, 0, tzinfo=UTC)
LEASE = NOW + timedelta(minutes=3)
RAW = stalled_examples()["utility_not_connected"]
ENTRY_ID = RAW["id"]
URL = "https://connect.leap.energy/?refId=NotConnected1"


def put_snapshot(client: Any, table_name: str, raw: dict[str, Any], sequence: int) -> None:
    """Store a connection snapshot as the poller does."""
    client.put_item(
        TableName=table_name, Item=snapshot_item(SnapshotWrite(validate_entry(raw), sequence), NOW)
    )


@pytest.fixture
def dynamo_store(dynamodb: Any, connections_table: str) -> DynamoOutreachStore:
    put_snapshot(dynamodb, connections_table, RAW, 3)
    return DynamoOutreachStore(dynamodb, connections_table)


@pytest.fixture(params=["dynamodb", "memory"])
def store(request: pytest.FixtureRequest) -> Any:
    """Either store, holding RAW's snapshot at sequence 3: the same contract for both."""
    if request.param == "memory":
        memory = MemoryOutreachStore()
        memory.put_snapshot(RAW, 3)
        return memory
    return request.getfixturevalue("dynamo_store")


def reservation(
    key: str = "utility_not_connected#h#1",
    attempt: int = 1,
    channels: tuple[str, ...] = ("webhook",),
    sequence: int = 3,
    url: str = URL,
) -> Reservation:
    return Reservation(
        ENTRY_ID, "NotConnected1", key, "utility_not_connected", "h", sequence, attempt, 1, channels, url
    )


def raw_item(store: DynamoOutreachStore, key: dict[str, str]) -> dict[str, Any]:
    item = store._client.get_item(TableName=store._table, Key={k: {"S": v} for k, v in key.items()})
    return {name: next(iter(value.values())) for name, value in item.get("Item", {}).items()}


def suppression(key: str = "cooldown#r#h", decided_at: datetime = NOW, attempts: int = 1) -> Suppression:
    return Suppression(key, "cooldown", "r", "h", decided_at, 3, attempts, NOW + timedelta(hours=48))


# --- the contract (both stores) ---------------------------------------------------------------------


def test_load_reads_the_snapshot_and_an_empty_history(store: Any) -> None:
    snapshot, history = store.load(ENTRY_ID)

    assert snapshot is not None
    assert (snapshot.entry, snapshot.sequence) == (RAW, 3)
    assert snapshot.content_hash == validate_entry(RAW).content_hash
    assert history.attempts == 0
    assert history.last_sent_at is None
    assert store.load("nobody")[0] is None


def test_a_claimed_then_sent_message_is_recorded_and_cannot_be_claimed_again(store: Any) -> None:
    first = reservation()

    claimed = store.claim(first, 0, NOW, LEASE)
    assert (claimed.claim, claimed.stamp, claimed.channels) == (
        Claim.NEW,
        Stamp(NOW, 1, 3, URL),
        ("webhook",),
    )
    store.mark_sent(first, NOW, NOW + timedelta(hours=48), LEASE)

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


def test_a_claim_in_flight_blocks_others_until_its_lease_ends(store: Any) -> None:
    first = reservation()
    other = reservation("agreement_pending#h2#1")
    store.claim(first, 0, NOW, LEASE)

    assert store.claim(first, 0, NOW + timedelta(minutes=1), LEASE).claim is Claim.IN_FLIGHT
    assert store.claim(other, 0, NOW + timedelta(minutes=1), LEASE).claim is Claim.CONFLICT

    after = LEASE + timedelta(seconds=1)
    resumed = store.claim(first, 0, after, after + timedelta(minutes=3))
    assert (resumed.claim, resumed.stamp, resumed.delivered) == (
        Claim.RESUMED,
        Stamp(NOW, 1, 3, URL),
        frozenset(),
    )


def test_a_resume_answers_with_what_the_first_claim_recorded(store: Any) -> None:
    store.claim(reservation(channels=("webhook", "topic")), 0, NOW, LEASE)
    store.release(reservation(channels=("webhook", "topic")), frozenset({"webhook"}), NOW, LEASE)

    # The retry's decision differs (a renumbered attempt, a later sequence, a redeployed configuration).
    retry = reservation(attempt=2, channels=("topic",), sequence=5, url="https://other.test/")
    resumed = store.claim(retry, 0, NOW + timedelta(minutes=1), LEASE + timedelta(minutes=1))

    assert resumed.claim is Claim.RESUMED
    assert resumed.stamp == Stamp(NOW, 1, 3, URL)
    assert (resumed.channels, resumed.delivered) == (("webhook", "topic"), frozenset({"webhook"}))


def test_a_claim_needs_the_attempts_the_decision_saw(store: Any) -> None:
    store.claim(reservation(), 0, NOW, LEASE)
    store.mark_sent(reservation(), NOW, None, LEASE)

    assert store.claim(reservation("x#h#1", attempt=2), 0, NOW, LEASE).claim is Claim.CONFLICT
    assert store.claim(reservation("x#h#1", attempt=2), 1, NOW, LEASE).claim is Claim.NEW


def test_nothing_can_be_claimed_after_completion(store: Any) -> None:
    store.mark_completed(ENTRY_ID, "NotConnected1", NOW)

    assert store.claim(reservation(), 0, NOW, LEASE).claim is Claim.CONFLICT
    assert store.load(ENTRY_ID)[1].completed_at == NOW


def test_release_without_delivery_forgets_the_claim(store: Any) -> None:
    first = reservation()
    store.claim(first, 0, NOW, LEASE)

    store.release(first, frozenset(), NOW, LEASE)

    later = NOW + timedelta(minutes=1)
    assert store.claim(first, 0, later, LEASE).stamp == Stamp(later, 1, 3, URL)  # a new claim, a new stamp


def test_release_after_a_partial_delivery_keeps_it_for_the_retry(store: Any) -> None:
    both = reservation(channels=("topic", "webhook"))
    store.claim(both, 0, NOW, LEASE)

    store.release(both, frozenset({"topic"}), NOW, LEASE)

    retry = store.claim(both, 0, NOW + timedelta(seconds=5), LEASE)
    assert (retry.claim, retry.delivered, retry.stamp.time) == (Claim.RESUMED, frozenset({"topic"}), NOW)


def test_only_the_current_holder_can_mark_or_release(store: Any) -> None:
    first = reservation()
    store.claim(first, 0, NOW, LEASE)
    later = LEASE + timedelta(seconds=1)
    new_lease = later + timedelta(minutes=3)
    assert store.claim(first, 0, later, new_lease).claim is Claim.RESUMED

    with pytest.raises(ClaimLost):
        store.release(first, frozenset(), later, LEASE)  # the original holder, late: not its claim
    store.mark_sent(first, later, None, new_lease)  # the resumer finishes
    store.mark_sent(first, later, None, LEASE)  # the original holder again: already done, no error

    assert store.claim(first, 1, later, new_lease).claim is Claim.ALREADY_SENT
    with pytest.raises(ClaimLost):
        store.mark_sent(reservation("never#claimed#1"), NOW, None, LEASE)


def test_follow_ups_come_due_in_order_and_leave_the_index(store: Any) -> None:
    ids = [f"E{n}" for n in range(3)]
    for n, entry_id in enumerate(ids):
        store.set_follow_up(entry_id, NOW + timedelta(hours=n), create=True)
    store.set_follow_up("no-state-item", NOW)  # without create: nothing happens

    assert list(store.due_follow_ups(NOW + timedelta(hours=1))) == ["E0", "E1"]
    store.set_follow_up("E0", None)
    store.mark_completed("E1", "r", NOW)
    assert list(store.due_follow_ups(NOW + timedelta(days=1))) == ["E2"]
    assert store.load("no-state-item")[1].follow_up_at is None


def test_a_suppression_is_recorded_once_then_marked_published(store: Any) -> None:
    assert store.suppression(ENTRY_ID, "cooldown#r#h") is None

    recorded = store.record_suppression(ENTRY_ID, suppression())
    again = store.record_suppression(ENTRY_ID, suppression(decided_at=NOW + timedelta(hours=1), attempts=2))

    assert recorded == again == store.suppression(ENTRY_ID, "cooldown#r#h") == suppression()
    assert not recorded.published
    store.mark_suppression_published(ENTRY_ID, "cooldown#r#h")
    assert store.suppression(ENTRY_ID, "cooldown#r#h").published
    assert store.suppression(ENTRY_ID, "cooldown#r#other") is None


# --- the DynamoDB items -------------------------------------------------------------------------------


def test_the_ledger_entry_records_the_stamp_and_loses_its_lease_once_sent(
    dynamo_store: DynamoOutreachStore,
) -> None:
    first = reservation()
    dynamo_store.claim(first, 0, NOW, LEASE)
    assert dynamo_store.ledger_entry(ENTRY_ID, first.dedupe_key)["status"] == LedgerStatus.PENDING

    dynamo_store.mark_sent(first, NOW, None, LEASE)

    stored = dynamo_store.ledger_entry(ENTRY_ID, first.dedupe_key)
    assert (stored["status"], stored["webhook_id"], stored["attempt"], stored["sequence"]) == (
        "SENT",
        first.webhook_id,
        1,
        3,
    )
    assert (stored["reserved_at"], stored["connect_url"], stored["channels"]) == (
        format_instant(NOW),
        URL,
        ["webhook"],
    )
    assert "lease_until" not in stored
    assert "pending_key" not in raw_item(dynamo_store, table.outreach_state_key(ENTRY_ID))


def test_an_entry_claimed_before_the_url_was_kept_resumes_with_the_reservations(
    dynamo_store: DynamoOutreachStore,
) -> None:
    first = reservation()
    dynamo_store.claim(first, 0, NOW, LEASE)
    dynamo_store.release(first, frozenset({"webhook"}), NOW, LEASE)
    dynamo_store._client.update_item(  # as older code wrote it
        TableName=dynamo_store._table,
        Key={k: {"S": v} for k, v in table.outreach_state_key(ENTRY_ID).items()},
        UpdateExpression="REMOVE #sent.connect_url",
        ExpressionAttributeNames={"#sent": "SENT#" + first.dedupe_key},
    )

    resumed = dynamo_store.claim(reservation(url="https://now.test/"), 0, NOW + timedelta(minutes=1), LEASE)

    assert resumed.stamp == Stamp(NOW, 1, 3, "https://now.test/")


def test_the_variant_is_recorded_at_the_claim_and_a_resume_keeps_it(
    dynamo_store: DynamoOutreachStore,
) -> None:
    first = replace(reservation(), variant="friendly")
    dynamo_store.claim(first, 0, NOW, LEASE)
    dynamo_store.release(first, frozenset({"webhook"}), NOW, LEASE)
    sent = raw_item(dynamo_store, table.outreach_state_key(ENTRY_ID))["SENT#" + first.dedupe_key]
    assert sent["variant"] == {"S": "friendly"}

    # The retry runs with another templates file: a variant was added and this customer's choice moved.
    retry = replace(reservation(), variant="short")
    resumed = dynamo_store.claim(retry, 0, NOW + timedelta(minutes=1), LEASE + timedelta(minutes=1))

    assert resumed.claim is Claim.RESUMED
    assert resumed.stamp == Stamp(NOW, 1, 3, URL, "friendly")


def test_an_entry_claimed_before_variants_were_kept_resumes_with_the_reservations(
    dynamo_store: DynamoOutreachStore,
) -> None:
    first = reservation()
    dynamo_store.claim(first, 0, NOW, LEASE)
    dynamo_store.release(first, frozenset({"webhook"}), NOW, LEASE)
    dynamo_store._client.update_item(  # as older code wrote it
        TableName=dynamo_store._table,
        Key={k: {"S": v} for k, v in table.outreach_state_key(ENTRY_ID).items()},
        UpdateExpression="REMOVE #sent.variant",
        ExpressionAttributeNames={"#sent": "SENT#" + first.dedupe_key},
    )

    retry = replace(reservation(), variant="b")
    resumed = dynamo_store.claim(retry, 0, NOW + timedelta(minutes=1), LEASE)

    assert resumed.stamp == Stamp(NOW, 1, 3, URL, "b")


def test_the_suppression_marker_item(dynamo_store: DynamoOutreachStore) -> None:
    key = table.outreach_suppressed_key(ENTRY_ID, "cooldown#r#h")
    dynamo_store.record_suppression(ENTRY_ID, suppression())

    assert raw_item(dynamo_store, key) == {
        **key,
        table.ITEM_TYPE: "outreach_suppressed",
        "entry_id": ENTRY_ID,
        "because": "cooldown",
        "reason": "r",
        "content_hash": "h",
        "recorded_at": "2025-03-05T10:00:00Z",
        "sequence": "3",
        "attempts": "1",
        "next_attempt_at": "2025-03-07T10:00:00Z",
        "status": "PENDING",
    }
    dynamo_store.mark_suppression_published(ENTRY_ID, "cooldown#r#h")
    assert raw_item(dynamo_store, key)["status"] == "PUBLISHED"
    with pytest.raises(ClientError):  # never a marker without its decision
        dynamo_store.mark_suppression_published(ENTRY_ID, "cooldown#r#other")


def test_a_marker_written_by_older_code_counts_as_published(dynamo_store: DynamoOutreachStore) -> None:
    key = table.outreach_suppressed_key(ENTRY_ID, "completed#-#h")
    older = {
        "entry_id": ENTRY_ID,
        "because": "completed",
        "content_hash": "h",
        "recorded_at": "2025-03-05T10:00:00Z",
    }
    dynamo_store._client.put_item(
        TableName=dynamo_store._table, Item={name: {"S": value} for name, value in {**key, **older}.items()}
    )

    assert dynamo_store.suppression(ENTRY_ID, "completed#-#h").published


# --- retries republish the audit byte for byte (the service on the DynamoDB store) -------------------


def fail_the_write_after(sink: RecordingSink, writes: FailingWrites, event_type: str) -> None:
    """The table refuses the next write after the first ``event_type`` audit is published, once."""
    armed: list[OutgoingMessage] = []

    def arm(message: OutgoingMessage) -> None:
        if message.attributes["type"] == event_type and not armed:
            armed.append(message)
            writes.remaining = 1

    sink.after_publish = arm


def event_of(raw: dict[str, Any]) -> dict[str, Any]:
    return {"type": "connection.partial", "data": {"connection": raw}}


def same_message(first: OutgoingMessage, again: OutgoingMessage) -> None:
    assert again.body == first.body
    assert again.attributes == first.attributes
    assert again.event_id == first.event_id


FIRST = ACTIONABLE + timedelta(minutes=1)
RETRY = timedelta(minutes=13)


def test_a_retry_after_a_failed_mark_sent_republishes_the_same_outreach_sent(
    dynamodb: Any, connections_table: str
) -> None:
    raw = stalled_examples()["utility_error.USER_CANCELED"]
    put_snapshot(dynamodb, connections_table, raw, 1)
    store, sink, channel = (
        DynamoOutreachStore(dynamodb, connections_table),
        RecordingSink(),
        RecordingChannel(),
    )
    outreach = outreach_service(store, [channel], sink)
    writes = FailingWrites(dynamodb)
    fail_the_write_after(sink, writes, catalog.OUTREACH_SENT)

    with pytest.raises(ClientError):  # delivered and audited, then the mark-sent write failed
        outreach.handle_event(event_of(raw), FIRST, FIRST + timedelta(minutes=3))
    retry = FIRST + RETRY
    assert outreach.handle_event(event_of(raw), retry, retry + timedelta(minutes=3)).action is Action.SEND

    assert writes.failed == ["UpdateItem"]
    first, again = sink.of_type(catalog.OUTREACH_SENT)
    same_message(first, again)
    assert json.loads(again.body)["time"] == format_instant(FIRST)
    assert len(channel.delivered) == 1
    assert store.load(raw["id"])[1].attempts == 1


def test_a_retry_after_a_failed_suppression_marker_republishes_the_same_outreach_suppressed(
    dynamodb: Any, connections_table: str
) -> None:
    raw = stalled_examples()["not_started"]
    put_snapshot(dynamodb, connections_table, raw, 1)
    store, sink = DynamoOutreachStore(dynamodb, connections_table), RecordingSink()
    outreach = outreach_service(store, [RecordingChannel()], sink)
    assert outreach.handle_event(event_of(raw), FIRST, FIRST + timedelta(minutes=3)).action is Action.SEND
    stuck_again = entry(  # a new stage within the cooldown: suppressed
        wire.CONNECTION_ERROR,
        [utility(status=wire.UTILITY_ERROR, error_code=wire.ERROR_MFA_FAILED)],
        ref_id=raw["ref_id"],
        last=ACTIONABLE + timedelta(hours=1),
    )
    put_snapshot(dynamodb, connections_table, stuck_again, 2)
    writes = FailingWrites(dynamodb)
    fail_the_write_after(sink, writes, catalog.OUTREACH_SUPPRESSED)

    decided = FIRST + timedelta(hours=2)
    with pytest.raises(ClientError):  # audited, then the marker write failed
        outreach.handle_event(event_of(raw), decided, decided + timedelta(minutes=3))
    retry = decided + RETRY
    outreach.handle_event(event_of(raw), retry, retry + timedelta(minutes=3))

    assert len(writes.failed) == 1
    first, again = sink.of_type(catalog.OUTREACH_SUPPRESSED)
    same_message(first, again)
    body = json.loads(again.body)
    assert body["time"] == format_instant(decided)
    assert (body["data"]["suppressed_because"], body["data"]["attempts"]) == ("cooldown", 1)
