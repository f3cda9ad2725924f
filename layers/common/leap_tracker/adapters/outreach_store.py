"""Outreach's DynamoDB store: one state item per customer, holding its ledger; suppression markers.

Item formats are documented in ``leap_tracker.outreach.ledger``; keys come from ``leap_tracker.table``.
Every step of the exactly-once protocol is ONE conditional ``UpdateItem`` on the customer's state
item, so it is atomic without a transaction (and costs one write):

- claim: add the ledger entry ``SENT#<key>`` (PENDING) only if it is absent, and take the customer's
  single in-flight slot only if ``attempts`` is what the decision saw and the customer has not
  completed; a claim found PENDING after its lease is taken over (resumed) the same way;
- mark sent: entry PENDING -> SENT, attempts, last message, next follow-up, slot freed;
- release: entry removed (nothing delivered) or kept PENDING with its lease ended, slot freed.

``mark sent`` and ``release`` also require the slot's lease to be the caller's, so a holder whose
lease ran out can never undo the work of the invocation that took over.

A claim answers with the stamp and channels its ledger entry recorded; a suppression marker is put
conditionally before its event is published and read back by a retry. Audit events are built from
these, so a retry republishes them identically.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Unpack

from botocore.exceptions import ClientError

from leap_tracker import table
from leap_tracker.adapters.due_index import due_items
from leap_tracker.adapters.dynamo import (
    BatchTiming,
    TableBatches,
    deserialize,
    is_condition_failed,
    optional_instant,
    serialize,
    string_key,
)
from leap_tracker.outreach.decision import History, Snapshot
from leap_tracker.outreach.ledger import (
    STATE_ITEM_TYPE,
    SUPPRESSED_ITEM_TYPE,
    Claim,
    ClaimResult,
    LedgerStatus,
    Reservation,
    SentAttr,
    Stamp,
    StateAttr,
    SuppressedAttr,
    Suppression,
    SuppressionStatus,
    ledger_attribute,
)
from leap_tracker.table import decode_stored_entry
from leap_tracker.timeutil import format_instant, parse_instant


class ClaimLost(RuntimeError):
    """The caller's claim is no longer its own (its lease ran out and someone took over). The message
    names the claim (reason, content hash), never the entry: it may reach a log line."""


class DynamoOutreachStore:
    """Implements ``leap_tracker.outreach.ports.OutreachStore`` on the one table (low-level client)."""

    def __init__(self, client: Any, table_name: str, **timing: Unpack[BatchTiming]) -> None:
        self._client = client
        self._table = table_name
        self._batches = TableBatches(client, table_name, **timing)

    # --- reads ----------------------------------------------------------------------------------

    def load(self, entry_id: str) -> tuple[Snapshot | None, History]:
        connection_key = table.connection_key(entry_id)
        state_key = table.outreach_state_key(entry_id)
        keys = [string_key(connection_key), string_key(state_key)]  # both items in one round trip
        by_pk = {item[table.PK]["S"]: deserialize(item) for item in self._batches.get(keys, consistent=True)}
        connection = by_pk.get(connection_key[table.PK])
        state = by_pk.get(state_key[table.PK], {})
        return (snapshot_from_item(connection) if connection else None), history_from_item(state)

    def ledger_entry(self, entry_id: str, dedupe_key: str) -> dict[str, Any] | None:
        """One ledger entry as stored (None when absent)."""
        return self._state(entry_id).get(ledger_attribute(dedupe_key))

    def suppression(self, entry_id: str, key: str) -> Suppression | None:
        response = self._client.get_item(
            TableName=self._table,
            Key=string_key(table.outreach_suppressed_key(entry_id, key)),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return suppression_from_item(key, deserialize(item)) if item is not None else None

    def due_follow_ups(self, now: datetime) -> Iterator[str]:
        items = due_items(
            self._client, self._table, table.OUTREACH_FOLLOW_UP_BUCKET, now, projection=[table.PK]
        )
        for item in items:
            yield table.entry_id_from_outreach_pk(item[table.PK]["S"])

    # --- the ledger -----------------------------------------------------------------------------

    def claim(
        self, reservation: Reservation, expected_attempts: int, now: datetime, lease_until: datetime
    ) -> ClaimResult:
        condition = f"{_ATTEMPTS_UNCHANGED[expected_attempts == 0]} AND {_NOT_COMPLETED} AND {_SLOT_FREE}"
        old = self._update(
            reservation.entry_id,
            f"SET #sent = :entry, {_TAKE_SLOT}",
            f"{condition} AND attribute_not_exists(#sent)",
            _claim_names(reservation),
            _claim_values(reservation, expected_attempts, now, lease_until)
            | {":entry": _ledger_entry(reservation, now, lease_until)},
        )
        if old is None:
            return ClaimResult(Claim.NEW, stamp=reservation.stamp(now), channels=reservation.channels)
        existing = old.get(ledger_attribute(reservation.dedupe_key))
        if existing is None:  # attempts moved, completed, or another message is in flight
            return ClaimResult(Claim.CONFLICT)
        if existing.get(SentAttr.STATUS) == LedgerStatus.SENT:
            return ClaimResult(Claim.ALREADY_SENT)
        previous_lease = str(existing.get(SentAttr.LEASE_UNTIL, ""))
        if previous_lease and parse_instant(previous_lease) > now:
            return ClaimResult(Claim.IN_FLIGHT)
        # Its holder died or failed part-way: take the entry over, with the slot.
        taken = self._update(
            reservation.entry_id,
            f"SET #sent.#lease = :lease, {_TAKE_SLOT}",
            f"{_ATTEMPTS_UNCHANGED[expected_attempts == 0]} AND {_NOT_COMPLETED} "
            "AND (attribute_not_exists(#pending) OR #pending = :key OR #pending_until < :now) "
            "AND #sent.#status = :pending AND #sent.#lease = :previous",
            _claim_names(reservation) | {"#lease": SentAttr.LEASE_UNTIL, "#status": SentAttr.STATUS},
            _claim_values(reservation, expected_attempts, now, lease_until)
            | {":pending": LedgerStatus.PENDING.value, ":previous": previous_lease},
        )
        if taken is not None:
            return ClaimResult(Claim.CONFLICT)
        return ClaimResult(
            Claim.RESUMED,
            stamp=stamp_from_entry(existing, reservation),
            channels=tuple(existing.get(SentAttr.CHANNELS) or reservation.channels),
            delivered=frozenset(existing.get(SentAttr.DELIVERED) or ()),
        )

    def release(
        self, reservation: Reservation, delivered: frozenset[str], now: datetime, lease_until: datetime
    ) -> None:
        names = _owner_names(reservation)
        values = _owner_values(reservation, lease_until)
        if delivered:  # keep it: the retry resumes it and skips these channels
            update = "SET #sent.#lease = :now, #sent.#delivered = :delivered REMOVE #pending, #pending_until"
            names |= {"#lease": SentAttr.LEASE_UNTIL, "#delivered": SentAttr.DELIVERED}
            values |= {":now": format_instant(now), ":delivered": set(delivered)}
        else:
            update = "REMOVE #sent, #pending, #pending_until"
        if self._update(reservation.entry_id, update, _OWNED, names, values) is not None:
            raise ClaimLost(f"the claim {reservation.dedupe_key} is no longer ours to release")

    def mark_sent(
        self, reservation: Reservation, now: datetime, follow_up_at: datetime | None, lease_until: datetime
    ) -> None:
        names = _owner_names(reservation) | {
            "#sent_at": SentAttr.SENT_AT,
            "#lease": SentAttr.LEASE_UNTIL,
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
        values = _owner_values(reservation, lease_until) | {
            ":sent": LedgerStatus.SENT.value,
            ":attempt": reservation.attempt,
            ":now": format_instant(now),
            ":reason": reservation.reason,
            ":state": reservation.content_hash,
            ":state_sends": reservation.state_sends,
        }
        assignments = (
            "#sent.#status = :sent, #sent.#sent_at = :now, #attempts = :attempt, #last_sent = :now, "
            "#last_reason = :reason, #last_state = :state, #state_sends = :state_sends, #last_key = :key, "
            "#updated = :now"
        )
        removals = "#sent.#lease, #pending, #pending_until"
        if follow_up_at is None:
            removals += ", #bucket, #due"
        else:
            assignments += ", #bucket = :bucket, #due = :due"
            bucket = table.due_bucket(table.OUTREACH_FOLLOW_UP_BUCKET, reservation.entry_id)
            values |= {":bucket": bucket, ":due": format_instant(follow_up_at)}
        old = self._update(
            reservation.entry_id, f"SET {assignments} REMOVE {removals}", _OWNED, names, values
        )
        if old is None:
            return
        if (old.get(ledger_attribute(reservation.dedupe_key)) or {}).get(
            SentAttr.STATUS
        ) == LedgerStatus.SENT:
            return  # our lease ran out and the invocation that resumed it finished the same message
        raise ClaimLost(f"the claim {reservation.dedupe_key} is no longer ours to mark sent")

    # --- customer state -------------------------------------------------------------------------

    def set_follow_up(self, entry_id: str, at: datetime | None, create: bool = False) -> None:
        names = {"#bucket": table.DUE_BUCKET_ATTRIBUTE, "#due": table.DUE_AT_ATTRIBUTE}
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": string_key(table.outreach_state_key(entry_id)),
            "ExpressionAttributeNames": names,
        }
        if not create:  # a plain schedule change never creates a state item
            request["ConditionExpression"] = "attribute_exists(#pk)"
            names["#pk"] = table.PK
        if at is None:
            request["UpdateExpression"] = "REMOVE #bucket, #due"
        else:
            request["UpdateExpression"] = (
                "SET #bucket = :bucket, #due = :due, #entry = :entry, #item_type = :type"
            )
            names |= {"#entry": StateAttr.ENTRY_ID, "#item_type": table.ITEM_TYPE}
            request["ExpressionAttributeValues"] = serialize(
                {
                    ":bucket": table.due_bucket(table.OUTREACH_FOLLOW_UP_BUCKET, entry_id),
                    ":due": format_instant(at),
                    ":entry": entry_id,
                    ":type": STATE_ITEM_TYPE,
                }
            )
        try:
            self._client.update_item(**request)
        except ClientError as error:
            if not is_condition_failed(error):
                raise

    def mark_completed(self, entry_id: str, ref_id: str, now: datetime) -> None:
        self._client.update_item(
            TableName=self._table,
            Key=string_key(table.outreach_state_key(entry_id)),
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
            ExpressionAttributeValues=serialize(
                {
                    ":now": format_instant(now),
                    ":entry": entry_id,
                    ":ref": ref_id,
                    ":item_type": STATE_ITEM_TYPE,
                }
            ),
        )

    def record_suppression(self, entry_id: str, suppression: Suppression) -> Suppression:
        key = table.outreach_suppressed_key(entry_id, suppression.key)
        try:
            self._client.put_item(
                TableName=self._table,
                Item=serialize(key | suppression_item(entry_id, suppression)),
                ConditionExpression="attribute_not_exists(#pk)",  # the first decision stays
                ExpressionAttributeNames={"#pk": table.PK},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not is_condition_failed(error):
                raise
            old = error.response.get("Item")
            stored = suppression_from_item(suppression.key, deserialize(old)) if old is not None else None
            return stored or self._recorded_suppression(entry_id, suppression.key)
        return replace(suppression, published=False)

    def mark_suppression_published(self, entry_id: str, key: str) -> None:
        self._client.update_item(
            TableName=self._table,
            Key=string_key(table.outreach_suppressed_key(entry_id, key)),
            UpdateExpression="SET #status = :published",
            ConditionExpression="attribute_exists(#pk)",  # never a marker without its decision
            ExpressionAttributeNames={"#status": SuppressedAttr.STATUS, "#pk": table.PK},
            ExpressionAttributeValues=serialize({":published": SuppressionStatus.PUBLISHED.value}),
        )

    def _recorded_suppression(self, entry_id: str, key: str) -> Suppression:
        recorded = self.suppression(entry_id, key)
        if recorded is None:
            raise RuntimeError(f"the suppression {key} was neither recorded nor found")
        return recorded

    # --- plumbing -------------------------------------------------------------------------------

    def _update(
        self, entry_id: str, update: str, condition: str, names: dict[str, str], values: dict[str, Any]
    ) -> dict[str, Any] | None:
        """A conditional update of the state item: None when it applied, else the item as it was."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=string_key(table.outreach_state_key(entry_id)),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialize(values),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not is_condition_failed(error):
                raise
            item = error.response.get("Item")
            return deserialize(item) if item is not None else self._state(entry_id)
        return None

    def _state(self, entry_id: str) -> dict[str, Any]:
        response = self._client.get_item(
            TableName=self._table, Key=string_key(table.outreach_state_key(entry_id)), ConsistentRead=True
        )
        return deserialize(response.get("Item") or {})


# --- expressions of the protocol ------------------------------------------------------------------

_ATTEMPTS_UNCHANGED = {  # keyed by "expected is 0": a customer never messaged may have no item yet
    True: "(attribute_not_exists(#attempts) OR #attempts = :expected)",
    False: "#attempts = :expected",
}
_NOT_COMPLETED = "attribute_not_exists(#completed)"
_SLOT_FREE = "(attribute_not_exists(#pending) OR #pending_until < :now)"
_TAKE_SLOT = (
    "#pending = :key, #pending_until = :lease, #entry = :entry_id, #ref = :ref, #item_type = :item_type, "
    "#updated = :now"
)
_OWNED = "#pending = :key AND #pending_until = :lease AND #sent.#status = :pending"


def _claim_names(reservation: Reservation) -> dict[str, str]:
    return {
        "#sent": ledger_attribute(reservation.dedupe_key),
        "#attempts": StateAttr.ATTEMPTS,
        "#completed": StateAttr.COMPLETED_AT,
        "#pending": StateAttr.PENDING_KEY,
        "#pending_until": StateAttr.PENDING_UNTIL,
        "#entry": StateAttr.ENTRY_ID,
        "#ref": StateAttr.REF_ID,
        "#item_type": table.ITEM_TYPE,
        "#updated": StateAttr.UPDATED_AT,
    }


def _claim_values(
    reservation: Reservation, expected_attempts: int, now: datetime, lease_until: datetime
) -> dict[str, Any]:
    return {
        ":expected": expected_attempts,
        ":key": reservation.dedupe_key,
        ":lease": format_instant(lease_until),
        ":now": format_instant(now),
        ":entry_id": reservation.entry_id,
        ":ref": reservation.ref_id,
        ":item_type": STATE_ITEM_TYPE,
    }


def _owner_names(reservation: Reservation) -> dict[str, str]:
    return {
        "#sent": ledger_attribute(reservation.dedupe_key),
        "#status": SentAttr.STATUS,
        "#pending": StateAttr.PENDING_KEY,
        "#pending_until": StateAttr.PENDING_UNTIL,
    }


def _owner_values(reservation: Reservation, lease_until: datetime) -> dict[str, Any]:
    return {
        ":key": reservation.dedupe_key,
        ":lease": format_instant(lease_until),
        ":pending": LedgerStatus.PENDING.value,
    }


# --- item <-> model ---------------------------------------------------------------------------------


def snapshot_from_item(item: Mapping[str, Any]) -> Snapshot:
    """A connection snapshot item (written by the poller) as the decision reads it."""
    return Snapshot(
        entry=decode_stored_entry(item[table.CONN_ENTRY]),
        content_hash=str(item[table.CONN_CONTENT_HASH]),
        sequence=int(item[table.CONN_SEQUENCE]),
    )


def history_from_item(item: Mapping[str, Any]) -> History:
    in_sweep = table.in_due_bucket(item.get(table.DUE_BUCKET_ATTRIBUTE), table.OUTREACH_FOLLOW_UP_BUCKET)
    return History(
        attempts=int(item.get(StateAttr.ATTEMPTS, 0)),
        last_sent_at=optional_instant(item.get(StateAttr.LAST_SENT_AT)),
        last_reason=item.get(StateAttr.LAST_REASON),
        last_state=item.get(StateAttr.LAST_STATE),
        state_sends=int(item.get(StateAttr.STATE_SENDS, 0)),
        completed_at=optional_instant(item.get(StateAttr.COMPLETED_AT)),
        follow_up_at=optional_instant(item.get(table.DUE_AT_ATTRIBUTE)) if in_sweep else None,
    )


def _ledger_entry(reservation: Reservation, now: datetime, lease_until: datetime) -> dict[str, Any]:
    return {
        SentAttr.STATUS: LedgerStatus.PENDING.value,
        SentAttr.REASON: reservation.reason,
        SentAttr.CONTENT_HASH: reservation.content_hash,
        SentAttr.SEQUENCE: reservation.sequence,
        SentAttr.ATTEMPT: reservation.attempt,
        SentAttr.WEBHOOK_ID: reservation.webhook_id,
        SentAttr.CHANNELS: list(reservation.channels),
        SentAttr.RESERVED_AT: format_instant(now),
        SentAttr.CONNECT_URL: reservation.connect_url,
        SentAttr.VARIANT: reservation.variant,
        SentAttr.LEASE_UNTIL: format_instant(lease_until),
    }


def stamp_from_entry(entry: Mapping[str, Any], reservation: Reservation) -> Stamp:
    """The stamp a ledger entry recorded at its first claim (an entry claimed before the URL or the
    variant was kept takes the reservation's)."""
    return Stamp(
        time=parse_instant(str(entry[SentAttr.RESERVED_AT])),
        attempt=int(entry[SentAttr.ATTEMPT]),
        sequence=int(entry[SentAttr.SEQUENCE]),
        connect_url=str(entry.get(SentAttr.CONNECT_URL) or reservation.connect_url),
        variant=str(entry.get(SentAttr.VARIANT) or reservation.variant),
    )


def suppression_item(entry_id: str, suppression: Suppression) -> dict[str, Any]:
    """A suppression marker's attributes (without its key), PENDING until its event is out."""
    item: dict[str, Any] = {
        table.ITEM_TYPE: SUPPRESSED_ITEM_TYPE,
        SuppressedAttr.ENTRY_ID: entry_id,
        SuppressedAttr.BECAUSE: suppression.because,
        SuppressedAttr.CONTENT_HASH: suppression.content_hash,
        SuppressedAttr.RECORDED_AT: format_instant(suppression.decided_at),
        SuppressedAttr.SEQUENCE: suppression.sequence,
        SuppressedAttr.ATTEMPTS: suppression.attempts,
        SuppressedAttr.STATUS: SuppressionStatus.PENDING.value,
    }
    if suppression.reason:
        item[SuppressedAttr.REASON] = suppression.reason
    if suppression.next_attempt_at is not None:
        item[SuppressedAttr.NEXT_ATTEMPT_AT] = format_instant(suppression.next_attempt_at)
    return item


def suppression_from_item(key: str, item: Mapping[str, Any]) -> Suppression:
    """A marker as stored. One without a status was written by older code after its event was
    published: it counts as published, and its event is never rebuilt from it."""
    status = item.get(SuppressedAttr.STATUS)
    return Suppression(
        key=key,
        because=str(item[SuppressedAttr.BECAUSE]),
        reason=item.get(SuppressedAttr.REASON),
        content_hash=str(item[SuppressedAttr.CONTENT_HASH]),
        decided_at=parse_instant(str(item[SuppressedAttr.RECORDED_AT])),
        sequence=int(item.get(SuppressedAttr.SEQUENCE, 0)),
        attempts=int(item.get(SuppressedAttr.ATTEMPTS, 0)),
        next_attempt_at=optional_instant(item.get(SuppressedAttr.NEXT_ATTEMPT_AT)),
        published=status != SuppressionStatus.PENDING,
    )
