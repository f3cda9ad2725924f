"""A WebhookQueue message read back as a delivery, and the fields processing takes from its payload.

The receiver already checked the body (``intake.parse``); the same shape rules are applied again here
(``intake.fields_problem`` over ``intake.PAYLOAD_FIELDS``), so a message put on the queue by anything
else (a redrive, an operator) is held to them too. Values that go on the events topic as SNS
attributes (the region) or into the table are also checked as codes. A message that breaks a rule is
:class:`MalformedDelivery`: it can never succeed, so it goes the way of every failure (retried, then
the dead-letter queue), and its reason names the field, never a value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import code_problem
from leap_tracker.timeutil import parse_instant
from leap_tracker.webhooks import intake

_UUID = re.compile(intake.UUID_PATTERN)


class MalformedDelivery(ValueError):
    """A queue message that is not a delivery the receiver would have kept (names the field only)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    event_id: str  # Leap's webhook_event_id (a UUID)
    event_type: str
    received_at: datetime
    body: str  # as received
    payload: Mapping[str, Any]

    @property
    def known(self) -> bool:
        return self.event_type in wire.WEBHOOK_EVENT_TYPES


@dataclass(frozen=True, slots=True)
class MeterCreated:
    meter_id: str
    ref_id: str | None  # Leap's partner_reference: optional in its webhook file


def delivery(body: str, attributes: Mapping[str, str | None]) -> Delivery:
    """The delivery a WebhookQueue message carries (body and String attributes, contract 1)."""
    event_id = _attribute(attributes, intake.QUEUE_ATTR_EVENT_ID)
    event_type = _attribute(attributes, intake.QUEUE_ATTR_EVENT_TYPE)
    try:
        received_at = parse_instant(_attribute(attributes, intake.QUEUE_ATTR_RECEIVED_AT))
    except ValueError:
        raise MalformedDelivery(f"attribute {intake.QUEUE_ATTR_RECEIVED_AT} is not an instant") from None
    try:
        document = json.loads(body)
    except ValueError:
        raise MalformedDelivery("the body is not JSON") from None
    if problem := intake.envelope_problem(document):
        raise MalformedDelivery(problem)
    payload = document[wire.WEBHOOK_PAYLOAD]
    if document[wire.WEBHOOK_EVENT_ID] != event_id or not _UUID.fullmatch(event_id):
        raise MalformedDelivery(
            f"attribute {intake.QUEUE_ATTR_EVENT_ID} is not the body's {wire.WEBHOOK_EVENT_ID}"
        )
    if payload[wire.WEBHOOK_EVENT_TYPE] != event_type:
        raise MalformedDelivery(
            f"attribute {intake.QUEUE_ATTR_EVENT_TYPE} is not the body's {wire.WEBHOOK_EVENT_TYPE}"
        )
    fields = intake.PAYLOAD_FIELDS.get(event_type)
    if fields is not None and (problem := intake.fields_problem(payload, fields, wire.WEBHOOK_PAYLOAD)):
        raise MalformedDelivery(f"{event_type}: {problem}")
    return Delivery(event_id, event_type, received_at, body, payload)


def meter_created(payload: Mapping[str, Any]) -> MeterCreated:
    """A checked ``meter.created`` payload's meter id and Reference ID."""
    return MeterCreated(payload[wire.WEBHOOK_METER_ID], payload.get(wire.WEBHOOK_PARTNER_REFERENCE))


def reference(payload: Mapping[str, Any]) -> str:
    """A checked ``connect_session.*`` payload's Reference ID (required for those types)."""
    return payload[wire.WEBHOOK_PARTNER_REFERENCE]


def code(payload: Mapping[str, Any], name: str) -> str | None:
    """A short code of a checked payload (a region, a status, a meter type): it may become an SNS
    attribute, so one too long or with a control character is refused."""
    value = payload.get(name)
    if value is None:
        return None
    if problem := code_problem(value):
        raise MalformedDelivery(f"{wire.WEBHOOK_PAYLOAD}.{name} {problem}")
    return value


def _attribute(attributes: Mapping[str, str | None], name: str) -> str:
    value = attributes.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedDelivery(f"attribute {name} is missing")
    return value
