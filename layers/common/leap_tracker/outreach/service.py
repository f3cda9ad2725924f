"""Outreach, end to end for one customer: re-read, decide, then send exactly once or suppress.

Two entry points share :meth:`Outreach.act`:

- :meth:`Outreach.handle_event`: a change event from the queue. It only names the customer; the
  decision is made on the CURRENT snapshot, so a late, duplicated or replayed event cannot cause a
  stale or second message.
- :meth:`Outreach.run_follow_ups`: the hourly sweep of customers whose follow-up is due (a customer who
  stays stuck produces no new events, yet gets the next message after the cooldown).

Sending (see ``ledger`` for the items): claim the ledger entry and the customer's in-flight slot in one
conditional write, deliver on each channel, publish ``outreach.sent``, then mark SENT (attempts+1,
next follow-up) in one conditional write. A failed delivery releases the claim and raises, so the queue
retries. A claim found PENDING after its holder died is resumed with the same ``webhook-id`` and event
id: delivery is at least once, and exactly once per id for a receiver that deduplicates on it.

A retry republishes audit events byte for byte: ``outreach.sent`` is stamped from the ledger entry the
claim wrote, ``outreach.suppressed`` from the marker recorded before it is published.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from leap_tracker import table
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import identifier_problem
from leap_tracker.outreach import ledger, messages
from leap_tracker.outreach.decision import (
    Action,
    Because,
    Decision,
    History,
    OutreachPolicy,
    Snapshot,
    Trigger,
    decide,
    without_channel,
)
from leap_tracker.outreach.ledger import Claim, Reservation
from leap_tracker.outreach.ports import Channel, EventTopic, OutreachStore
from leap_tracker.outreach.templates import TemplateSet
from leap_tracker.privacy import Pseudonyms, excerpt

logger = Logger(child=True)


class InvalidEvent(ValueError):
    """A queue message that is not a change event of a connection (goes to the dead-letter queue)."""


class RetryLater(RuntimeError):
    """Someone else is sending to this customer right now, or its state moved under us."""


class DeliveryFailed(RuntimeError):
    """A channel did not take the message; the claim was released so a retry starts over."""


@dataclass(frozen=True, slots=True)
class OutreachResult:
    action: Action
    entry_id: str
    reason: str | None = None
    because: Because | None = None
    until: datetime | None = None  # DEFER: when to look again
    attempt: int | None = None  # SEND


@dataclass(slots=True)
class FollowUpSummary:
    due: int = 0
    outcomes: list[OutreachResult] = field(default_factory=list)
    failed: int = 0
    delivery_failures: int = 0  # of the failed, those a channel refused (DeliveryFailed)
    stopped_early: bool = False  # out of time: the rest stays due for the next sweep


def entry_id_of(event: Any) -> str:
    """The entry a change event is about (``data.connection.id``), checked before it reaches a key:
    a string within :data:`leap_tracker.table.MAX_ENTRY_ID_BYTES`. The message of an
    :class:`InvalidEvent` says what is wrong, never the id."""
    if not isinstance(event, Mapping):
        raise InvalidEvent(f"the message is {type(event).__name__}, not a CloudEvent object")
    data = event.get("data")
    connection = data.get("connection") if isinstance(data, Mapping) else None
    if not isinstance(connection, Mapping):
        raise InvalidEvent(f"not a connection change event (type {excerpt(event.get('type'))})")
    entry_id = connection.get(wire.ENTRY_ID)
    if not isinstance(entry_id, str) or not entry_id:
        raise InvalidEvent("data.connection.id is not a non-empty string")
    problem = identifier_problem(entry_id, table.MAX_ENTRY_ID_BYTES)
    if problem:
        raise InvalidEvent(f"data.connection.id {problem}")
    return entry_id


@dataclass(slots=True)
class Outreach:
    store: OutreachStore
    channels: Sequence[Channel]
    audit: EventTopic  # the events topic: outreach.sent / outreach.suppressed
    templates: TemplateSet
    policy: OutreachPolicy
    connect_url_pattern: str
    pseudonyms: Pseudonyms  # what the log lines and error messages show of a customer

    def handle_event(self, event: Mapping[str, Any], now: datetime, lease_until: datetime) -> OutreachResult:
        return self.act(entry_id_of(event), Trigger.EVENT, now, lease_until)

    def hand_over(self, entry_id: str, until: datetime) -> None:
        """Leave a deferred event's customer to the follow-up sweep at ``until`` (see ``deferral``)."""
        self.store.set_follow_up(entry_id, until, create=True)

    def run_follow_ups(
        self, now: datetime, lease_until: datetime, has_time: Callable[[], bool]
    ) -> FollowUpSummary:
        """Re-decide every due customer; one customer's failure never stops the others."""
        summary = FollowUpSummary()
        for entry_id in self.store.due_follow_ups(now):
            if not has_time():
                summary.stopped_early = True
                break
            summary.due += 1
            try:
                summary.outcomes.append(self.act(entry_id, Trigger.FOLLOW_UP, now, lease_until))
            except Exception as exc:  # stays due: the next sweep tries again
                # No traceback: a cause from below (a channel, the table) may quote the customer.
                logger.error(
                    "follow-up failed; the customer stays due",
                    extra={
                        "entry": self.pseudonyms.entry(entry_id),
                        "exception_type": type(exc).__name__,
                        "reason": self.pseudonyms.redact(str(exc), entry_ids=[entry_id]),
                    },
                )
                summary.failed += 1
                if isinstance(exc, DeliveryFailed):
                    summary.delivery_failures += 1
        return summary

    def act(self, entry_id: str, trigger: Trigger, now: datetime, lease_until: datetime) -> OutreachResult:
        snapshot, history = self.store.load(entry_id)
        if snapshot is None:
            if trigger is Trigger.FOLLOW_UP:
                self.store.set_follow_up(entry_id, None)
            return OutreachResult(Action.SUPPRESS, entry_id, because=Because.SNAPSHOT_MISSING)
        decision = decide(snapshot, history, self.policy, now, trigger)
        if decision.action is Action.SEND:
            if not self.channels:
                return self._suppress(snapshot, history, without_channel(decision, now), now)
            return self._send(snapshot, history, decision, now, lease_until)
        if decision.action is Action.DEFER:
            self._apply_follow_up(entry_id, decision)
            return OutreachResult(Action.DEFER, entry_id, decision.need.reason, until=decision.until)
        return self._suppress(snapshot, history, decision, now)

    # --- suppress -------------------------------------------------------------------------------

    def _suppress(
        self, snapshot: Snapshot, history: History, decision: Decision, now: datetime
    ) -> OutreachResult:
        entry_id, because = snapshot.entry_id, decision.because
        if decision.mark_completed:
            self.store.mark_completed(entry_id, snapshot.ref_id, now)
        else:
            self._apply_follow_up(entry_id, decision)
        if because is not None and because is not Because.ALREADY_SENT:  # duplicates are not decisions
            self._audit_suppression(snapshot, decision, history, now)
        return OutreachResult(Action.SUPPRESS, entry_id, decision.need.reason, because=because)

    def _audit_suppression(
        self, snapshot: Snapshot, decision: Decision, history: History, now: datetime
    ) -> None:
        """Record the decision, publish what is recorded, mark it published: a failure after the record
        republishes the first decision's event (same id, time, fields), never one of its own."""
        key = ledger.suppression_key(str(decision.because), decision.need.reason, snapshot.content_hash)
        recorded = self.store.suppression(snapshot.entry_id, key)
        if recorded is None:
            decided = messages.suppression(snapshot, decision, history.attempts, now)
            recorded = self.store.record_suppression(snapshot.entry_id, decided)
        if not recorded.published:
            self.audit.publish([messages.recorded_suppression_event(snapshot, recorded)])
            self.store.mark_suppression_published(snapshot.entry_id, key)

    def _apply_follow_up(self, entry_id: str, decision: Decision) -> None:
        if decision.follow_up is not None:
            self.store.set_follow_up(entry_id, decision.follow_up.at, create=decision.follow_up.create)

    # --- send -----------------------------------------------------------------------------------

    def _send(
        self, snapshot: Snapshot, history: History, decision: Decision, now: datetime, lease_until: datetime
    ) -> OutreachResult:
        configured = tuple(c.name for c in self.channels)
        url = messages.retry_url(self.connect_url_pattern, snapshot)
        variant = self.templates.choose(snapshot.entry_id, str(decision.need.reason))
        reservation = _reservation(snapshot, decision, configured, url, variant)
        claimed = self.store.claim(reservation, history.attempts, now, lease_until)
        if claimed.claim is Claim.ALREADY_SENT:
            return OutreachResult(
                Action.SUPPRESS, snapshot.entry_id, reservation.reason, because=Because.ALREADY_SENT
            )
        if claimed.claim in (Claim.IN_FLIGHT, Claim.CONFLICT):
            raise RetryLater(f"{self.pseudonyms.entry(snapshot.entry_id)}: {claimed.claim}")
        if claimed.stamp is None:
            raise TypeError(f"the store's {claimed.claim} claim carries no stamp")

        # The message and its audit as first claimed: a resume rebuilds both from the ledger entry.
        stamp = claimed.stamp
        message = messages.stamped_message(snapshot, decision, self.templates, stamp)
        channels = ledger.message_channels(claimed.channels, claimed.delivered, configured)
        delivered = set(claimed.delivered)
        try:
            for channel in self.channels:
                if channel.name in channels and channel.name not in delivered:
                    try:
                        channel.deliver(message)
                    except Exception as exc:
                        who = self.pseudonyms.entry(snapshot.entry_id)
                        why = self.pseudonyms.redact(
                            str(exc), entry_ids=[snapshot.entry_id], ref_ids=[snapshot.ref_id]
                        )
                        raise DeliveryFailed(f"{who}: channel {channel.name} failed: {why}") from exc
                    delivered.add(channel.name)
            self.audit.publish([messages.sent_event(message, channels, stamp.time, stamp.sequence)])
            follow_up_at = decision.follow_up.at if decision.follow_up else None
            # The counter is the decision's (messages sent so far + 1), even if a message sent since the
            # first claim makes it differ from the stamped attempt.
            self.store.mark_sent(reservation, now, follow_up_at, lease_until)
        except Exception:
            self._release_quietly(reservation, frozenset(delivered), now, lease_until)
            raise
        return OutreachResult(Action.SEND, snapshot.entry_id, reservation.reason, attempt=stamp.attempt)

    def _release_quietly(
        self, reservation: Reservation, delivered: frozenset[str], now: datetime, lease_until: datetime
    ) -> None:
        try:
            self.store.release(reservation, delivered, now, lease_until)
        except Exception as exc:  # the lease expires on its own; the original error is the one to report
            logger.warning(
                "could not release the claim",
                extra={
                    "entry": self.pseudonyms.entry(reservation.entry_id),
                    "exception_type": type(exc).__name__,
                    "reason": self.pseudonyms.redact(str(exc), entry_ids=[reservation.entry_id]),
                },
            )


def _reservation(
    snapshot: Snapshot, decision: Decision, channels: tuple[str, ...], connect_url: str, variant: str
) -> Reservation:
    return Reservation(
        entry_id=snapshot.entry_id,
        ref_id=snapshot.ref_id,
        dedupe_key=str(decision.dedupe_key),
        reason=str(decision.need.reason),
        content_hash=snapshot.content_hash,
        sequence=snapshot.sequence,
        attempt=int(decision.attempt or 1),
        state_sends=int(decision.state_sends or 1),
        channels=channels,
        connect_url=connect_url,
        variant=variant,
    )
