"""Outreach's DynamoDB store: the customer state, the permanent ledger and suppression markers.

Item formats are documented in ``leap_tracker.outreach.ledger``; keys come from ``leap_tracker.table``.
Every decision-relevant write is conditional, and the two that must agree (ledger entry and customer
state) change together in one ``TransactWriteItems``:

- claim: ledger ``SENT#<key>`` put if absent (PENDING) + state: take the single in-flight slot, only if
  ``attempts`` is still what the decision saw and the customer has not completed;
- mark sent: ledger PENDING -> SENT + state: attempts, last message, next follow-up, slot freed;
- release: ledger deleted (nothing delivered) or kept PENDING with its lease ended + slot freed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from leap_tracker import table
from leap_tracker.outreach.decision import History, Snapshot
from leap_tracker.outreach.ledger import (
    SENT_ITEM_TYPE,
    STATE_ITEM_TYPE,
    SUPPRESSED_ITEM_TYPE,
    Claim,
    ClaimResult,
    LedgerStatus,
    Reservation,
    SentAttr,
    StateAttr,
    SuppressedAttr,
)
from leap_tracker.timeutil import format_instant, parse_instant

MAX_BATCH_GET_TRIES = 5
_CONDITION_FAILED = "ConditionalCheckFailed"
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class OutreachDynamoStore:
    """Implements ``leap_tracker.outreach.ports.OutreachStore`` on the one table (low-level client)."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    # --- reads ----------------------------------------------------------------------------------

    def load(self, entry_id: str) -> tuple[Snapshot | None, History]:
        connection_key = _key(table.connection_key(entry_id))
        state_key = _key(table.outreach_state_key(entry_id))
        by_pk: dict[str, dict[str, Any]] = {}
        request = {self._table: {"Keys": [connection_key, state_key], "ConsistentRead": True}}
        for _ in range(MAX_BATCH_GET_TRIES):  # one round trip for both items; unprocessed keys are rare
            response = self._client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(self._table, []):
                by_pk[item[table.PK]["S"]] = _deserialize(item)
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
        else:
            raise RuntimeError(f"DynamoDB left keys of {entry_id} unprocessed after {MAX_BATCH_GET_TRIES} tries")
        connection = by_pk.get(connection_key[table.PK]["S"])
        state = by_pk.get(state_key[table.PK]["S"], {})
        return (snapshot_from_item(connection) if connection else None), history_from_item(state)

    def suppression_published(self, entry_id: str, key: str) -> bool:
        response = self._client.get_item(
            TableName=self._table,
            Key=_key(table.outreach_suppressed_key(entry_id, key)),
            ConsistentRead=True,
            ProjectionExpression="#pk",
            ExpressionAttributeNames={"#pk": table.PK},
        )
        return "Item" in response

    def due_follow_ups(self, now: datetime) -> Iterator[str]:
        paginator = self._client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self._table,
            IndexName=table.DUE_INDEX,
            KeyConditionExpression="#bucket = :bucket AND #due <= :now",
            ExpressionAttributeNames={
                "#bucket": table.DUE_BUCKET_ATTRIBUTE,
                "#due": table.DUE_AT_ATTRIBUTE,
                "#pk": table.PK,
            },
            ExpressionAttributeValues={
                ":bucket": {"S": table.OUTREACH_FOLLOW_UP_BUCKET},
                ":now": {"S": format_instant(now)},
            },
            ProjectionExpression="#pk",
        )
        for page in pages:
            for item in page.get("Items", []):
                yield table.entry_id_from_outreach_pk(item[table.PK]["S"])

    # --- the ledger -----------------------------------------------------------------------------

    def claim(
        self, reservation: Reservation, expected_attempts: int, now: datetime, lease_until: datetime
    ) -> ClaimResult:
        sent = _sent_item(reservation, now, lease_until)
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": _serialize(sent),
                            "ConditionExpression": "attribute_not_exists(#pk)",
                            "ExpressionAttributeNames": {"#pk": table.PK},
                        }
                    },
                    {"Update": self._take_slot(reservation, expected_attempts, now, lease_until)},
                ]
            )
        except ClientError as error:
            reasons = _cancellation_codes(error)
            if not reasons or reasons[0] != _CONDITION_FAILED:
                return ClaimResult(Claim.CONFLICT)
            return self._existing_claim(reservation, expected_attempts, now, lease_until)
        return ClaimResult(Claim.NEW, reserved_at=now)

    def _existing_claim(
        self, reservation: Reservation, expected_attempts: int, now: datetime, lease_until: datetime
    ) -> ClaimResult:
        response = self._client.get_item(
            TableName=self._table,
            Key=_key(table.outreach_sent_key(reservation.entry_id, reservation.dedupe_key)),
            ConsistentRead=True,
        )
        existing = _deserialize(response.get("Item") or {})
        if not existing:  # released between our put and this read: let the retry start over
            return ClaimResult(Claim.CONFLICT)
        if existing.get(SentAttr.STATUS) == LedgerStatus.SENT:
            return ClaimResult(Claim.ALREADY_SENT)
        previous_lease = str(existing.get(SentAttr.LEASE_UNTIL, ""))
        if previous_lease and parse_instant(previous_lease) > now:
            return ClaimResult(Claim.IN_FLIGHT)
        try:  # the holder died or failed part-way: take the entry over, with the slot
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": _key(table.outreach_sent_key(reservation.entry_id, reservation.dedupe_key)),
                            "UpdateExpression": "SET #lease = :lease",
                            "ConditionExpression": "#status = :pending AND #lease = :previous",
                            "ExpressionAttributeNames": {"#lease": SentAttr.LEASE_UNTIL, "#status": SentAttr.STATUS},
                            "ExpressionAttributeValues": _serialize(
                                {
                                    ":lease": format_instant(lease_until),
                                    ":pending": LedgerStatus.PENDING.value,
                                    ":previous": previous_lease,
                                }
                            ),
                        }
                    },
                    {"Update": self._take_slot(reservation, expected_attempts, now, lease_until)},
                ]
            )
        except ClientError as error:
            if _cancellation_codes(error):
                return ClaimResult(Claim.CONFLICT)
            raise
        return ClaimResult(
            Claim.RESUMED,
            reserved_at=parse_instant(str(existing[SentAttr.RESERVED_AT])),
            delivered=frozenset(existing.get(SentAttr.DELIVERED) or ()),
        )

    def _take_slot(
        self, reservation: Reservation, expected_attempts: int, now: datetime, lease_until: datetime
    ) -> dict[str, Any]:
        attempts_unchanged = (
            "(attribute_not_exists(#attempts) OR #attempts = :expected)"
            if expected_attempts == 0
            else "#attempts = :expected"
        )
        slot_free = "(attribute_not_exists(#pending) OR #pending = :key OR #pending_until < :now)"
        return {
            "TableName": self._table,
            "Key": _key(table.outreach_state_key(reservation.entry_id)),
            "UpdateExpression": (
                "SET #pending = :key, #pending_until = :lease, #entry = :entry, #ref = :ref, "
                "#item_type = :item_type, #updated = :now"
            ),
            "ConditionExpression": f"{attempts_unchanged} AND attribute_not_exists(#completed) AND {slot_free}",
            "ExpressionAttributeNames": {
                "#attempts": StateAttr.ATTEMPTS,
                "#pending": StateAttr.PENDING_KEY,
                "#pending_until": StateAttr.PENDING_UNTIL,
                "#completed": StateAttr.COMPLETED_AT,
                "#entry": StateAttr.ENTRY_ID,
                "#ref": StateAttr.REF_ID,
                "#item_type": table.ITEM_TYPE,
                "#updated": StateAttr.UPDATED_AT,
            },
            "ExpressionAttributeValues": _serialize(
                {
                    ":expected": expected_attempts,
                    ":key": reservation.dedupe_key,
                    ":lease": format_instant(lease_until),
                    ":now": format_instant(now),
                    ":entry": reservation.entry_id,
                    ":ref": reservation.ref_id,
                    ":item_type": STATE_ITEM_TYPE,
                }
            ),
        }

    def release(self, reservation: Reservation, delivered: frozenset[str], now: datetime) -> None:
        sent_key = _key(table.outreach_sent_key(reservation.entry_id, reservation.dedupe_key))
        pending = {"#status": SentAttr.STATUS}
        if delivered:  # keep it: the retry resumes it and skips these channels
            sent_op = {
                "Update": {
                    "TableName": self._table,
                    "Key": sent_key,
                    "UpdateExpression": "SET #lease = :now, #delivered = :delivered",
                    "ConditionExpression": "#status = :pending",
                    "ExpressionAttributeNames": {
                        **pending,
                        "#lease": SentAttr.LEASE_UNTIL,
                        "#delivered": SentAttr.DELIVERED,
                    },
                    "ExpressionAttributeValues": _serialize(
                        {":now": format_instant(now), ":delivered": set(delivered), ":pending": LedgerStatus.PENDING.value}
                    ),
                }
            }
        else:
            sent_op = {
                "Delete": {
                    "TableName": self._table,
                    "Key": sent_key,
                    "ConditionExpression": "#status = :pending",
                    "ExpressionAttributeNames": pending,
                    "ExpressionAttributeValues": _serialize({":pending": LedgerStatus.PENDING.value}),
                }
            }
        self._client.transact_write_items(TransactItems=[sent_op, {"Update": self._free_slot(reservation)}])

    def _free_slot(self, reservation: Reservation) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "Key": _key(table.outreach_state_key(reservation.entry_id)),
            "UpdateExpression": "REMOVE #pending, #pending_until",
            "ConditionExpression": "#pending = :key",
            "ExpressionAttributeNames": {"#pending": StateAttr.PENDING_KEY, "#pending_until": StateAttr.PENDING_UNTIL},
            "ExpressionAttributeValues": _serialize({":key": reservation.dedupe_key}),
        }

    def mark_sent(self, reservation: Reservation, now: datetime, follow_up_at: datetime | None) -> None:
        names = {
            "#pending": StateAttr.PENDING_KEY,
            "#pending_until": StateAttr.PENDING_UNTIL,
            "#attempts": StateAttr.ATTEMPTS,
            "#last_sent": StateAttr.LAST_SENT_AT,
            "#last_reason": StateAttr.LAST_REASON,
            "#last_state": StateAttr.LAST_STATE,
            "#state_sends": StateAttr.STATE_SENDS,
            "#last_key": StateAttr.LAST_DEDUPE_KEY,
            "#updated": StateAttr.UPDATED_AT,
            "#bucket": table.DUE_BUCKET_ATTRIBUTE,
            "#due": table.DUE_AT_ATTRIBUTE,
        }
        values: dict[str, Any] = {
            ":key": reservation.dedupe_key,
            ":attempt": reservation.attempt,
            ":now": format_instant(now),
            ":reason": reservation.reason,
            ":state": reservation.content_hash,
            ":state_sends": reservation.state_sends,
        }
        assignments = (
            "#attempts = :attempt, #last_sent = :now, #last_reason = :reason, #last_state = :state, "
            "#state_sends = :state_sends, #last_key = :key, #updated = :now"
        )
        removals = "#pending, #pending_until"
        if follow_up_at is None:
            removals += ", #bucket, #due"
        else:
            assignments += ", #bucket = :bucket, #due = :due"
            values |= {":bucket": table.OUTREACH_FOLLOW_UP_BUCKET, ":due": format_instant(follow_up_at)}
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": _key(table.outreach_sent_key(reservation.entry_id, reservation.dedupe_key)),
                            "UpdateExpression": "SET #status = :sent, #sent_at = :now REMOVE #lease",
                            "ConditionExpression": "#status = :pending",
                            "ExpressionAttributeNames": {
                                "#status": SentAttr.STATUS,
                                "#sent_at": SentAttr.SENT_AT,
                                "#lease": SentAttr.LEASE_UNTIL,
                            },
                            "ExpressionAttributeValues": _serialize(
                                {
                                    ":sent": LedgerStatus.SENT.value,
                                    ":pending": LedgerStatus.PENDING.value,
                                    ":now": format_instant(now),
                                }
                            ),
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": _key(table.outreach_state_key(reservation.entry_id)),
                            "UpdateExpression": f"SET {assignments} REMOVE {removals}",
                            "ConditionExpression": "#pending = :key",
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": _serialize(values),
                        }
                    },
                ]
            )
        except ClientError as error:
            if _cancellation_codes(error) and self._status(reservation) == LedgerStatus.SENT:
                return  # our lease ran out and a resumer finished the same message: nothing left to do
            raise

    def _status(self, reservation: Reservation) -> str | None:
        response = self._client.get_item(
            TableName=self._table,
            Key=_key(table.outreach_sent_key(reservation.entry_id, reservation.dedupe_key)),
            ConsistentRead=True,
        )
        return _deserialize(response.get("Item") or {}).get(SentAttr.STATUS)

    # --- customer state -------------------------------------------------------------------------

    def set_follow_up(self, entry_id: str, at: datetime | None, create: bool = False) -> None:
        names = {"#bucket": table.DUE_BUCKET_ATTRIBUTE, "#due": table.DUE_AT_ATTRIBUTE}
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": _key(table.outreach_state_key(entry_id)),
            "ExpressionAttributeNames": names,
        }
        if not create:  # a plain schedule change never creates a state item
            request["ConditionExpression"] = "attribute_exists(#pk)"
            names["#pk"] = table.PK
        if at is None:
            request["UpdateExpression"] = "REMOVE #bucket, #due"
        else:
            request["UpdateExpression"] = "SET #bucket = :bucket, #due = :due, #entry = :entry, #item_type = :type"
            names |= {"#entry": StateAttr.ENTRY_ID, "#item_type": table.ITEM_TYPE}
            request["ExpressionAttributeValues"] = _serialize(
                {
                    ":bucket": table.OUTREACH_FOLLOW_UP_BUCKET,
                    ":due": format_instant(at),
                    ":entry": entry_id,
                    ":type": STATE_ITEM_TYPE,
                }
            )
        try:
            self._client.update_item(**request)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def mark_completed(self, entry_id: str, ref_id: str, now: datetime) -> None:
        self._client.update_item(
            TableName=self._table,
            Key=_key(table.outreach_state_key(entry_id)),
            UpdateExpression=(
                "SET #completed = if_not_exists(#completed, :now), #entry = :entry, #ref = :ref, "
                "#item_type = :item_type, #updated = :now REMOVE #bucket, #due"
            ),
            ExpressionAttributeNames={
                "#completed": StateAttr.COMPLETED_AT,
                "#entry": StateAttr.ENTRY_ID,
                "#ref": StateAttr.REF_ID,
                "#item_type": table.ITEM_TYPE,
                "#updated": StateAttr.UPDATED_AT,
                "#bucket": table.DUE_BUCKET_ATTRIBUTE,
                "#due": table.DUE_AT_ATTRIBUTE,
            },
            ExpressionAttributeValues=_serialize(
                {":now": format_instant(now), ":entry": entry_id, ":ref": ref_id, ":item_type": STATE_ITEM_TYPE}
            ),
        )

    def record_suppression(
        self, entry_id: str, key: str, because: str, reason: str | None, content_hash: str, now: datetime
    ) -> None:
        item = {
            **table.outreach_suppressed_key(entry_id, key),
            table.ITEM_TYPE: SUPPRESSED_ITEM_TYPE,
            SuppressedAttr.ENTRY_ID: entry_id,
            SuppressedAttr.BECAUSE: because,
            SuppressedAttr.CONTENT_HASH: content_hash,
            SuppressedAttr.RECORDED_AT: format_instant(now),
        }
        if reason:
            item[SuppressedAttr.REASON] = reason
        self._client.put_item(TableName=self._table, Item=_serialize(item))


# --- item <-> model ---------------------------------------------------------------------------------


def snapshot_from_item(item: Mapping[str, Any]) -> Snapshot:
    """A connection snapshot item (written by the poller) as the decision reads it."""
    return Snapshot(
        entry=json.loads(item[table.CONN_ENTRY]),
        content_hash=str(item[table.CONN_CONTENT_HASH]),
        sequence=int(item[table.CONN_SEQUENCE]),
    )


def history_from_item(item: Mapping[str, Any]) -> History:
    in_sweep = item.get(table.DUE_BUCKET_ATTRIBUTE) == table.OUTREACH_FOLLOW_UP_BUCKET
    return History(
        attempts=int(item.get(StateAttr.ATTEMPTS, 0)),
        last_sent_at=_instant(item.get(StateAttr.LAST_SENT_AT)),
        last_reason=item.get(StateAttr.LAST_REASON),
        last_state=item.get(StateAttr.LAST_STATE),
        state_sends=int(item.get(StateAttr.STATE_SENDS, 0)),
        completed_at=_instant(item.get(StateAttr.COMPLETED_AT)),
        follow_up_at=_instant(item.get(table.DUE_AT_ATTRIBUTE)) if in_sweep else None,
    )


def _sent_item(reservation: Reservation, now: datetime, lease_until: datetime) -> dict[str, Any]:
    return {
        **table.outreach_sent_key(reservation.entry_id, reservation.dedupe_key),
        table.ITEM_TYPE: SENT_ITEM_TYPE,
        SentAttr.ENTRY_ID: reservation.entry_id,
        SentAttr.REF_ID: reservation.ref_id,
        SentAttr.DEDUPE_KEY: reservation.dedupe_key,
        SentAttr.REASON: reservation.reason,
        SentAttr.CONTENT_HASH: reservation.content_hash,
        SentAttr.SEQUENCE: reservation.sequence,
        SentAttr.ATTEMPT: reservation.attempt,
        SentAttr.WEBHOOK_ID: reservation.webhook_id,
        SentAttr.CHANNELS: list(reservation.channels),
        SentAttr.STATUS: LedgerStatus.PENDING.value,
        SentAttr.RESERVED_AT: format_instant(now),
        SentAttr.LEASE_UNTIL: format_instant(lease_until),
    }


def _instant(value: Any) -> datetime | None:
    return parse_instant(str(value)) if value else None


def _key(key: Mapping[str, str]) -> dict[str, Any]:
    return {name: {"S": value} for name, value in key.items()}


def _serialize(values: Mapping[str, Any]) -> dict[str, Any]:
    return {str(name): _serializer.serialize(value) for name, value in values.items()}


def _deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def _cancellation_codes(error: ClientError) -> list[str]:
    """The per-item codes of a cancelled transaction ([] for any other error)."""
    if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return []
    return [reason.get("Code", "None") for reason in error.response.get("CancellationReasons", [])]
