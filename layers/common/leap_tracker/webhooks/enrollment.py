"""Leap's meter enrollment webhooks: which carry something a partner can act on, and the events they
become (pure; docs/webhooks.md#processing says why).

| Leap's webhook                                   | published as                                   |
|--------------------------------------------------|------------------------------------------------|
| ``meter.enrollment.required-actions.updated``    | ``enrollment.actions_required``, when Leap asks |
|                                                  | the partner at least one action (with deadline) |
| ``meter.enrollment.global-status.updated``       | ``enrollment.ineligible``, for ``INELIGIBLE``   |
| the other statuses, ``participation-status``,    | nothing: kept in the table and counted          |
| ``group.updated``                                |                                                 |

A required action has a deadline and an INELIGIBLE meter has to leave the partner's plans: both ask
for a decision. The other statuses are Leap's own progress (PENDING, ELIGIBLE, ACTIVE), participation
is the preference the partner itself set, and market groups are the partner's own configuration:
restating them would add events with nothing to do.

Leap's enrollment webhooks carry no time or version, so their order cannot be restored: each event
says what one webhook reported, ``time`` when the stack received it, and its ``sequence`` is that
instant in Unix seconds (the order of receipt). Its id comes from Leap's ``webhook_event_id`` alone
(:func:`leap_tracker.events.catalog.webhook_event_id`): a retry or duplicate publishes the same id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from leap_tracker.events import catalog
from leap_tracker.leap import wire
from leap_tracker.timeutil import format_instant
from leap_tracker.webhooks.payloads import Delivery, code

ENROLLMENT_TYPES = frozenset(
    {
        wire.WEBHOOK_ENROLLMENT_GLOBAL_STATUS,
        wire.WEBHOOK_ENROLLMENT_PARTICIPATION,
        wire.WEBHOOK_ENROLLMENT_REQUIRED_ACTIONS,
        wire.WEBHOOK_ENROLLMENT_GROUP,
    }
)
_ACTION_FIELDS = (
    wire.WEBHOOK_ACTION_CODE,
    wire.WEBHOOK_ACTION_TYPE,
    wire.WEBHOOK_ACTION_DESCRIPTION,
    wire.WEBHOOK_ACTION_DEADLINE,
    wire.WEBHOOK_ACTION_PROGRAM,
    wire.WEBHOOK_ACTION_DELIVERY_PERIOD,
)


def published_type(delivery: Delivery) -> str | None:
    """The catalog type an enrollment delivery is published as; None: kept only (see module doc)."""
    payload = delivery.payload
    if delivery.event_type == wire.WEBHOOK_ENROLLMENT_REQUIRED_ACTIONS and partner_actions(payload):
        return catalog.ENROLLMENT_ACTIONS_REQUIRED
    if (
        delivery.event_type == wire.WEBHOOK_ENROLLMENT_GLOBAL_STATUS
        and payload.get(wire.WEBHOOK_GLOBAL_ENROLLMENT_STATUS) == wire.ENROLLMENT_INELIGIBLE
    ):
        return catalog.ENROLLMENT_INELIGIBLE
    return None


def partner_actions(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The actions Leap asks of the partner, each with only the fields the catalog names."""
    required = payload.get(wire.WEBHOOK_REQUIRED_ACTIONS) or {}
    actions = required.get(wire.WEBHOOK_PARTNER_ACTIONS) or []
    return [
        {name: action[name] for name in _ACTION_FIELDS if action.get(name) is not None} for action in actions
    ]


def enrollment_event(delivery: Delivery) -> dict[str, Any] | None:
    """The public event of an enrollment delivery (checked by ``payloads.delivery``), or None."""
    event_type = published_type(delivery)
    if event_type is None:
        return None
    payload = delivery.payload
    meter_id = payload[wire.WEBHOOK_METER_ID]
    ref_id = payload.get(wire.WEBHOOK_PARTNER_REFERENCE)
    data: dict[str, Any] = {
        "meter_id": meter_id,
        "ref_id": ref_id,
        "transmission_region": code(payload, wire.WEBHOOK_TRANSMISSION_REGION),
        "meter_type": code(payload, wire.WEBHOOK_METER_TYPE),
        "global_enrollment_status": code(payload, wire.WEBHOOK_GLOBAL_ENROLLMENT_STATUS),
        "webhook_event_id": delivery.event_id,
        "received_at": format_instant(delivery.received_at),
    }
    if event_type == catalog.ENROLLMENT_ACTIONS_REQUIRED:
        data["required_actions"] = partner_actions(payload)
    return catalog.build_event(
        event_type,
        entry_id=meter_id,
        subject=ref_id or meter_id,  # the Reference ID, as on every other event, when Leap gives it
        sequence=int(delivery.received_at.timestamp()),
        time=data["received_at"],
        data=data,
        fixed_id=catalog.webhook_event_id(delivery.event_id, event_type),
    )
