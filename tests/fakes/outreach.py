"""Outreach's collaborators in memory: the store, a channel and an audit topic that record what they
were given, and a service wired to them.

:class:`MemoryOutreachStore` follows the ``OutreachStore`` contract of the DynamoDB store
(tests/integration/test_outreach_store.py runs the same contract checks against both): the claim,
release and mark-sent conditions, the stamp a claim records and returns, the suppression markers.
``failing_writes`` makes its next writes fail before they change anything, as a DynamoDB outage does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from leap_tracker.adapters.outreach_store import ClaimLost
from leap_tracker.events.publishing import OutgoingMessage
from leap_tracker.leap.connect_model import validate_entry
from leap_tracker.outreach.decision import History, OutreachPolicy, Snapshot
from leap_tracker.outreach.ledger import (
    Claim,
    ClaimResult,
    LedgerStatus,
    Reservation,
    Stamp,
    Suppression,
)
from leap_tracker.outreach.messages import OutreachMessage
from leap_tracker.outreach.ports import EventTopic
from leap_tracker.outreach.service import Outreach
from leap_tracker.outreach.templates import load_templates
from tests.fakes.log_key import PSEUDONYMS

CONNECT_URL_PATTERN = "https://connect.leap.energy/?refId={ref_id}&requestedUtilities={utilities}"


class StoreUnavailable(RuntimeError):
    """An injected write failure (the table refused the write; nothing changed)."""


@dataclass
class LedgerEntry:
    """One ``SENT#<dedupe key>`` entry of a customer's state."""

    status: LedgerStatus
    stamp: Stamp
    channels: tuple[str, ...]
    lease_until: datetime | None
    delivered: frozenset[str] = frozenset()
    sent_at: datetime | None = None


@dataclass
class CustomerState:
    """The ``STATE`` item: the history fields, the in-flight slot and the ledger."""

    attempts: int = 0
    last_sent_at: datetime | None = None
    last_reason: str | None = None
    last_state: str | None = None
    state_sends: int = 0
    completed_at: datetime | None = None
    due_at: datetime | None = None
    pending_key: str | None = None
    pending_until: datetime | None = None
    ledger: dict[str, LedgerEntry] = field(default_factory=dict)


@dataclass
class MemoryOutreachStore:
    """An in-memory OutreachStore."""

    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    states: dict[str, CustomerState] = field(default_factory=dict)
    suppressions: dict[tuple[str, str], Suppression] = field(default_factory=dict)
    failing_writes: int = 0  # the next this many writes raise StoreUnavailable, changing nothing

    def put_snapshot(self, raw: dict[str, Any], sequence: int) -> Snapshot:
        """Store a connection snapshot as the poller would (the canonical entry, its hash, ``sequence``)."""
        validated = validate_entry(raw)
        snapshot = Snapshot(json.loads(validated.canonical_json), validated.content_hash, sequence)
        self.snapshots[snapshot.entry_id] = snapshot
        return snapshot

    # --- reads ----------------------------------------------------------------------------------

    def load(self, entry_id: str) -> tuple[Snapshot | None, History]:
        state = self.states.get(entry_id, CustomerState())
        history = History(
            attempts=state.attempts,
            last_sent_at=state.last_sent_at,
            last_reason=state.last_reason,
            last_state=state.last_state,
            state_sends=state.state_sends,
            completed_at=state.completed_at,
            follow_up_at=state.due_at,
        )
        return self.snapshots.get(entry_id), history

    def ledger_entry(self, entry_id: str, dedupe_key: str) -> LedgerEntry | None:
        state = self.states.get(entry_id)
        return state.ledger.get(dedupe_key) if state else None

    def suppression(self, entry_id: str, key: str) -> Suppression | None:
        return self.suppressions.get((entry_id, key))

    def due_follow_ups(self, now: datetime) -> Iterator[str]:
        due = sorted(
            (state.due_at, entry_id)
            for entry_id, state in self.states.items()
            if state.due_at is not None and state.due_at <= now
        )
        yield from (entry_id for _, entry_id in due)

    # --- the ledger -----------------------------------------------------------------------------

    def claim(
        self, reservation: Reservation, expected_attempts: int, now: datetime, lease_until: datetime
    ) -> ClaimResult:
        self._write()
        state = self.states.get(reservation.entry_id, CustomerState())
        key = reservation.dedupe_key
        existing = state.ledger.get(key)
        allowed = state.attempts == expected_attempts and state.completed_at is None
        if allowed and existing is None and self._slot_free(state, now):
            stamp = reservation.stamp(now)
            state.ledger[key] = LedgerEntry(LedgerStatus.PENDING, stamp, reservation.channels, lease_until)
            self._take_slot(reservation.entry_id, state, key, lease_until)
            return ClaimResult(Claim.NEW, stamp=stamp, channels=reservation.channels)
        if existing is None:
            return ClaimResult(Claim.CONFLICT)
        if existing.status is LedgerStatus.SENT:
            return ClaimResult(Claim.ALREADY_SENT)
        if existing.lease_until is not None and existing.lease_until > now:
            return ClaimResult(Claim.IN_FLIGHT)
        slot_ours = state.pending_key in (None, key) or self._slot_free(state, now)
        if not (allowed and slot_ours):
            return ClaimResult(Claim.CONFLICT)
        existing.lease_until = lease_until  # taken over: the first claim's stamp and channels stay
        self._take_slot(reservation.entry_id, state, key, lease_until)
        return ClaimResult(
            Claim.RESUMED, stamp=existing.stamp, channels=existing.channels, delivered=existing.delivered
        )

    def release(
        self, reservation: Reservation, delivered: frozenset[str], now: datetime, lease_until: datetime
    ) -> None:
        self._write()
        state, entry = self._owned(reservation, lease_until)
        if state is None or entry is None:
            raise ClaimLost(f"the claim {reservation.dedupe_key} is no longer ours to release")
        if delivered:  # kept: the retry resumes it and skips these channels
            entry.lease_until, entry.delivered = now, frozenset(delivered)
        else:
            del state.ledger[reservation.dedupe_key]
        state.pending_key = state.pending_until = None

    def mark_sent(
        self, reservation: Reservation, now: datetime, follow_up_at: datetime | None, lease_until: datetime
    ) -> None:
        self._write()
        state, entry = self._owned(reservation, lease_until)
        if state is None or entry is None:
            current = self.ledger_entry(reservation.entry_id, reservation.dedupe_key)
            if current is not None and current.status is LedgerStatus.SENT:
                return  # our lease ran out and the invocation that resumed it finished the same message
            raise ClaimLost(f"the claim {reservation.dedupe_key} is no longer ours to mark sent")
        entry.status, entry.sent_at, entry.lease_until = LedgerStatus.SENT, now, None
        state.attempts = reservation.attempt
        state.last_sent_at = now
        state.last_reason = reservation.reason
        state.last_state = reservation.content_hash
        state.state_sends = reservation.state_sends
        state.pending_key = state.pending_until = None
        state.due_at = follow_up_at

    # --- customer state -------------------------------------------------------------------------

    def set_follow_up(self, entry_id: str, at: datetime | None, create: bool = False) -> None:
        self._write()
        if entry_id not in self.states and not create:
            return
        self.states.setdefault(entry_id, CustomerState()).due_at = at

    def mark_completed(self, entry_id: str, ref_id: str, now: datetime) -> None:
        self._write()
        state = self.states.setdefault(entry_id, CustomerState())
        state.completed_at = state.completed_at or now
        state.due_at = None

    def record_suppression(self, entry_id: str, suppression: Suppression) -> Suppression:
        self._write()
        return self.suppressions.setdefault(
            (entry_id, suppression.key), replace(suppression, published=False)
        )

    def mark_suppression_published(self, entry_id: str, key: str) -> None:
        self._write()
        stored = self.suppressions[(entry_id, key)]  # KeyError, as the table's condition fails
        self.suppressions[(entry_id, key)] = replace(stored, published=True)

    # --- plumbing -------------------------------------------------------------------------------

    def _write(self) -> None:
        if self.failing_writes > 0:
            self.failing_writes -= 1
            raise StoreUnavailable("injected: the table refused the write")

    @staticmethod
    def _slot_free(state: CustomerState, now: datetime) -> bool:
        return state.pending_key is None or (state.pending_until is not None and state.pending_until < now)

    def _take_slot(self, entry_id: str, state: CustomerState, key: str, lease_until: datetime) -> None:
        state.pending_key, state.pending_until = key, lease_until
        self.states[entry_id] = state

    def _owned(
        self, reservation: Reservation, lease_until: datetime
    ) -> tuple[CustomerState | None, LedgerEntry | None]:
        """The state and entry, if the caller still holds the claim (slot, lease, entry PENDING)."""
        state = self.states.get(reservation.entry_id)
        if state is None or (state.pending_key, state.pending_until) != (reservation.dedupe_key, lease_until):
            return None, None
        entry = state.ledger.get(reservation.dedupe_key)
        if entry is None or entry.status is not LedgerStatus.PENDING:
            return None, None
        return state, entry


# --- channels and topics --------------------------------------------------------------------------


@dataclass
class RecordingChannel:
    """A channel that takes every message (or refuses the next ``failing`` ones)."""

    name: str = "webhook"
    delivered: list[OutreachMessage] = field(default_factory=list)
    failing: int = 0

    def deliver(self, message: OutreachMessage) -> None:
        if self.failing > 0:
            self.failing -= 1
            raise ConnectionError(f"{self.name} refused the message")
        self.delivered.append(message)


@dataclass
class RecordingSink:
    """A topic publisher (``MessageSink``) that keeps what it accepts, in order, and refuses the next
    ``refusing`` messages; ``after_publish`` runs after each accepted one (a test arms a fault there)."""

    published: list[OutgoingMessage] = field(default_factory=list)
    after_publish: Callable[[OutgoingMessage], None] | None = None
    refusing: int = 0

    def publish(self, messages: Sequence[OutgoingMessage]) -> dict[str, str]:
        refused: dict[str, str] = {}
        for message in messages:
            if self.refusing > 0:
                self.refusing -= 1
                refused[message.event_id] = "InternalError"
                continue
            self.published.append(message)
            if self.after_publish is not None:
                self.after_publish(message)
        return refused

    def of_type(self, event_type: str) -> list[OutgoingMessage]:
        return [m for m in self.published if m.attributes.get("type") == event_type]


def outreach_service(
    store: Any,
    channels: Sequence[Any],
    sink: RecordingSink,
    policy: OutreachPolicy | None = None,
    connect_url_pattern: str = CONNECT_URL_PATTERN,
) -> Outreach:
    """The outreach service on ``store``, auditing into ``sink``, with the default templates."""
    return Outreach(
        store=store,
        channels=list(channels),
        audit=EventTopic(sink),
        templates=load_templates(),
        policy=policy or OutreachPolicy(),
        connect_url_pattern=connect_url_pattern,
        pseudonyms=PSEUDONYMS,
    )
