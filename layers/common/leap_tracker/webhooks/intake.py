"""The webhook receiver's rules, pure: which calls are Leap's, which bodies are kept, and how.

A call is taken in this order, and the first rule it breaks decides the answer:

1. only ``POST`` (405);
2. the secret header (its name configurable, ``x-api-key`` by default, looked up case-blind) equals one
   of the accepted secret values, compared in constant time with ``hmac.compare_digest``: the current
   value and, during a rotation, the previous one (401: nothing is kept, nothing enqueued);
3. at most ``max_body_bytes`` (413);
4. UTF-8 JSON text SQS can carry, shaped as Leap's webhook file says (400): ``webhook_event_id`` a UUID,
   ``payload`` an object whose ``webhook_event_type`` is a string; for the seven known types their
   required fields with their types (:data:`PAYLOAD_FIELDS`). Enumerated values (regions, statuses...)
   are checked as strings only: a value Leap adds later must not turn a delivery into a refusal. An
   unknown type passes with the envelope checked: it is acknowledged, counted and kept.

A reason names the rule and the field, never a value: a body carries Reference IDs, and a reason goes
to logs and to the rejected queue's message attributes.

Why hand-written checks over a table, not a JSON Schema library (bench/webhook_validation.py, Python
3.13, on top of what the handler imports anyway): fastjsonschema, what Powertools' validation utility
runs, would add 1.3 ms of import and 16.6 ms of schema compilation to every cold start of the receiver,
and Powertools' ``validate`` compiles the schema again on every call (12.6 ms a delivery), to check
what this module checks in 10 microseconds (fastjsonschema compiled once: 21). :func:`json_schema`
renders the same table as a JSON Schema: tests/unit/test_webhook_intake.py holds these checks to it
with ``jsonschema``, field by field.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from leap_tracker.leap import wire
from leap_tracker.timeutil import format_instant, parse_instant

# The SQS message attributes of an accepted delivery (contract 1 of the design; the processor reads them).
QUEUE_ATTR_EVENT_TYPE = "webhook_event_type"
QUEUE_ATTR_EVENT_ID = "webhook_event_id"
QUEUE_ATTR_RECEIVED_AT = "received_at"
# The attributes of an authenticated body refused as malformed, kept in WebhookRejectedQueue.
REJECTED_ATTR_REASON = "rejected_reason"
REJECTED_ATTR_BODY_ENCODING = "body_encoding"  # text (as received), base64 (not SQS text) or empty

DEFAULT_MAX_BODY_BYTES = 65_536
MAX_EVENT_TYPE_CHARACTERS = 128  # an unknown type is logged and queued: its size is bounded too
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID = re.compile(UUID_PATTERN)
# The characters SendMessage refuses in a body (it takes #x9, #xA, #xD, #x20-#xD7FF, #xE000-#xFFFD and
# #x10000-#x10FFFF). Written as what is refused: the class of what is allowed takes 20 ms to compile.
_NOT_SQS_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """A delivery to keep: its body is enqueued exactly as received."""

    event_id: str
    event_type: str
    known: bool  # one of the seven types of wire.WEBHOOK_EVENT_TYPES
    body: str


@dataclass(frozen=True, slots=True)
class Refused:
    """A call not kept as a delivery: the HTTP status to answer and why (no value from the body)."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class QueueMessage:
    body: str
    attributes: Mapping[str, str]  # SQS String message attributes


@dataclass(frozen=True, slots=True)
class IntakeRules:
    secret_header: str = wire.DEFAULT_WEBHOOK_SECRET_HEADER
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


# --- the payload shapes -------------------------------------------------------------------------


class Kind(StrEnum):
    TEXT = "text"  # a string (enumerated values included: see the module docstring)
    UUID = "uuid"
    INSTANT = "instant"  # an ISO 8601 / RFC 3339 date-time (timeutil.parse_instant)
    REFERENCE = "reference"  # a Reference ID: wire.METERS_REFERENCE_ID_PATTERN
    UUIDS = "uuids"  # a list of UUIDs
    ACTIONS = "actions"  # required_actions: {"partner": [action, ...]}, each action as ACTION_FIELDS


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    required: bool  # an optional field may be absent or null


def _required(name: str, kind: Kind) -> Field:
    return Field(name, kind, True)


def _optional(name: str, kind: Kind) -> Field:
    return Field(name, kind, False)


_METER = (_required(wire.WEBHOOK_METER_ID, Kind.UUID), _required(wire.WEBHOOK_TRANSMISSION_REGION, Kind.TEXT))
_METER_EXTRAS = (
    _optional(wire.WEBHOOK_PARTNER_REFERENCE, Kind.REFERENCE),
    _optional(wire.WEBHOOK_METER_TYPE, Kind.TEXT),
)
_GLOBAL_STATUS = _required(wire.WEBHOOK_GLOBAL_ENROLLMENT_STATUS, Kind.TEXT)

# Leap's webhook file, per type: the fields checked (required ones marked so). Others pass unchecked.
PAYLOAD_FIELDS: Mapping[str, tuple[Field, ...]] = {
    wire.WEBHOOK_METER_CREATED: (*_METER, *_METER_EXTRAS),
    wire.WEBHOOK_CONNECT_SESSION_UPDATED: (
        _required(wire.WEBHOOK_PARTNER_REFERENCE, Kind.REFERENCE),
        _required(wire.WEBHOOK_STATUS, Kind.TEXT),
    ),
    wire.WEBHOOK_AUTHORIZATION_UPDATED: (
        _required(wire.WEBHOOK_PARTNER_REFERENCE, Kind.REFERENCE),
        _required(wire.WEBHOOK_UTILITY_NAME, Kind.TEXT),
        _required(wire.WEBHOOK_STATUS, Kind.TEXT),
    ),
    wire.WEBHOOK_ENROLLMENT_GLOBAL_STATUS: (*_METER, _GLOBAL_STATUS, *_METER_EXTRAS),
    wire.WEBHOOK_ENROLLMENT_PARTICIPATION: (
        *_METER,
        _required(wire.WEBHOOK_PARTICIPATION_PREFERENCE, Kind.TEXT),
        _required(wire.WEBHOOK_START_TIME, Kind.INSTANT),
        _optional(wire.WEBHOOK_END_TIME, Kind.INSTANT),
        *_METER_EXTRAS,
    ),
    wire.WEBHOOK_ENROLLMENT_REQUIRED_ACTIONS: (
        *_METER,
        _GLOBAL_STATUS,
        _required(wire.WEBHOOK_REQUIRED_ACTIONS, Kind.ACTIONS),
        *_METER_EXTRAS,
    ),
    wire.WEBHOOK_ENROLLMENT_GROUP: (
        _required(wire.WEBHOOK_MARKET_GROUP_ID, Kind.UUID),
        _required(wire.WEBHOOK_MARKET_GROUP_NAME, Kind.TEXT),
        _required(wire.WEBHOOK_START_DATE_TIME, Kind.INSTANT),
        _required(wire.WEBHOOK_END_DATE_TIME, Kind.INSTANT),
        _required(wire.WEBHOOK_METER_IDS, Kind.UUIDS),
    ),
}
ACTION_FIELDS = (
    _required(wire.WEBHOOK_ACTION_DEADLINE, Kind.INSTANT),
    _required(wire.WEBHOOK_ACTION_TYPE, Kind.TEXT),
    _required(wire.WEBHOOK_ACTION_DESCRIPTION, Kind.TEXT),
    _required(wire.WEBHOOK_ACTION_CODE, Kind.TEXT),
)


# --- the rules ----------------------------------------------------------------------------------


def receive(
    method: str,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    rules: IntakeRules = IntakeRules(),  # frozen: one shared default is safe
) -> Accepted | Refused:
    """One call, by the rules in the module docstring."""
    if method.upper() != "POST":
        return Refused(405, "only POST is accepted")
    presented = header_value(headers, rules.secret_header)
    if presented is None:
        return Refused(401, f"no {rules.secret_header} header")
    if not matches_a_secret(presented, secrets):
        return Refused(401, f"the {rules.secret_header} value matches no accepted secret")
    if len(body) > rules.max_body_bytes:
        return Refused(413, f"the body has {len(body)} bytes, more than the {rules.max_body_bytes} accepted")
    return parse(body)


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name``, whatever the case of its name (None when absent)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def matches_a_secret(presented: str, secrets: Sequence[str]) -> bool:
    """Whether ``presented`` equals one of the non-empty ``secrets``. Each is compared in constant
    time, and all of them are, so the time taken does not tell which (or whether one) matched."""
    given = presented.strip().encode("utf-8", "surrogatepass")
    matched = False
    for secret in secrets:
        if secret:
            matched |= hmac.compare_digest(given, secret.encode("utf-8", "surrogatepass"))
    return matched


def parse(body: bytes) -> Accepted | Refused:
    """An authenticated body: kept when it is a webhook delivery's JSON, refused (400) otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Refused(400, "the body is not UTF-8 text")
    if _NOT_SQS_TEXT.search(text):
        return Refused(400, "the body holds characters an SQS message cannot carry")
    try:
        document = json.loads(text, parse_constant=_no_constant)
    except ValueError:  # json.JSONDecodeError, and NaN/Infinity
        return Refused(400, "the body is not JSON")
    problem = envelope_problem(document)
    if problem is not None:
        return Refused(400, problem)
    payload = document[wire.WEBHOOK_PAYLOAD]
    event_type = payload[wire.WEBHOOK_EVENT_TYPE]
    fields = PAYLOAD_FIELDS.get(event_type)
    if fields is not None and (problem := fields_problem(payload, fields, wire.WEBHOOK_PAYLOAD)):
        return Refused(400, f"{event_type}: {problem}")
    return Accepted(document[wire.WEBHOOK_EVENT_ID], event_type, fields is not None, text)


def envelope_problem(document: Any) -> str | None:
    """What is wrong with the part every delivery has, whatever its type (None: nothing)."""
    if not isinstance(document, dict):
        return "the body is not a JSON object"
    event_id = document.get(wire.WEBHOOK_EVENT_ID)
    if event_id is None:
        return f"{wire.WEBHOOK_EVENT_ID}: missing"
    if not _is_uuid(event_id):
        return f"{wire.WEBHOOK_EVENT_ID}: not a UUID string"
    payload = document.get(wire.WEBHOOK_PAYLOAD)
    if not isinstance(payload, dict):
        return f"{wire.WEBHOOK_PAYLOAD}: missing or not an object"
    event_type = payload.get(wire.WEBHOOK_EVENT_TYPE)
    where = f"{wire.WEBHOOK_PAYLOAD}.{wire.WEBHOOK_EVENT_TYPE}"
    if not isinstance(event_type, str) or not event_type:
        return f"{where}: missing or not a string"
    if len(event_type) > MAX_EVENT_TYPE_CHARACTERS:
        return f"{where}: longer than {MAX_EVENT_TYPE_CHARACTERS} characters"
    return None


def fields_problem(container: Mapping[str, Any], fields: Sequence[Field], where: str) -> str | None:
    """The first field of ``container`` that breaks its rule, as ``<where>.<name>: <why>``."""
    for spec in fields:
        value = container.get(spec.name)
        path = f"{where}.{spec.name}"
        if value is None:
            if spec.required:
                return f"{path}: missing"
            continue
        problem = _value_problem(value, spec.kind, path)
        if problem is not None:
            return problem
    return None


def _value_problem(value: Any, kind: Kind, path: str) -> str | None:
    match kind:
        case Kind.TEXT:
            return None if isinstance(value, str) else f"{path}: not a string"
        case Kind.UUID:
            return None if _is_uuid(value) else f"{path}: not a UUID string"
        case Kind.INSTANT:
            return None if _is_instant(value) else f"{path}: not a date-time string"
        case Kind.REFERENCE:
            ok = isinstance(value, str) and wire.METERS_REFERENCE_ID_PATTERN.fullmatch(value)
            return (
                None if ok else f"{path}: not a Reference ID (3 to 256 characters, no /\\?[]{{}}!#$%^&*()<>|)"
            )
        case Kind.UUIDS:
            ok = isinstance(value, list) and all(_is_uuid(item) for item in value)
            return None if ok else f"{path}: not a list of UUID strings"
        case Kind.ACTIONS:
            return _actions_problem(value, path)
    raise AssertionError(kind)  # pragma: no cover - every Kind is matched above


def _actions_problem(value: Any, path: str) -> str | None:
    if not isinstance(value, dict):
        return f"{path}: not an object"
    actions = value.get(wire.WEBHOOK_PARTNER_ACTIONS)
    where = f"{path}.{wire.WEBHOOK_PARTNER_ACTIONS}"
    if actions is None:
        return None
    if not isinstance(actions, list):
        return f"{where}: not a list"
    for index, action in enumerate(actions):
        if not isinstance(action, dict):
            return f"{where}[{index}]: not an object"
        if problem := fields_problem(action, ACTION_FIELDS, f"{where}[{index}]"):
            return problem
    return None


def _is_uuid(value: Any) -> bool:
    return isinstance(value, str) and _UUID.match(value) is not None and len(value) == 36


def _is_instant(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_instant(value)
    except ValueError:
        return False
    return True


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# --- the queue messages ----------------------------------------------------------------------------


def queue_message(accepted: Accepted, received_at: datetime) -> QueueMessage:
    """WebhookQueue's message: the body as received, its type, id and time of receipt as attributes."""
    return QueueMessage(
        accepted.body,
        {
            QUEUE_ATTR_EVENT_TYPE: accepted.event_type,
            QUEUE_ATTR_EVENT_ID: accepted.event_id,
            QUEUE_ATTR_RECEIVED_AT: format_instant(received_at),
        },
    )


def rejected_message(body: bytes, refused: Refused, received_at: datetime) -> QueueMessage:
    """WebhookRejectedQueue's copy of an authenticated body refused as malformed: the body as
    received when SQS can carry it as text, else base64; the reason and time as attributes."""
    text = body.decode("utf-8", "replace")
    if not body:  # SQS takes no empty message
        kept, encoding = "(empty)", "empty"
    elif text.encode("utf-8") == body and not _NOT_SQS_TEXT.search(text):
        kept, encoding = text, "text"
    else:
        kept, encoding = base64.b64encode(body).decode("ascii"), "base64"
    return QueueMessage(
        kept,
        {
            REJECTED_ATTR_REASON: refused.reason,
            REJECTED_ATTR_BODY_ENCODING: encoding,
            QUEUE_ATTR_RECEIVED_AT: format_instant(received_at),
        },
    )


# --- the same shapes as a JSON Schema (the tests' oracle, the benchmark's input) -----------------


def json_schema() -> dict[str, Any]:
    """:data:`PAYLOAD_FIELDS` and the envelope as a JSON Schema (draft 7). Byte-level rules (size,
    UTF-8, SQS characters) are not a schema's business and are not in it."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "required": [wire.WEBHOOK_EVENT_ID, wire.WEBHOOK_PAYLOAD],
        "properties": {
            wire.WEBHOOK_EVENT_ID: _kind_schema(Kind.UUID),
            wire.WEBHOOK_PAYLOAD: {
                "type": "object",
                "required": [wire.WEBHOOK_EVENT_TYPE],
                "properties": {
                    wire.WEBHOOK_EVENT_TYPE: {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_EVENT_TYPE_CHARACTERS,
                    }
                },
            },
        },
        "allOf": [
            {
                "if": {
                    "properties": {
                        wire.WEBHOOK_PAYLOAD: {"properties": {wire.WEBHOOK_EVENT_TYPE: {"const": event_type}}}
                    }
                },
                "then": {"properties": {wire.WEBHOOK_PAYLOAD: _object_schema(fields)}},
            }
            for event_type, fields in PAYLOAD_FIELDS.items()
        ],
    }


def _object_schema(fields: Sequence[Field]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [spec.name for spec in fields if spec.required],
        "properties": {
            spec.name: (
                _kind_schema(spec.kind)
                if spec.required
                else {"anyOf": [{"type": "null"}, _kind_schema(spec.kind)]}
            )
            for spec in fields
        },
    }


def _kind_schema(kind: Kind) -> dict[str, Any]:
    match kind:
        case Kind.TEXT:
            return {"type": "string"}
        case Kind.UUID:
            return {"type": "string", "pattern": UUID_PATTERN, "maxLength": 36}
        case Kind.INSTANT:
            return {"type": "string", "format": "date-time"}
        case Kind.REFERENCE:
            # "$" escaped in the class: fastjsonschema rewrites every bare "$" as "\\Z", even there.
            pattern = "^" + wire.METERS_REFERENCE_ID_PATTERN.pattern.replace("$", "\\$") + "$"
            return {"type": "string", "pattern": pattern, "minLength": 3, "maxLength": 256}
        case Kind.UUIDS:
            return {"type": "array", "items": _kind_schema(Kind.UUID)}
        case Kind.ACTIONS:
            return {
                "type": "object",
                "properties": {
                    wire.WEBHOOK_PARTNER_ACTIONS: {"type": "array", "items": _object_schema(ACTION_FIELDS)}
                },
            }
    raise AssertionError(kind)  # pragma: no cover
