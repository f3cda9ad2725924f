"""Sample snapshot histories and the table-stream records the poller's writes produce (dev only).

Used by ``devtools.generate_schemas`` (the doc's real examples), the emitter's tests and
``bench/emitter.py``. Items are built with the poller's own ``snapshot_item`` and records have the
exact shape Lambda delivers (``sam local generate-event dynamodb update``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

from devtools.local_runner.shapes import as_lambda_json
from leap_tracker import table
from leap_tracker.adapters.poller_store import snapshot_item
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import validate_entry
from leap_tracker.poller.ports import SnapshotWrite
from leap_tracker.timeutil import parse_instant

STREAM_ARN = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/leap-connect-tracker-ConnectionsTable/stream/"
    "2025-01-01T00:00:00.000"
)
POLL_DELAY = timedelta(minutes=47)  # when the poller stores a snapshot, after its last interaction
FIRST_STREAM_SEQUENCE_NUMBER = 442158450000000001745043  # DynamoDB's look: long decimal strings

SDGE = "SDG&E: San Diego Gas & Electric"
SCE = "SCE: Southern California Edison"
DR_AGREEMENT = wire.AGREEMENT_DEMAND_RESPONSE_PARTICIPATION
PRA_AGREEMENT = wire.AGREEMENT_PROHIBITED_RESOURCE_ATTESTATION


# --- entries ------------------------------------------------------------------------------------


def entry(ref_id: str, region: str, entry_uuid: str, started: str) -> dict[str, Any]:
    """A first snapshot: clicked, nothing else done."""
    return {
        wire.ENTRY_ID: f"{region}_{entry_uuid}_{ref_id}",
        wire.ENTRY_TRANSMISSION_REGION: region,
        wire.ENTRY_REF_ID: ref_id,
        wire.ENTRY_START: started,
        wire.ENTRY_LAST_INTERACTION: started,
        wire.ENTRY_CONNECTION_STATUS: wire.CONNECTION_NOT_STARTED,
        wire.ENTRY_UTILITY_CONNECTIONS: [],
        wire.ENTRY_AGREEMENTS: {
            PRA_AGREEMENT: wire.AGREEMENT_NOT_REQUIRED,
            DR_AGREEMENT: wire.AGREEMENT_NOT_REQUIRED,
        },
    }


def utility(
    uuid: str | None, name: str, at: str, status: str, error_code: str | None = None, required: bool = True
) -> dict[str, Any]:
    return {
        wire.UTILITY_AUTHORIZATION_UUID: uuid,
        wire.UTILITY_NAME: name,
        wire.UTILITY_IS_REQUIRED: required,
        wire.UTILITY_STATUS: status,
        wire.UTILITY_ERROR_CODE: error_code,
        wire.UTILITY_START: at,
        wire.UTILITY_LAST_INTERACTION: at,
    }


def step(previous: dict[str, Any], at: str, status: str | None = None, **fields: Any) -> dict[str, Any]:
    """The next snapshot: a copy last touched at ``at``, with some fields replaced."""
    nxt = copy.deepcopy(previous)
    nxt[wire.ENTRY_LAST_INTERACTION] = at
    if status is not None:
        nxt[wire.ENTRY_CONNECTION_STATUS] = status
    nxt.update(fields)
    return nxt


def commercial_history() -> list[dict[str, Any]]:
    """A CAISO customer: clicks, cancels at the utility, retries, connects, signs the DR agreement."""
    uuid = "910bfb80-8b22-4341-8b5b-8752a21dccad"
    e1 = entry("Test1012", "CAISO", "62631455-9dfd-433b-9482-fd043f2336d4", "2025-03-03T17:02:11Z")
    at = "2025-03-03T17:05:40Z"
    e2 = step(e1, at, wire.CONNECTION_PARTIAL, utility_connections=[utility(uuid, SDGE, at, "NOT_CONNECTED")])
    at = "2025-03-03T17:09:02Z"
    e3 = step(
        e2,
        at,
        wire.CONNECTION_ERROR,
        utility_connections=[utility(uuid, SDGE, at, wire.UTILITY_ERROR, wire.ERROR_USER_CANCELED)],
    )
    at = "2025-03-05T08:30:12Z"
    e4 = step(
        e3,
        at,
        wire.CONNECTION_PARTIAL,
        utility_connections=[utility(uuid, SDGE, at, wire.UTILITY_CONNECTED)],
        agreements={PRA_AGREEMENT: wire.AGREEMENT_NOT_REQUIRED, DR_AGREEMENT: "PENDING"},
    )
    e5 = step(
        e4,
        "2025-03-05T08:34:57Z",
        wire.CONNECTION_COMPLETED,
        agreements={PRA_AGREEMENT: wire.AGREEMENT_NOT_REQUIRED, DR_AGREEMENT: "SIGNED"},
    )
    return [e1, e2, e3, e4, e5]


def unusual_history() -> list[dict[str, Any]]:
    """An ERCOT customer whose entry changes in ways this version only partly knows.

    "EXPIRED", "REVOKED" and "PENDING" are made-up values standing for ones Leap may add.
    """
    sce_uuid = "5e0c9a0e-7d55-4c1b-9d0f-3a3f2b1c0d11"
    e1 = step(
        entry("crm-88231", "ERCOT", "0b8f6a52-31d4-4d59-a1c4-55c1e0d7a9e2", "2025-04-14T15:20:00Z"),
        "2025-04-14T15:26:31Z",
        wire.CONNECTION_PARTIAL,
        utility_connections=[
            utility(sce_uuid, SCE, "2025-04-14T15:22:09Z", wire.UTILITY_CONNECTED),
            utility(None, SDGE, "2025-04-14T15:26:31Z", wire.UTILITY_NOT_CONNECTED),
        ],
        agreements={PRA_AGREEMENT: "PENDING", DR_AGREEMENT: wire.AGREEMENT_NOT_REQUIRED},
    )
    e2 = step(
        e1,
        "2025-04-16T10:02:44Z",
        "EXPIRED",
        utility_connections=[utility(sce_uuid, SCE, "2025-04-16T10:02:44Z", "REVOKED")],
        agreements={PRA_AGREEMENT: wire.AGREEMENT_NOT_REQUIRED, DR_AGREEMENT: wire.AGREEMENT_NOT_REQUIRED},
    )
    return [e1, e2]


# --- stream records -----------------------------------------------------------------------------


def snapshot_image(snapshot: dict[str, Any], sequence: int) -> dict[str, Any]:
    """The stored item (DynamoDB JSON) of one snapshot, as the poller writes it."""
    written_at = parse_instant(snapshot[wire.ENTRY_LAST_INTERACTION]) + POLL_DELAY
    return snapshot_item(SnapshotWrite(validate_entry(snapshot), sequence), written_at)


def stream_record(
    old_item: dict[str, Any] | None,
    new_item: dict[str, Any] | None,
    sequence_number: int,
    event_name: str | None = None,
) -> dict[str, Any]:
    """One record of a Lambda DynamoDB stream event (NEW_AND_OLD_IMAGES)."""
    item = new_item or old_item
    assert item is not None
    keys = {name: item[name] for name in (table.PK, table.SK)}
    written_at = parse_instant(item[table.CONN_WRITTEN_AT]["S"]) if table.CONN_WRITTEN_AT in item else None
    created = int(written_at.timestamp()) if written_at else 1735689600
    change: dict[str, Any] = {"ApproximateCreationDateTime": created, "Keys": keys}
    if new_item is not None:
        change["NewImage"] = as_lambda_json(new_item)
    if old_item is not None:
        change["OldImage"] = as_lambda_json(old_item)
    change["SequenceNumber"] = str(FIRST_STREAM_SEQUENCE_NUMBER + sequence_number)
    change["SizeBytes"] = len(json.dumps(change))
    change["StreamViewType"] = "NEW_AND_OLD_IMAGES"
    name = event_name or ("INSERT" if old_item is None else "REMOVE" if new_item is None else "MODIFY")
    return {
        "eventID": f"{sequence_number:032x}",
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": change,
        "eventSourceARN": STREAM_ARN,
    }


def history_records(
    history: Sequence[dict[str, Any]], first_sequence_number: int = 1
) -> list[dict[str, Any]]:
    """The stream records of storing each snapshot of a history in turn (sequence 1, 2, ...)."""
    records, previous = [], None
    for offset, snapshot in enumerate(history):
        item = snapshot_image(snapshot, offset + 1)
        records.append(stream_record(previous, item, first_sequence_number + offset))
        previous = item
    return records


def interleave(*histories: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Stream records of several entries written round-robin, with increasing sequence numbers."""
    per_entry = [history_records(h) for h in histories]
    number = 1
    for position in range(max(len(r) for r in per_entry)):
        for records in per_entry:
            if position < len(records):
                record = copy.deepcopy(records[position])
                record["dynamodb"]["SequenceNumber"] = str(FIRST_STREAM_SEQUENCE_NUMBER + number)
                record["eventID"] = f"{number:032x}"
                number += 1
                yield record


def stream_event(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": list(records)}
