"""The events outreach publishes, built from a decision (pure; catalog types ``outreach.*``).

- ``outreach.requested``: the message itself (subject, body, Connect URL, what it is about). It is the
  webhook's body and what the outreach topic carries, so a partner handles one shape on either channel.
- ``outreach.sent`` / ``outreach.suppressed``: audit events on the events topic.

Ids are deterministic (entry id, snapshot sequence, type, dedupe or suppression key), so a resend or a
republished audit event carries the same id and consumers deduplicate on it. Every other field is
the same too: what a retry could see differently (its clock, the attempt, the sequence, the URL) is
taken from stored state (``ledger.Stamp``, ``ledger.Suppression``), the rest from the snapshot, whose
content hash is part of the dedupe and suppression keys.
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
    """The message a SEND decision asks for, as a claim at ``time`` would stamp it."""
    variant = templates.choose(snapshot.entry_id, _required(decision.need.reason))
    stamp = ledger.Stamp(
        time, _required(decision.attempt), snapshot.sequence, retry_url(url_pattern, snapshot), variant
    )
    return stamped_message(snapshot, decision, templates, stamp)


def stamped_message(
    snapshot: Snapshot, decision: Decision, templates: TemplateSet, stamp: ledger.Stamp
) -> OutreachMessage:
    """The message a SEND decision asks for, stamped as its ledger entry recorded it (a resume's is the
    first claim's). ``reminder`` is the dedupe key's number (> 1); the subject and body are rendered
    from the snapshot, the stamp and the deployment's templates (OUTREACH_TEMPLATES_FILE: the stamp's
    variant, or the one chosen now if a redeploy removed it), and are not part of ``outreach.sent``;
    ``variant`` is the stamp's either way, as the ledger and the report have it."""
    need, reason, key = decision.need, _required(decision.need.reason), _required(decision.dedupe_key)
    url = stamp.connect_url
    values = template_values(need, snapshot.ref_id, url, stamp.attempt)
    rendered = templates.render(
        reason, values, templates.variant_for(snapshot.entry_id, reason, stamp.variant)
    )
    data = {
        **_common(snapshot, reason),
        "customer_kind": str(need.kind),
        "attempt": stamp.attempt,
        "reminder": (decision.state_sends or 1) > 1,
        "dedupe_key": key,
        "webhook_id": ledger.webhook_id(snapshot.entry_id, key),
        "connect_url": url,
        "variant": stamp.variant,
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
    event = _event(catalog.OUTREACH_REQUESTED, snapshot, stamp.time, data, key, stamp.sequence)
    return OutreachMessage.of(event, data["webhook_id"])


def sent_event(message: OutreachMessage, channels: Sequence[str], time: datetime, sequence: int) -> Event:
    """The audit of a message that went out on ``channels``. Every field is the same on a retry:
    ``time``, ``sequence``, ``attempt``, ``connect_url``, ``variant`` and ``message_id`` (from the
    sequence) come from the ledger's stamp; ``reason``, ``reminder``, ``dedupe_key`` and ``webhook_id``
    are the dedupe key; ``ref_id``, ``connection_status`` and ``transmission_region`` the snapshot,
    whose content hash is in that key; ``channels`` is ``ledger.message_channels`` (the recorded ones
    once all took it)."""
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
            "variant",
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


def suppression(snapshot: Snapshot, decision: Decision, attempts: int, time: datetime) -> ledger.Suppression:
    """What a suppression marker records of a decision made at ``time``, before its event goes out."""
    because = _required(decision.because)
    return ledger.Suppression(
        key=ledger.suppression_key(because, decision.need.reason, snapshot.content_hash),
        because=str(because),
        reason=decision.need.reason,
        content_hash=snapshot.content_hash,
        decided_at=time,
        sequence=snapshot.sequence,
        attempts=attempts,
        next_attempt_at=decision.next_attempt_at,
    )


def suppressed_event(snapshot: Snapshot, decision: Decision, attempts: int, time: datetime) -> Event:
    """The audit of a message considered and not sent, with the cause."""
    return recorded_suppression_event(snapshot, suppression(snapshot, decision, attempts, time))


def recorded_suppression_event(snapshot: Snapshot, recorded: ledger.Suppression) -> Event:
    """The audit of a suppression as its marker recorded it (a retry's is the first decision's):
    ``time``, ``sequence``, ``attempts`` and ``next_attempt_at`` are the marker's; ``suppressed_because``
    and ``reason`` the suppression key; the rest the snapshot, whose content hash is in that key."""
    data = {
        **_common(snapshot, recorded.reason),
        "suppressed_because": recorded.because,
        "attempts": recorded.attempts,
    }
    if recorded.next_attempt_at is not None:
        data["next_attempt_at"] = format_instant(recorded.next_attempt_at)
    return _event(
        catalog.OUTREACH_SUPPRESSED, snapshot, recorded.decided_at, data, recorded.key, recorded.sequence
    )


def _common(snapshot: Snapshot, reason: str | None) -> dict[str, Any]:
    entry = snapshot.entry
    return {
        "entry_id": snapshot.entry_id,
        "ref_id": snapshot.ref_id,
        "reason": reason,
        "connection_status": entry.get(wire.ENTRY_CONNECTION_STATUS),
        "transmission_region": entry.get(wire.ENTRY_TRANSMISSION_REGION),
    }


def _event(
    event_type: str, snapshot: Snapshot, time: datetime, data: dict[str, Any], key: str, sequence: int
) -> Event:
    return catalog.build_event(
        event_type,
        entry_id=snapshot.entry_id,
        subject=snapshot.ref_id,
        sequence=sequence,
        time=format_instant(time),
        data=data,
        discriminator=key,
    )


def _required[T](value: T | None) -> T:
    if value is None:
        raise ValueError("a SEND decision always carries its reason, key and attempt")
    return value
