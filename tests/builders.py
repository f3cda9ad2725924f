"""Test data shared by the suite: Connect entries as Leap sends them, stalled customers, and the
ready filter policies (subscriber/filter-policies.json, shown in docs/events.md) with what each
claims to select.

One entry builder, :func:`entry`, with :func:`utility` and :func:`agreements` for its parts;
:func:`guide_entry` is the one-utility entry of Leap's guide that the poller and store tests use.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from leap_tracker import table
from leap_tracker.events.catalog import CONNECTION_COMPLETED, build_event, message_attributes
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import canonical_json, content_hash
from leap_tracker.outreach.decision import Snapshot
from leap_tracker.timeutil import format_instant
from leap_tracker.webhooks import intake
from subscriber.filter_policies import named_policies

SDGE = "SDG&E: San Diego Gas & Electric"
SCE = "SCE: Southern California Edison"
PGE = "PG&E: Pacific Gas and Electric"
GUIDE_ENTRY_UUID = "62631455-9dfd-433b-9482-fd043f2336d4"  # the middle part of the guide's entry id
GUIDE_AUTHORIZATION_UUID = "910bfb80-8b22-4341-8b5b-8752a21dccad"

T0 = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)  # "now" of the poller tests
LAST_INTERACTION = datetime(2025, 3, 5, 8, 0, 0, tzinfo=UTC)  # when the outreach tests' customers acted
ACTIONABLE = LAST_INTERACTION + timedelta(hours=1)
STARTED_BEFORE_LAST = timedelta(minutes=10)  # an entry's default start: shortly before its last interaction


# --- Connect entries ---------------------------------------------------------------------------------


def instant(moment: datetime) -> str:
    return moment.strftime(wire.WIRE_DATETIME_FORMAT)


def utility(
    name: str = SDGE,
    status: str = wire.UTILITY_NOT_CONNECTED,
    required: bool = True,
    error_code: str | None = None,
    *,
    started: datetime | None = None,
    last: datetime | None = None,
    authorization: str | None = None,
) -> dict[str, Any]:
    """One utility connection of an entry; its instants are null unless given."""
    return {
        wire.UTILITY_AUTHORIZATION_UUID: authorization or f"uuid-{name[:3]}",
        wire.UTILITY_NAME: name,
        wire.UTILITY_IS_REQUIRED: required,
        wire.UTILITY_STATUS: status,
        wire.UTILITY_ERROR_CODE: error_code,
        wire.UTILITY_START: instant(started) if started else None,
        wire.UTILITY_LAST_INTERACTION: instant(last) if last else None,
    }


def agreements(
    prohibited: str | None = wire.AGREEMENT_NOT_REQUIRED, dr: str | None = wire.AGREEMENT_NOT_REQUIRED
) -> dict[str, str | None]:
    return {
        wire.AGREEMENT_PROHIBITED_RESOURCE_ATTESTATION: prohibited,
        wire.AGREEMENT_DEMAND_RESPONSE_PARTICIPATION: dr,
    }


def entry(
    status: str = wire.CONNECTION_PARTIAL,
    utilities: Sequence[dict[str, Any]] = (),
    agreement_statuses: dict[str, Any] | None = None,
    *,
    ref_id: str = "Test1012",
    last: datetime = LAST_INTERACTION,
    started: datetime | None = None,
    region: str = "CAISO",
) -> dict[str, Any]:
    """A well-formed Connect entry; agreements default to both NOT_REQUIRED."""
    return {
        wire.ENTRY_ID: f"{region}_{GUIDE_ENTRY_UUID}_{ref_id}",
        wire.ENTRY_TRANSMISSION_REGION: region,
        wire.ENTRY_REF_ID: ref_id,
        wire.ENTRY_START: instant(started or last - STARTED_BEFORE_LAST),
        wire.ENTRY_LAST_INTERACTION: instant(last),
        wire.ENTRY_CONNECTION_STATUS: status,
        wire.ENTRY_UTILITY_CONNECTIONS: list(utilities),
        wire.ENTRY_AGREEMENTS: agreements() if agreement_statuses is None else agreement_statuses,
    }


def guide_entry(
    ref_id: str = "ref-1",
    *,
    status: str = wire.CONNECTION_PARTIAL,
    last: datetime = T0 - timedelta(hours=2),
    region: str = "CAISO",
    utility_status: str = wire.UTILITY_NOT_CONNECTED,
    error_code: str | None = None,
    agreement_statuses: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The entry of Leap's guide: one required SDG&E connection, started a day before its last interaction."""
    started = last - timedelta(days=1)
    connection = utility(
        SDGE,
        utility_status,
        error_code=error_code,
        started=started,
        last=last,
        authorization=GUIDE_AUTHORIZATION_UUID,
    )
    return entry(
        status, [connection], agreement_statuses, ref_id=ref_id, last=last, started=started, region=region
    )


def guide_entries(count: int, *, last: datetime = T0 - timedelta(hours=2)) -> list[dict[str, Any]]:
    """``count`` guide entries "ref-00000", ... whose last interactions are a second apart."""
    return [guide_entry(f"ref-{n:05d}", last=last + timedelta(seconds=n)) for n in range(count)]


def pages_of(entries: Sequence[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [list(entries[start : start + size]) for start in range(0, len(entries), size)]


# --- stalled customers (outreach) --------------------------------------------------------------------


def snapshot(raw: dict[str, Any], sequence: int = 1) -> Snapshot:
    """The snapshot the poller would store for ``raw`` (same canonical JSON and content hash)."""
    return Snapshot(copy.deepcopy(raw), content_hash(canonical_json(raw)), sequence)


def stalled_examples() -> dict[str, dict[str, Any]]:
    """One entry per stage a customer can stall at, named by the reason it should get."""
    return {
        "not_started": entry(wire.CONNECTION_NOT_STARTED, ref_id="NotStarted1"),
        "utility_not_connected": entry(wire.CONNECTION_PARTIAL, [utility()], ref_id="NotConnected1"),
        "utility_error.USER_CANCELED": entry(
            wire.CONNECTION_ERROR,
            [utility(status=wire.UTILITY_ERROR, error_code=wire.ERROR_USER_CANCELED)],
            ref_id="Canceled1",
        ),
        "utility_error.unknown": entry(
            wire.CONNECTION_ERROR,
            [utility(status=wire.UTILITY_ERROR, error_code="SOMETHING_NEW")],
            ref_id="NewCode1",
        ),
        "agreement_pending": entry(
            wire.CONNECTION_PARTIAL,
            [utility(status=wire.UTILITY_CONNECTED)],
            agreements(prohibited="PENDING", dr="SIGNED"),
            ref_id="Agreement1",
        ),
    }


# --- the ready filter policies ------------------------------------------------------------------------

Claim = Callable[[dict[str, Any]], bool]


def error_code(event: dict[str, Any]) -> str | None:
    return message_attributes(event).get("error_code")


# What each ready policy must select, written independently of the policy.
CLAIMS: dict[str, Claim] = {
    "errors-in-caiso": lambda e: (
        e["type"] in ("connection.error", "utility.error")
        and e["data"]["connection"]["transmission_region"] == "CAISO"
    ),
    "completions": lambda e: e["type"] == "connection.completed",
    "agreements": lambda e: e["type"].startswith("agreement."),
    "all-but-utilities": lambda e: not e["type"].startswith("utility."),
    "user-canceled": lambda e: error_code(e) == "USER_CANCELED",
    "sdge-utility-events": lambda e: (
        e["type"].startswith("utility.") and e["data"]["utility"]["utility_name"].startswith("SDG&E")
    ),
}


def ready_policies() -> dict[str, tuple[str, dict[str, Any]]]:
    """Policy name -> (scope, policy), from the one source (docs/events.md and the subscriber
    template are generated from it, and tests/integration/test_schemas_filter_policies.py holds them
    to it)."""
    return {name: (policy.scope, policy.policy) for name, policy in named_policies().items()}


# --- a customer's stored history, for the report's tests -------------------------------------------


def journey(ref: str, done: bool, start: datetime) -> list[dict[str, Any]]:
    """A customer's entries: not started at ``start``, an SDG&E login error an hour later, and when
    ``done`` completed 30 hours after ``start``."""
    started = start - timedelta(hours=1)
    versions = [
        entry(wire.CONNECTION_NOT_STARTED, ref_id=ref, last=start, started=started),
        entry(
            wire.CONNECTION_ERROR,
            [utility(SDGE, wire.UTILITY_ERROR, error_code=wire.ERROR_INVALID_CREDENTIALS)],
            ref_id=ref,
            last=start + timedelta(hours=1),
            started=started,
        ),
    ]
    if done:
        versions.append(
            entry(
                wire.CONNECTION_COMPLETED,
                [utility(SDGE, wire.UTILITY_CONNECTED)],
                ref_id=ref,
                last=start + timedelta(hours=30),
                started=started,
            )
        )
    return versions


def history_writes(
    versions: Sequence[dict[str, Any]], start: datetime
) -> list[tuple[datetime, str | None, str, dict[str, Any]]]:
    """The history items the poller would write for these versions (sequence 1, 2..., stored 2 hours
    apart from ``start``), each as (written at, previous canonical JSON, canonical JSON, item)."""
    writes = []
    previous: str | None = None
    for sequence, state in enumerate(versions, start=1):
        canonical, at = canonical_json(state), start + timedelta(hours=2 * sequence)
        item = {
            **table.history_key(state[wire.ENTRY_ID], sequence),
            table.ITEM_TYPE: table.HISTORY_ITEM_TYPE,
            table.HISTORY_CHANGE: table.encode_stored_change(previous, canonical),
            table.HISTORY_SEQUENCE: sequence,
            table.HISTORY_WRITTEN_AT: format_instant(at),
            table.HISTORY_STATUS: state[wire.ENTRY_CONNECTION_STATUS],
        }
        writes.append((at, previous, canonical, item))
        previous = canonical
    return writes


# --- Leap's webhook deliveries (issue 15): one valid payload per known type -------------------------

WEBHOOK_METER_ID = "5af2968d-2652-4ebf-9057-b831102a94ef"
WEBHOOK_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:WebhookQueue"
WEBHOOK_SAMPLE_PAYLOADS: dict[str, dict[str, Any]] = {
    wire.WEBHOOK_METER_CREATED: {
        wire.WEBHOOK_METER_ID: WEBHOOK_METER_ID,
        wire.WEBHOOK_PARTNER_REFERENCE: "customer-0001",
        wire.WEBHOOK_TRANSMISSION_REGION: "CAISO",
        wire.WEBHOOK_METER_TYPE: "UTILITY_METER",
    },
    wire.WEBHOOK_CONNECT_SESSION_UPDATED: {
        wire.WEBHOOK_PARTNER_REFERENCE: "customer-0001",
        wire.WEBHOOK_STATUS: "COMPLETED",
    },
    wire.WEBHOOK_AUTHORIZATION_UPDATED: {
        wire.WEBHOOK_PARTNER_REFERENCE: "customer-0001",
        wire.WEBHOOK_UTILITY_NAME: "PGE",
        wire.WEBHOOK_STATUS: "FAILED",
    },
    wire.WEBHOOK_ENROLLMENT_GLOBAL_STATUS: {
        wire.WEBHOOK_METER_ID: WEBHOOK_METER_ID,
        wire.WEBHOOK_TRANSMISSION_REGION: "ERCOT",
        wire.WEBHOOK_GLOBAL_ENROLLMENT_STATUS: "ELIGIBLE",
    },
    wire.WEBHOOK_ENROLLMENT_PARTICIPATION: {
        wire.WEBHOOK_METER_ID: WEBHOOK_METER_ID,
        wire.WEBHOOK_TRANSMISSION_REGION: "PJM",
        wire.WEBHOOK_PARTICIPATION_PREFERENCE: "PARTICIPATE",
        wire.WEBHOOK_START_TIME: "2025-02-01T00:00:00Z",
        wire.WEBHOOK_END_TIME: None,
    },
    wire.WEBHOOK_ENROLLMENT_REQUIRED_ACTIONS: {
        wire.WEBHOOK_METER_ID: WEBHOOK_METER_ID,
        wire.WEBHOOK_TRANSMISSION_REGION: "NYISO",
        wire.WEBHOOK_GLOBAL_ENROLLMENT_STATUS: "PENDING",
        wire.WEBHOOK_REQUIRED_ACTIONS: {
            wire.WEBHOOK_PARTNER_ACTIONS: [
                {
                    wire.WEBHOOK_ACTION_DEADLINE: "2025-02-15T00:00:00Z",
                    wire.WEBHOOK_ACTION_TYPE: "DOCUMENT",
                    wire.WEBHOOK_ACTION_DESCRIPTION: "Upload the signed form",
                    wire.WEBHOOK_ACTION_CODE: "SIGN_FORM",
                }
            ]
        },
    },
    wire.WEBHOOK_ENROLLMENT_GROUP: {
        wire.WEBHOOK_MARKET_GROUP_ID: "0d3c1b4e-9a0b-4c55-8d0e-3f1a2b3c4d5e",
        wire.WEBHOOK_MARKET_GROUP_NAME: "Summer 2025",
        wire.WEBHOOK_START_DATE_TIME: "2025-06-01T00:00:00Z",
        wire.WEBHOOK_END_DATE_TIME: "2025-09-30T23:59:59Z",
        wire.WEBHOOK_METER_IDS: [WEBHOOK_METER_ID],
    },
}


def webhook_delivery(
    event_type: str = wire.WEBHOOK_METER_CREATED,
    event_id: str = "0b6f8a52-6f7e-4a43-9d59-3d5f0c6a1e11",
    **fields: Any,
) -> dict[str, Any]:
    """A delivery as Leap POSTs it: the type's sample payload with ``fields`` changed (None: dropped)."""
    payload = {
        wire.WEBHOOK_EVENT_TYPE: event_type,
        **copy.deepcopy(WEBHOOK_SAMPLE_PAYLOADS.get(event_type, {})),
    }
    payload |= fields
    return {
        wire.WEBHOOK_EVENT_ID: event_id,
        wire.WEBHOOK_PAYLOAD: {
            name: value for name, value in payload.items() if name not in fields or value is not None
        },
    }


def webhook_queue_message(delivery: dict[str, Any], received_at: datetime) -> intake.QueueMessage:
    """The WebhookQueue message the receiver makes of a delivery (its own rules: contract 1)."""
    accepted = intake.parse(json.dumps(delivery).encode())
    assert isinstance(accepted, intake.Accepted), accepted
    return intake.queue_message(accepted, received_at)


def webhook_sqs_record(
    message: intake.QueueMessage,
    *,
    message_id: str = "m-1",
    receive_count: int = 1,
    queue_arn: str = WEBHOOK_QUEUE_ARN,
) -> dict[str, Any]:
    """A Lambda SQS record of a WebhookQueue message."""
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": message.body,
        "attributes": {"ApproximateReceiveCount": str(receive_count)},
        "messageAttributes": {
            name: {"stringValue": value, "dataType": "String"} for name, value in message.attributes.items()
        },
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    }


def connection_completed_event(
    entry_id: str, ref_id: str, completed_at: datetime, sequence: int = 3, region: str | None = "CAISO"
) -> dict[str, Any]:
    """The ``connection.completed`` CloudEvent the emitter publishes for a completion (what opens a watch)."""
    connection = {
        wire.ENTRY_ID: entry_id,
        wire.ENTRY_REF_ID: ref_id,
        wire.ENTRY_TRANSMISSION_REGION: region,
        wire.ENTRY_LAST_INTERACTION: format_instant(completed_at),
        wire.ENTRY_CONNECTION_STATUS: wire.CONNECTION_COMPLETED,
    }
    return build_event(
        CONNECTION_COMPLETED,
        entry_id=entry_id,
        subject=ref_id,
        sequence=sequence,
        time=format_instant(completed_at),
        data={"connection": connection, "previous": {}, "actionable_at": format_instant(completed_at)},
    )
