"""The event catalog: every event type this project publishes, and its payload, defined once.

Each message on the events topic is one CloudEvents 1.0 JSON event (see docs/events.md). The JSON
Schemas under ``schemas/`` are GENERATED from :data:`CATALOG` (``make schemas``); a test fails when the
files drift from it. The contract is public: change it only additively.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from leap_tracker.leap import wire

SOURCE = "leap-connect-tracker"
SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
SEQUENCE_DIGITS = 12
# Fixed namespace so an event's id is the same on every retry, replay and redeploy.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c2a7e-4b7d-5a43-9a64-1f0f5b8c3d21")

# SNS message attribute names (at most 10; never personal data: SNS does not encrypt attributes).
ATTR_TYPE = "type"
ATTR_CONNECTION_STATUS = "connection_status"
ATTR_TRANSMISSION_REGION = "transmission_region"
ATTR_ERROR_CODE = "error_code"

# --- event type names ---------------------------------------------------------------------------
CONNECTION_STARTED = "connection.started"
CONNECTION_NOT_STARTED = "connection.not_started"
CONNECTION_PARTIAL = "connection.partial"
CONNECTION_ERROR = "connection.error"
CONNECTION_COMPLETED = "connection.completed"
CONNECTION_OTHER_STATUS = "connection.other_status"  # a connection_status this version does not know
UTILITY_CONNECTED = "utility.connected"
UTILITY_NOT_CONNECTED = "utility.not_connected"
UTILITY_ERROR = "utility.error"
UTILITY_OTHER_STATUS = "utility.other_status"  # a utility status this version does not know
UTILITY_REMOVED = "utility.removed"
AGREEMENT_PENDING = "agreement.pending"
AGREEMENT_COMPLETED = "agreement.completed"
AGREEMENT_NOT_REQUIRED = "agreement.not_required"
METER_APPEARED = "meter.appeared"
METER_OVERDUE = "meter.overdue"
METER_WATCH_EXPIRED = "meter.watch_expired"
ENROLLMENT_ACTIONS_REQUIRED = "enrollment.actions_required"  # from Leap's enrollment webhooks
ENROLLMENT_INELIGIBLE = "enrollment.ineligible"
OUTREACH_SENT = "outreach.sent"
OUTREACH_SUPPRESSED = "outreach.suppressed"
OUTREACH_REQUESTED = "outreach.requested"  # on the outreach topic, for the partner's own systems

# connection_status value -> the type published when an entry enters it (others: CONNECTION_OTHER_STATUS)
CONNECTION_TYPE_BY_STATUS = {
    wire.CONNECTION_NOT_STARTED: CONNECTION_NOT_STARTED,
    wire.CONNECTION_PARTIAL: CONNECTION_PARTIAL,
    wire.CONNECTION_ERROR: CONNECTION_ERROR,
    wire.CONNECTION_COMPLETED: CONNECTION_COMPLETED,
}
# utility status value -> the type published when a utility enters it or its error code changes
# (others: UTILITY_OTHER_STATUS)
UTILITY_TYPE_BY_STATUS = {
    wire.UTILITY_CONNECTED: UTILITY_CONNECTED,
    wire.UTILITY_NOT_CONNECTED: UTILITY_NOT_CONNECTED,
    wire.UTILITY_ERROR: UTILITY_ERROR,
}

# --- payload building blocks (JSON Schema, draft 2020-12) ---------------------------------------
_DATE_TIME = {"type": "string", "format": "date-time"}
_OPEN_STRING = {"type": "string"}  # Leap enumerations are open: new values pass through
_NULLABLE_STRING = {"type": ["string", "null"]}

UTILITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [wire.UTILITY_NAME, wire.UTILITY_STATUS],
    "properties": {
        wire.UTILITY_AUTHORIZATION_UUID: _NULLABLE_STRING,
        wire.UTILITY_NAME: {"type": "string"},
        wire.UTILITY_IS_REQUIRED: {"type": "boolean"},
        wire.UTILITY_STATUS: _OPEN_STRING,
        wire.UTILITY_ERROR_CODE: _NULLABLE_STRING,
        wire.UTILITY_START: {"type": ["string", "null"], "format": "date-time"},
        wire.UTILITY_LAST_INTERACTION: {"type": ["string", "null"], "format": "date-time"},
    },
    "additionalProperties": True,
}

CONNECTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The entry as Leap's Connect API returned it (Leap field names).",
    "required": [
        wire.ENTRY_ID,
        wire.ENTRY_REF_ID,
        wire.ENTRY_CONNECTION_STATUS,
        wire.ENTRY_LAST_INTERACTION,
    ],
    "properties": {
        wire.ENTRY_ID: {"type": "string"},
        wire.ENTRY_TRANSMISSION_REGION: _NULLABLE_STRING,
        wire.ENTRY_REF_ID: {"type": "string"},
        wire.ENTRY_START: _DATE_TIME,
        wire.ENTRY_LAST_INTERACTION: _DATE_TIME,
        wire.ENTRY_CONNECTION_STATUS: _OPEN_STRING,
        wire.ENTRY_UTILITY_CONNECTIONS: {"type": "array", "items": UTILITY_SCHEMA},
        wire.ENTRY_AGREEMENTS: {"type": "object", "additionalProperties": _OPEN_STRING},
    },
    "additionalProperties": True,
}

AGREEMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "status"],
    "properties": {
        "name": {"type": "string", "description": "the Leap field name of the agreement"},
        "status": _OPEN_STRING,
    },
    "additionalProperties": False,
}
# agreement.not_required: the status is NOT_REQUIRED, or null when Leap no longer lists the agreement.
_DROPPED_AGREEMENT_SCHEMA: dict[str, Any] = {
    **AGREEMENT_SCHEMA,
    "properties": {**AGREEMENT_SCHEMA["properties"], "status": _NULLABLE_STRING},
}

_CHANGE_DATA = {
    "connection": CONNECTION_SCHEMA,
    "previous": {
        "type": "object",
        "description": (
            "The previous values of the top-level fields this change modified (Leap field names; null "
            "for a field that was absent); empty when the entry is first seen."
        ),
    },
    "actionable_at": {
        **_DATE_TIME,
        "description": "last interaction + ACTIONABLE_DELAY_MINUTES (default 60): act on the entry from then",
    },
}

_WATCH_DATA = {
    "entry_id": {"type": "string"},
    "ref_id": {"type": "string"},
    "transmission_region": _NULLABLE_STRING,
    "completed_at": {**_DATE_TIME, "description": "the completion's last interaction"},
    "checks": {"type": "integer", "minimum": 0, "description": "Meters API checks so far, this one included"},
}

METER_SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["meter_id"],
    "description": "Identifiers only (no address, account or customer data): GET /v2/meters/{meter_id}.",
    "properties": {
        "meter_id": {"type": "string", "description": "Leap's meter id (Meters v2 meter_id)"},
        "utility_name": {**_NULLABLE_STRING, "description": "Meters v2 utility.utility_name, e.g. PGE"},
        "created_at": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": "when Leap created the meter (audit.created_at)",
        },
    },
    "additionalProperties": False,
}

# Enrollment events restate one of Leap's enrollment webhooks (docs/webhooks.md#processing): about a
# meter, not a connection, and carrying no customer data (Leap's webhooks carry none).
_ENROLLMENT_DATA = {
    "meter_id": {"type": "string", "description": "Leap's meter id: GET /v2/meters/{meter_id}"},
    "ref_id": {**_NULLABLE_STRING, "description": "the Reference ID (Leap's partner_reference), when given"},
    "transmission_region": _OPEN_STRING,
    "meter_type": {**_NULLABLE_STRING, "description": "UTILITY_METER, SUBMETER or DEVICE, when given"},
    "global_enrollment_status": {
        **_OPEN_STRING,
        "description": "ACTIVE, ELIGIBLE, INELIGIBLE, NOT_PARTICIPATING, PENDING (open)",
    },
    "webhook_event_id": {"type": "string", "description": "Leap's id of the webhook this event restates"},
    "received_at": {**_DATE_TIME, "description": "when the stack received the webhook (also the time)"},
}
_ENROLLMENT_REQUIRED = ("meter_id", "transmission_region", "global_enrollment_status", "webhook_event_id")
REQUIRED_ACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        wire.WEBHOOK_ACTION_CODE,
        wire.WEBHOOK_ACTION_TYPE,
        wire.WEBHOOK_ACTION_DESCRIPTION,
        wire.WEBHOOK_ACTION_DEADLINE,
    ],
    "description": "One action Leap asks of the partner (Leap's field names).",
    "properties": {
        wire.WEBHOOK_ACTION_CODE: _OPEN_STRING,
        wire.WEBHOOK_ACTION_TYPE: _OPEN_STRING,
        wire.WEBHOOK_ACTION_DESCRIPTION: {"type": "string"},
        wire.WEBHOOK_ACTION_DEADLINE: {**_DATE_TIME, "description": "act before this instant"},
        wire.WEBHOOK_ACTION_PROGRAM: {"description": "the program it is for, as Leap sent it (when it did)"},
        wire.WEBHOOK_ACTION_DELIVERY_PERIOD: {
            "description": "the delivery period, as Leap sent it (when it did)"
        },
    },
    "additionalProperties": False,
}

_OUTREACH_DATA = {
    "entry_id": {"type": "string"},
    "ref_id": {"type": "string"},
    "reason": {
        "type": ["string", "null"],
        "description": (
            "why the customer needs a message (docs/outreach.md): not_started, utility_not_connected, "
            "utility_error.<ERROR_CODE>, utility_error.unknown, agreement_pending, other_utility; "
            "null when nothing is needed"
        ),
    },
    "connection_status": _NULLABLE_STRING,
    "transmission_region": _NULLABLE_STRING,
}
# One message's identity: the same dedupe key is never sent twice; webhook-id is derived from it.
_OUTREACH_MESSAGE_IDS = {
    "attempt": {"type": "integer", "minimum": 1, "description": "messages to the customer, this one too"},
    "reminder": {"type": "boolean", "description": "a follow-up on an unchanged state, after the cooldown"},
    "dedupe_key": {"type": "string", "description": "<reason>#<entry state hash>#<number for that state>"},
    "webhook_id": {"type": "string", "description": "the Standard Webhooks webhook-id (same on resends)"},
    "connect_url": {"type": "string"},
    # Optional in the schema (events published before variants existed have none); always set now.
    "variant": {
        "type": "string",
        "description": "the template variant the message was rendered from (docs/outreach.md#variants)",
    },
}


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    description: str
    data_properties: dict[str, Any]
    data_required: tuple[str, ...]
    topic: str = "events"  # "events" or "outreach"

    @property
    def dataschema(self) -> str:
        return f"urn:{SOURCE}:schema:{self.name}:1"


def _change(name: str, description: str, **extra_properties: Any) -> EventType:
    properties = {**_CHANGE_DATA, **extra_properties}
    return EventType(
        name, description, properties, ("connection", "previous", "actionable_at", *extra_properties)
    )


CATALOG: dict[str, EventType] = {
    t.name: t
    for t in (
        _change(CONNECTION_STARTED, "A Reference ID was seen for the first time (the customer clicked)."),
        _change(CONNECTION_NOT_STARTED, "The connection entered NOT_STARTED: clicked, no utility login yet."),
        _change(CONNECTION_PARTIAL, "The connection entered PARTIAL: some, not all, steps are done."),
        _change(CONNECTION_ERROR, "The connection entered ERROR: a utility connection failed."),
        _change(CONNECTION_COMPLETED, "The connection entered COMPLETED: meters usually follow in ~24 h."),
        _change(
            CONNECTION_OTHER_STATUS,
            "The connection entered a status this version does not know (Leap added one); "
            "data.connection.connection_status holds it.",
        ),
        _change(UTILITY_CONNECTED, "A utility connection entered CONNECTED.", utility=UTILITY_SCHEMA),
        _change(UTILITY_NOT_CONNECTED, "A utility connection entered NOT_CONNECTED.", utility=UTILITY_SCHEMA),
        _change(
            UTILITY_ERROR,
            "A utility connection entered ERROR, or its error code changed.",
            utility=UTILITY_SCHEMA,
        ),
        _change(
            UTILITY_OTHER_STATUS,
            "A utility connection entered a status this version does not know; data.utility.status holds it.",
            utility=UTILITY_SCHEMA,
        ),
        _change(
            UTILITY_REMOVED,
            "A utility connection Leap listed before is no longer listed; data.utility is its last state.",
            utility=UTILITY_SCHEMA,
        ),
        _change(
            AGREEMENT_PENDING,
            "An agreement entered a status that is neither NOT_REQUIRED nor done: it awaits the customer.",
            agreement=AGREEMENT_SCHEMA,
        ),
        _change(
            AGREEMENT_COMPLETED,
            "An agreement entered a done status (AGREEMENT_DONE_STATUSES): it is signed.",
            agreement=AGREEMENT_SCHEMA,
        ),
        _change(
            AGREEMENT_NOT_REQUIRED,
            "An agreement that was pending or done is NOT_REQUIRED again, or no longer listed (status null).",
            agreement=_DROPPED_AGREEMENT_SCHEMA,
        ),
        EventType(
            METER_APPEARED,
            "Meters of a completed connection appeared on Leap's Meters API (once per Reference ID; "
            "closes the watch).",
            {**_WATCH_DATA, "meters": {"type": "array", "minItems": 1, "items": METER_SUMMARY_SCHEMA}},
            ("entry_id", "ref_id", "completed_at", "checks", "meters"),
        ),
        EventType(
            METER_OVERDUE,
            "No meter yet, METER_OVERDUE_HOURS (default 72) after completion (published once); checks go "
            "on every METER_OVERDUE_RETRY_HOURS until the give-up horizon.",
            {**_WATCH_DATA, "overdue_after_hours": {"type": "integer", "minimum": 1}},
            ("entry_id", "ref_id", "completed_at", "checks", "overdue_after_hours"),
        ),
        EventType(
            METER_WATCH_EXPIRED,
            "Still no meter METER_GIVE_UP_DAYS (default 14) after completion: the watch is closed "
            "(final event).",
            {**_WATCH_DATA, "gave_up_after_days": {"type": "integer", "minimum": 1}},
            ("entry_id", "ref_id", "completed_at", "checks", "gave_up_after_days"),
        ),
        EventType(
            ENROLLMENT_ACTIONS_REQUIRED,
            "Leap asks the partner to act for a meter's enrollment (from Leap's "
            "meter.enrollment.required-actions.updated webhook): the actions, each with its deadline.",
            {
                **_ENROLLMENT_DATA,
                "required_actions": {"type": "array", "minItems": 1, "items": REQUIRED_ACTION_SCHEMA},
            },
            (*_ENROLLMENT_REQUIRED, "required_actions"),
        ),
        EventType(
            ENROLLMENT_INELIGIBLE,
            "Leap found a meter INELIGIBLE for enrollment (from Leap's "
            "meter.enrollment.global-status.updated webhook): stop pursuing it in programs.",
            dict(_ENROLLMENT_DATA),
            _ENROLLMENT_REQUIRED,
        ),
        EventType(
            OUTREACH_SENT,
            "A re-engagement message was sent to the customer (audit).",
            {
                **_OUTREACH_DATA,
                **_OUTREACH_MESSAGE_IDS,
                "channels": {"type": "array", "items": {"enum": ["webhook", "topic"]}},
                "message_id": {"type": "string", "description": "the id of the outreach.requested event"},
            },
            ("entry_id", "ref_id", "reason", "attempt", "channels", "dedupe_key", "webhook_id"),
        ),
        EventType(
            OUTREACH_SUPPRESSED,
            "A re-engagement message was considered and not sent, with the reason (audit).",
            {
                **_OUTREACH_DATA,
                "suppressed_because": {
                    "type": "string",
                    "description": (
                        "completed, nothing_outstanding, unknown_connection_status, other_utility, "
                        "max_attempts, cooldown, no_channel, holdout (open: new causes may be added)"
                    ),
                },
                "attempts": {"type": "integer", "minimum": 0, "description": "messages sent so far"},
                "next_attempt_at": {**_DATE_TIME, "description": "cooldown, holdout: when a message may go"},
            },
            ("entry_id", "ref_id", "suppressed_because", "attempts"),
        ),
        EventType(
            OUTREACH_REQUESTED,
            "Ask the partner's own systems to send this message (outreach topic only).",
            {
                **_OUTREACH_DATA,
                **_OUTREACH_MESSAGE_IDS,
                "customer_kind": {"enum": ["residential", "commercial"]},
                "subject": {"type": "string"},
                "body": {"type": "string"},
                "utility": {**UTILITY_SCHEMA, "description": "the utility the message is about"},
                "other_utility": {**UTILITY_SCHEMA, "description": "other_utility: the one connected"},
                "pending_utilities": {"type": "array", "items": {"type": "string"}},
                "pending_agreements": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Leap field names of the agreements still to sign",
                },
                "connection": CONNECTION_SCHEMA,
            },
            (
                "entry_id",
                "ref_id",
                "reason",
                "attempt",
                "dedupe_key",
                "webhook_id",
                "connect_url",
                "subject",
                "body",
                "connection",
            ),
            topic="outreach",
        ),
    )
}


def event_id(entry_id: str, sequence: int, event_type: str, discriminator: str = "") -> str:
    """Deterministic id: the same change always yields the same id (consumers deduplicate on it)."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{entry_id}\x1f{sequence}\x1f{event_type}\x1f{discriminator}"))


def webhook_event_id(leap_webhook_event_id: str, event_type: str) -> str:
    """The id of the event that restates one of Leap's webhooks: from Leap's id alone, so every retry
    and every duplicate delivery of that webhook republishes the same id."""
    return event_id(leap_webhook_event_id, 0, event_type, "leap-webhook")


def format_sequence(sequence: int) -> str:
    """Zero-padded so sequences compare as strings too."""
    return str(sequence).zfill(SEQUENCE_DIGITS)


def build_event(
    event_type: str,
    *,
    entry_id: str,
    subject: str,
    sequence: int,
    time: str,
    data: dict[str, Any],
    discriminator: str = "",
    fixed_id: str | None = None,
) -> dict[str, Any]:
    """One CloudEvents 1.0 JSON event of a catalog type. Its id derives from (entry id, sequence,
    type, discriminator), unless ``fixed_id`` gives it (an event restating a webhook: see
    :func:`webhook_event_id`)."""
    kind = CATALOG[event_type]
    return {
        "specversion": SPEC_VERSION,
        "id": fixed_id or event_id(entry_id, sequence, event_type, discriminator),
        "source": SOURCE,
        "type": event_type,
        "subject": subject,
        "time": time,
        "datacontenttype": CONTENT_TYPE,
        "dataschema": kind.dataschema,
        "sequence": format_sequence(sequence),
        "data": data,
    }


def message_attributes(event: dict[str, Any]) -> dict[str, str]:
    """The SNS filterable attributes of an event (only those that have a value; no personal data).

    ``error_code`` is the utility's on utility events; on the other connection events it is the first
    error code of a utility in ERROR (required utilities first), so "errors with code X" filters work on
    ``connection.error`` too.
    """
    data = event.get("data", {})
    connection = data.get("connection") or {}
    utility = data.get("utility")
    values = {
        ATTR_TYPE: event["type"],
        ATTR_CONNECTION_STATUS: connection.get(wire.ENTRY_CONNECTION_STATUS) or data.get("connection_status"),
        ATTR_TRANSMISSION_REGION: connection.get(wire.ENTRY_TRANSMISSION_REGION)
        or data.get("transmission_region"),
        ATTR_ERROR_CODE: utility.get(wire.UTILITY_ERROR_CODE) if utility else _first_error_code(connection),
    }
    return {name: str(value) for name, value in values.items() if value}


def _first_error_code(connection: dict[str, Any]) -> str | None:
    utilities = connection.get(wire.ENTRY_UTILITY_CONNECTIONS) or []
    failed = [u for u in utilities if u.get(wire.UTILITY_STATUS) == wire.UTILITY_ERROR]
    failed.sort(key=lambda u: not u.get(wire.UTILITY_IS_REQUIRED))  # stable: list order within each group
    return next((u[wire.UTILITY_ERROR_CODE] for u in failed if u.get(wire.UTILITY_ERROR_CODE)), None)


def json_schema(event_type: str) -> dict[str, Any]:
    """The full JSON Schema (envelope + data) of one type, as written to schemas/<type>.json."""
    kind = CATALOG[event_type]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": kind.dataschema,
        "title": event_type,
        "description": kind.description,
        "type": "object",
        "required": [
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "datacontenttype",
            "dataschema",
            "sequence",
            "data",
        ],
        "properties": {
            "specversion": {"const": SPEC_VERSION},
            "id": {"type": "string", "minLength": 1},
            "source": {"const": SOURCE},
            "type": {"const": event_type},
            "subject": {"type": "string", "minLength": 1},
            "time": _DATE_TIME,
            "datacontenttype": {"const": CONTENT_TYPE},
            "dataschema": {"const": kind.dataschema},
            "sequence": {"type": "string", "pattern": f"^[0-9]{{{SEQUENCE_DIGITS}}}$"},
            "data": {
                "type": "object",
                "required": list(kind.data_required),
                "properties": kind.data_properties,
                "additionalProperties": True,
            },
        },
        "additionalProperties": True,
    }
