"""The events outreach publishes, built from a decision (pure; catalog types ``outreach.*``).

- ``outreach.requested``: the message itself (subject, body, Connect URL, what it is about). It is the
  webhook's body and what the outreach topic carries, so a partner handles one shape on either channel.
- ``outreach.sent`` / ``outreach.suppressed``: audit events on the events topic.

Ids are deterministic (entry id, snapshot sequence, type, dedupe or suppression key), so a resend or a
republished audit event carries the same id and consumers deduplicate on it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leap_tracker.events import catalog
from leap_tracker.leap import wire
from leap_tracker.outreach import ledger
from leap_tracker.outreach.decision import Decision, Snapshot, required_utilities, utility_names
from leap_tracker.outreach.templates import TemplateSet, connect_url, template_values
from leap_tracker.timeutil import format_instant

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutreachMessage:
    """One message ready for the channels: the ``outreach.requested`` event and its exact JSON body."""

    event: Event
    webhook_id: str
    body: str  # the bytes the webhook signs and sends

    @classmethod
    def of(cls, event: Event, webhook_id: str) -> OutreachMessage:
        return cls(event, webhook_id, json.dumps(event, separators=(",", ":"), ensure_ascii=False))


def retry_url(pattern: str, snapshot: Snapshot) -> str:
    """The Connect URL again, for the same Reference ID and the same requested utilities."""
    return connect_url(pattern, snapshot.ref_id, utility_names(required_utilities(snapshot.entry)))


def requested_message(
    snapshot: Snapshot,
    decision: Decision,
    templates: TemplateSet,
    url_pattern: str,
    time: datetime,
) -> OutreachMessage:
    """The message a SEND decision asks for, timed ``time`` (the reservation's, stable on resends)."""
    need, reason, key = decision.need, _required(decision.need.reason), _required(decision.dedupe_key)
    attempt = _required(decision.attempt)
    url = retry_url(url_pattern, snapshot)
    rendered = templates.render(reason, template_values(need, snapshot.ref_id, url, attempt))
    data = {
        **_common(snapshot, reason),
        "customer_kind": str(need.kind),
        "attempt": attempt,
        "reminder": (decision.state_sends or 1) > 1,
        "dedupe_key": key,
        "webhook_id": ledger.webhook_id(snapshot.entry_id, key),
        "connect_url": url,
        "subject": rendered.subject,
        "body": rendered.body,
        "pending_utilities": utility_names(need.pending_utilities),
        "pending_agreements": list(need.pending_agreements),
        "connection": dict(snapshot.entry),
    }
    if need.utility is not None:
        data["utility"] = dict(need.utility)
    if need.other_utility is not None:
        data["other_utility"] = dict(need.other_utility)
    event = _event(catalog.OUTREACH_REQUESTED, snapshot, time, data, key)
    return OutreachMessage.of(event, data["webhook_id"])


def sent_event(message: OutreachMessage, channels: Sequence[str], time: datetime, sequence: int) -> Event:
    """The audit of a message that went out on ``channels``."""
    requested = message.event["data"]
    data = {
        key: requested[key]
        for key in (
            "entry_id",
            "ref_id",
            "reason",
            "connection_status",
            "transmission_region",
            "attempt",
            "reminder",
            "dedupe_key",
            "webhook_id",
            "connect_url",
        )
    }
    data["channels"] = list(channels)
    data["message_id"] = message.event["id"]
    return catalog.build_event(
        catalog.OUTREACH_SENT,
        entry_id=requested["entry_id"],
        subject=requested["ref_id"],
        sequence=sequence,
        time=format_instant(time),
        data=data,
        discriminator=requested["dedupe_key"],
    )


def suppressed_event(snapshot: Snapshot, decision: Decision, attempts: int, time: datetime) -> Event:
    """The audit of a message considered and not sent, with the cause."""
    because = _required(decision.because)
    data = {
        **_common(snapshot, decision.need.reason),
        "suppressed_because": str(because),
        "attempts": attempts,
    }
    if decision.next_attempt_at is not None:
        data["next_attempt_at"] = format_instant(decision.next_attempt_at)
    key = ledger.suppression_key(because, decision.need.reason, snapshot.content_hash)
    return _event(catalog.OUTREACH_SUPPRESSED, snapshot, time, data, key)


def _common(snapshot: Snapshot, reason: str | None) -> dict[str, Any]:
    entry = snapshot.entry
    return {
        "entry_id": snapshot.entry_id,
        "ref_id": snapshot.ref_id,
        "reason": reason,
        "connection_status": entry.get(wire.ENTRY_CONNECTION_STATUS),
        "transmission_region": entry.get(wire.ENTRY_TRANSMISSION_REGION),
    }


def _event(event_type: str, snapshot: Snapshot, time: datetime, data: dict[str, Any], key: str) -> Event:
    return catalog.build_event(
        event_type,
        entry_id=snapshot.entry_id,
        subject=snapshot.ref_id,
        sequence=snapshot.sequence,
        time=format_instant(time),
        data=data,
        discriminator=key,
    )


def _required[T](value: T | None) -> T:
    if value is None:
        raise ValueError("a SEND decision always carries its reason, key and attempt")
    return value
