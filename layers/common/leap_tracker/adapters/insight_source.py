"""What the insight figures read of the connections table (keys and attributes: leap_tracker.table),
for the daily insight function and ``leap-tracker report`` alike.

Two Scans, each reading the whole table once (a Scan's cost is the table's size, whatever it filters):

- the history items written since T (``item_type`` = connection_change and ``written_at >= T``),
  projected to the key, the change pair, the sequence and ``written_at``;
- the outreach customer states (their ledger: one ``SENT#<dedupe key>`` map per message, names not
  known in advance, so not projected) and the meter watches.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from leap_tracker import table
from leap_tracker.insight.analysis import (
    UNRECORDED_VARIANT,
    Change,
    Message,
    MeterAppearance,
    readable_instant,
)
from leap_tracker.meters.model import ClosedReason
from leap_tracker.outreach import ledger
from leap_tracker.timeutil import format_instant


@dataclass
class Stored:
    changes: dict[str, list[Change]] = field(default_factory=dict)
    messages: dict[str, list[Message]] = field(default_factory=dict)
    meters: list[MeterAppearance] = field(default_factory=list)
    unreadable: int = 0  # history items that cannot be decoded (left out, counted)


def read(client: Any, table_name: str, since: datetime | None) -> Stored:
    stored = Stored()
    for item in _history_items(client, table_name, since):
        found = history_change(item)
        if found is None:
            stored.unreadable += 1
            continue
        entry_id, change = found
        stored.changes.setdefault(entry_id, []).append(change)
    for item in _scan(
        client,
        table_name,
        FilterExpression="#type IN (:outreach, :watch)",
        ExpressionAttributeNames={"#type": table.ITEM_TYPE},
        ExpressionAttributeValues={
            ":outreach": {"S": ledger.STATE_ITEM_TYPE},
            ":watch": {"S": table.WATCH_ITEM_TYPE},
        },
    ):
        if item.get(table.ITEM_TYPE) == table.WATCH_ITEM_TYPE:
            appearance = meter_appearance(item)
            if appearance is not None:
                stored.meters.append(appearance)
        else:
            sent = ledger_messages(item)
            if sent:
                stored.messages[table.entry_id_from_outreach_pk(str(item[table.PK]))] = sent
    return stored


def history_change(item: Mapping[str, Any]) -> tuple[str, Change] | None:
    """A history item (deserialised) as its entry id and :class:`Change`; None when it cannot be read
    (no change pair, a damaged one, no readable ``written_at``): counted, not raised."""
    written = readable_instant(item.get(table.HISTORY_WRITTEN_AT))
    if written is None or table.HISTORY_CHANGE not in item:
        return None
    try:
        previous, entry = table.decode_stored_change(item[table.HISTORY_CHANGE])
    except table.UnreadableStoredEntry:
        return None
    whole = table.whole_number
    sequence = whole(item.get(table.HISTORY_SEQUENCE)) or whole(item.get(table.SK)) or 0
    return table.entry_id_from_history_pk(str(item[table.PK])), Change(written, previous, entry, sequence)


def ledger_messages(item: Mapping[str, Any]) -> list[Message]:
    """The messages an outreach state item's ledger says went out (SENT, with their time and variant)."""
    found = []
    for name, value in item.items():
        if not (str(name).startswith(ledger.LEDGER_PREFIX) and isinstance(value, Mapping)):
            continue
        sent_at = readable_instant(value.get(ledger.SentAttr.SENT_AT))
        if value.get(ledger.SentAttr.STATUS) != ledger.LedgerStatus.SENT or sent_at is None:
            continue
        reason, attempt = value.get(ledger.SentAttr.REASON), value.get(ledger.SentAttr.ATTEMPT, 0)
        variant = value.get(ledger.SentAttr.VARIANT) or UNRECORDED_VARIANT
        found.append(Message(sent_at, str(reason), int(attempt), str(variant)))
    return sorted(found)


def meter_appearance(item: Mapping[str, Any]) -> MeterAppearance | None:
    if item.get(table.WATCH_CLOSED_REASON) != ClosedReason.APPEARED:
        return None
    completed = readable_instant(item.get(table.WATCH_COMPLETED_AT))
    appeared = readable_instant(item.get(table.WATCH_CLOSED_AT))
    if completed is None or appeared is None:
        return None
    return MeterAppearance(completed, appeared)


def _history_items(client: Any, table_name: str, since: datetime | None) -> Iterator[dict[str, Any]]:
    names = {
        "#pk": table.PK,
        "#sk": table.SK,
        "#type": table.ITEM_TYPE,
        "#change": table.HISTORY_CHANGE,
        "#sequence": table.HISTORY_SEQUENCE,
        "#written": table.HISTORY_WRITTEN_AT,
    }
    values: dict[str, Any] = {":type": {"S": table.HISTORY_ITEM_TYPE}}
    condition = "#type = :type"
    if since is not None:
        values[":since"] = {"S": format_instant(since)}
        condition += " AND #written >= :since"
    return _scan(
        client,
        table_name,
        ProjectionExpression="#pk, #sk, #change, #sequence, #written",
        FilterExpression=condition,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )


def _scan(client: Any, table_name: str, **request: Any) -> Iterator[dict[str, Any]]:
    from leap_tracker.adapters.dynamo import deserialize  # boto3 on first use

    for page in client.get_paginator("scan").paginate(TableName=table_name, **request):
        for item in page.get("Items", []):
            yield deserialize(item)
