"""Exactly-once bookkeeping: the keys, ids and item formats of the outreach ledger (pure).

Under ``pk = OUTREACH#<entry id>`` (keys in ``leap_tracker.table``):

- ``sk = STATE``: the customer's outreach state (:class:`StateAttr`): attempts, last message, the
  in-flight slot, completion, and while a follow-up is possible ``watch_due_bucket =
  OUTREACH_FOLLOW_UP`` / ``due_at`` (the table's sparse ``due-index`` lists due customers in order).
  It also holds the customer's LEDGER: one map attribute ``SENT#<dedupe key>`` per message
  (:class:`SentAttr`), added conditionally (absent) as PENDING before sending and marked SENT after,
  never deleted once anything was delivered. The same dedupe key can therefore never be sent twice,
  whatever the redelivery, retry or replay. Keeping the ledger in the state item makes every step
  one atomic single-item conditional write (no transaction), and its size stays bounded: at most
  ``OUTREACH_MAX_ATTEMPTS`` entries are ever SENT.
- ``sk = SUPPRESSED#<suppression key>``: one suppression decision (:class:`Suppression`), recorded
  conditionally BEFORE its ``outreach.suppressed`` is published and marked PUBLISHED after, so
  redeliveries do not flood the topic, and a retry publishes the first decision's event, not its own.

Audit events are stamped from this stored state, never from a retry's clock or decision: the ledger
entry records a message's :class:`Stamp` when it is claimed, the marker a suppression's fields before
they are published. So a retry republishes them byte for byte (docs/events.md).

A dedupe key is ``<reason>#<content hash>#<n>``: the reason, the stored snapshot's content hash (the
entry state) and the message's number for that (reason, state): 1 for the message a change event
triggers, 2+ for reminders the follow-up sweep sends after the cooldown while the customer stays stuck.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

# Fixed namespace: the webhook-id of a message is the same on every resend, so receivers deduplicate.
WEBHOOK_ID_NAMESPACE = uuid.UUID("0b6f5e53-64d3-5c1e-a9a4-3f6e2b7d9c10")
_SEPARATOR = "#"
LEDGER_PREFIX = "SENT#"
SINGLE_VARIANT = "a"  # the variant name of a reason with one template (outreach.templates)


def dedupe_key(reason: str, content_hash: str, state_sends: int) -> str:
    """The identity of one message: (reason, entry state, number of the message for that state)."""
    return _SEPARATOR.join((reason, content_hash, str(state_sends)))


def webhook_id(entry_id: str, dedupe_key: str) -> str:
    """The Standard Webhooks ``webhook-id`` of a message: derived, so a resend reuses it."""
    return "msg_" + uuid.uuid5(WEBHOOK_ID_NAMESPACE, f"{entry_id}\x1f{dedupe_key}").hex


def ledger_attribute(dedupe_key: str) -> str:
    """The state item's attribute holding one message's ledger entry."""
    return LEDGER_PREFIX + dedupe_key


def suppression_key(because: str, reason: str | None, content_hash: str) -> str:
    """One ``outreach.suppressed`` audit per (cause, reason, entry state)."""
    return _SEPARATOR.join((because, reason or "-", content_hash))


class LedgerStatus(StrEnum):
    PENDING = "PENDING"  # reserved: being sent now, or a send that crashed/failed part-way
    SENT = "SENT"


class StateAttr(StrEnum):
    """Attributes of the ``STATE`` item (plus table.DUE_BUCKET_ATTRIBUTE / table.DUE_AT_ATTRIBUTE)."""

    ENTRY_ID = "entry_id"
    REF_ID = "ref_id"
    ATTEMPTS = "attempts"  # N: messages sent to this customer; conditional writes compare it
    LAST_SENT_AT = "last_sent_at"
    LAST_REASON = "last_reason"
    LAST_STATE = "last_state"  # content hash of the snapshot the last message was about
    STATE_SENDS = "state_sends"  # N: messages sent for (last_reason, last_state)
    LAST_DEDUPE_KEY = "last_dedupe_key"
    PENDING_KEY = "pending_key"  # the in-flight slot: the dedupe key being sent now (one at a time)
    PENDING_UNTIL = "pending_until"  # the slot's lease: past it, its holder is gone
    COMPLETED_AT = "completed_at"  # set once: nothing is sent after it
    UPDATED_AT = "updated_at"


class SentAttr(StrEnum):
    """Fields of a ``SENT#<dedupe key>`` ledger entry (a map attribute of the state item)."""

    REASON = "reason"
    CONTENT_HASH = "content_hash"
    SEQUENCE = "sequence"  # N: the snapshot's sequence
    ATTEMPT = "attempt"  # N
    WEBHOOK_ID = "webhook_id"
    CHANNELS = "channels"  # L of S: the channels configured when it was reserved
    STATUS = "status"  # LedgerStatus
    RESERVED_AT = "reserved_at"  # the message's time and its audit's (the Stamp)
    CONNECT_URL = "connect_url"  # as rendered at the claim (absent from entries claimed before it was kept)
    VARIANT = "variant"  # the template variant chosen at the claim (absent from entries claimed before)
    LEASE_UNTIL = "lease_until"
    DELIVERED = "delivered"  # SS: channels that already took the message (a retry skips them)
    SENT_AT = "sent_at"


class SuppressedAttr(StrEnum):
    """Attributes of a ``SUPPRESSED#<key>`` marker: the decision its ``outreach.suppressed`` carries."""

    ENTRY_ID = "entry_id"
    BECAUSE = "because"
    REASON = "reason"
    CONTENT_HASH = "content_hash"
    RECORDED_AT = "recorded_at"  # when it was decided: the event's time
    SEQUENCE = "sequence"  # N: the snapshot's
    ATTEMPTS = "attempts"  # N: messages sent before it
    NEXT_ATTEMPT_AT = "next_attempt_at"  # cooldown only
    STATUS = "status"  # SuppressionStatus; absent on markers written after publishing (older code)


class SuppressionStatus(StrEnum):
    PENDING = "PENDING"  # decided and recorded; its event may not be out yet
    PUBLISHED = "PUBLISHED"


STATE_ITEM_TYPE = "outreach_state"
SUPPRESSED_ITEM_TYPE = "outreach_suppressed"


@dataclass(frozen=True, slots=True)
class Reservation:
    """A message about to be sent: what the ledger entry records."""

    entry_id: str
    ref_id: str
    dedupe_key: str
    reason: str
    content_hash: str
    sequence: int
    attempt: int
    state_sends: int
    channels: tuple[str, ...]
    connect_url: str
    variant: str = SINGLE_VARIANT  # the template variant chosen for this customer and reason

    @property
    def webhook_id(self) -> str:
        return webhook_id(self.entry_id, self.dedupe_key)

    def stamp(self, reserved_at: datetime) -> Stamp:
        """What a NEW claim of this reservation at ``reserved_at`` records."""
        return Stamp(reserved_at, self.attempt, self.sequence, self.connect_url, self.variant)


@dataclass(frozen=True, slots=True)
class Stamp:
    """What a message and its ``outreach.sent`` are stamped with: recorded in the ledger entry when the
    message is first claimed, and read back by every resume. A retry's decision could differ (another
    message sent meanwhile renumbers it; an entry changed and changed back has the same content hash
    and a later sequence; a redeploy may change the URL pattern or add a template variant), so a resend
    and a republished audit take these from the ledger, never from the retry."""

    time: datetime  # the claim's: the message's and its audit's time
    attempt: int  # the message's number when it was claimed (the attempts counter is the decision's)
    sequence: int  # the snapshot's then: part of both event ids
    connect_url: str
    variant: str = SINGLE_VARIANT  # the template variant it is rendered from (the report compares them)


class Claim(StrEnum):
    NEW = "new"  # reserved now: send
    RESUMED = "resumed"  # a PENDING entry whose holder died or failed part-way: send what is missing
    ALREADY_SENT = "already_sent"  # this message went out already: nothing to do
    IN_FLIGHT = "in_flight"  # another invocation is sending it right now: retry later
    CONFLICT = "conflict"  # the customer changed under us (a message went or one is in flight)


@dataclass(frozen=True, slots=True)
class ClaimResult:
    claim: Claim
    stamp: Stamp | None = None  # NEW/RESUMED: as the ledger entry recorded it at the first claim
    channels: tuple[str, ...] = ()  # NEW/RESUMED: the channels recorded at the first claim
    delivered: frozenset[str] = frozenset()  # RESUMED: channels that took it already (skipped)


def message_channels(
    recorded: Sequence[str], delivered: frozenset[str], configured: Sequence[str]
) -> tuple[str, ...]:
    """The channels a claimed message goes to, which its ``outreach.sent`` lists.

    The recorded ones are the channels configured at the first claim, so under one configuration
    this is always the configured list. A message every recorded channel took is complete: nothing
    more is delivered and the audit names those, as its first publication did, even if a redeploy
    changed OUTREACH_CHANNELS since. An incomplete one is finished on the channels configured now,
    also naming those no longer configured that took it."""
    if recorded and set(recorded) <= delivered:
        return tuple(recorded)
    return (*configured, *(name for name in recorded if name in delivered and name not in configured))


@dataclass(frozen=True, slots=True)
class Suppression:
    """An ``outreach.suppressed`` decision as its marker records it, before the event is published:
    a retry publishes the event from this record (the first decision's time, attempts, next attempt and
    sequence), so a republished one is identical. The other fields of the event come from the
    snapshot, whose content hash is part of ``key``."""

    key: str  # suppression_key(because, reason, content_hash)
    because: str
    reason: str | None
    content_hash: str
    decided_at: datetime
    sequence: int
    attempts: int
    next_attempt_at: datetime | None = None
    published: bool = False
