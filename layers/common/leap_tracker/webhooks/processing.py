"""Processing one delivery of WebhookQueue: dedupe on Leap's webhook_event_id, then act by its type.

- ``meter.created``: trust, then verify. ONE Meters search for its Reference ID must list the meter;
  then the meters found are remembered (so a completion not yet seen opens its watch satisfied,
  ``meters.opening``) and every open watch of that Reference ID they satisfy is closed with
  ``meter.appeared``, through the sweep's own check (``meters.checks``). Not listed yet (Leap's Meters
  API may lag its own webhook): delivered again later, a bounded number of times
  (:func:`confirm_retry_seconds`), then acknowledged and counted; the sweep stays the reconciliation.
- ``connect_session.*``: one targeted poll request (``PollRequests``); the poll reads Leap's current
  state, so an old or repeated webhook only asks for a read.
- enrollment events: published when a partner can act on them (``webhooks.enrollment``), kept either way.
- an unknown type: kept and counted.

A delivery processed to its end is recorded (``ProcessedWebhooks``); a later copy of it changes
nothing. The record is written LAST: a crash before it repeats work that is safe to repeat (watch
transitions are conditional, event ids deterministic, poll requests debounced), never loses it.

Exactly one ``meter.appeared`` per watch: only a conditional transition of an OPEN watch publishes it,
whoever checks (sweep, webhook, opening), under the watch's one id for that type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from leap_tracker.config import MeterWatchSettings, WebhookSettings
from leap_tracker.events.publishing import to_message
from leap_tracker.leap import wire
from leap_tracker.leap.api import MeterSource
from leap_tracker.meters.checks import EventsNotPublished, Saved, check, publish_then_save
from leap_tracker.meters.matching import meters_of_reference, since_completion
from leap_tracker.meters.model import MeterSummary
from leap_tracker.meters.ports import EventPublisher, RememberedMeters
from leap_tracker.outreach.deferral import MAX_VISIBILITY_SECONDS
from leap_tracker.webhooks import payloads
from leap_tracker.webhooks.enrollment import ENROLLMENT_TYPES, enrollment_event
from leap_tracker.webhooks.payloads import Delivery
from leap_tracker.webhooks.ports import PollRequests, ProcessedWebhook, ProcessedWebhooks, WatchesOfReference

CONNECT_SESSION_TYPES = frozenset({wire.WEBHOOK_CONNECT_SESSION_UPDATED, wire.WEBHOOK_AUTHORIZATION_UPDATED})
# A watch another check changed while this one closed it is read again and tried once more.
_CLOSE_ATTEMPTS = 2


class Result(StrEnum):
    DUPLICATE = "duplicate"  # processed before: nothing done
    METER_APPEARED = "meter_appeared"  # confirmed; meter.appeared published, its open watch(es) closed
    METER_REMEMBERED = "meter_remembered"  # confirmed; no open watch takes it (yet): remembered
    METER_DEFERRED = "meter_deferred"  # not on the Meters API yet: delivered again later
    METER_UNCONFIRMED = "meter_unconfirmed"  # still not there after the last try: left to the sweep
    METER_WITHOUT_REFERENCE = "meter_without_reference"  # no partner_reference: nothing to look for
    POLL_REQUESTED = "poll_requested"
    ENROLLMENT_PUBLISHED = "enrollment_published"
    KEPT = "kept"  # a known type with nothing to act on
    UNKNOWN_TYPE = "unknown_type"  # a type this version does not know: kept


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    ref_id: str | None = None  # whom it was about (the handler logs its pseudonym)
    retry_after_seconds: int | None = None  # METER_DEFERRED: when to deliver it again
    appeared: int = 0  # watches closed with meter.appeared
    meter_searches: int = 0
    malformed_meters: int = 0
    conflicts: int = 0  # watches another check changed first (read again)


class WatchesBusy(RuntimeError):
    """A watch kept changing under this check: the delivery is retried (the transitions are conditional)."""


@dataclass(slots=True)
class WebhookProcessor:
    ledger: ProcessedWebhooks
    watches: WatchesOfReference
    remembered: RememberedMeters
    meters: MeterSource
    publisher: EventPublisher
    poll_requests: PollRequests
    settings: WebhookSettings = field(default_factory=WebhookSettings)
    meter_settings: MeterWatchSettings = field(default_factory=MeterWatchSettings)

    def process(self, delivery: Delivery, now: datetime, receive_count: int) -> Outcome:
        """Process a delivery received ``receive_count`` times (SQS's count, this one included)."""
        if self.ledger.get(delivery.event_id) is not None:
            return Outcome(Result.DUPLICATE, ref_id=_reference(delivery))
        outcome = self._act(delivery, now, receive_count)
        if outcome.result is not Result.METER_DEFERRED:
            self.ledger.record(processed_record(delivery, outcome.result, now, self.settings))
        return outcome

    def _act(self, delivery: Delivery, now: datetime, receive_count: int) -> Outcome:
        if delivery.event_type == wire.WEBHOOK_METER_CREATED:
            return self._meter_created(delivery, now, receive_count)
        if delivery.event_type in CONNECT_SESSION_TYPES:
            ref_id = payloads.reference(delivery.payload)
            self.poll_requests.request(ref_id, delivery.received_at)
            return Outcome(Result.POLL_REQUESTED, ref_id=ref_id)
        if delivery.event_type in ENROLLMENT_TYPES:
            return self._enrollment(delivery)
        return Outcome(Result.UNKNOWN_TYPE)

    def _meter_created(self, delivery: Delivery, now: datetime, receive_count: int) -> Outcome:
        created = payloads.meter_created(delivery.payload)
        if created.ref_id is None:
            return Outcome(Result.METER_WITHOUT_REFERENCE)
        ref_id = created.ref_id  # the receiver checked it is one the Meters search takes
        found = meters_of_reference(self.meters.search_by_connection_references([ref_id]), ref_id)
        searched = {"ref_id": ref_id, "meter_searches": 1, "malformed_meters": found.malformed}
        if not confirmed(created.meter_id, found.meters):
            wait = confirm_retry_seconds(receive_count, self.settings)
            if wait is None:
                return Outcome(Result.METER_UNCONFIRMED, **searched)
            return Outcome(Result.METER_DEFERRED, retry_after_seconds=wait, **searched)
        # Remembered FIRST: a completion opening its watch meanwhile then finds them (meters.opening).
        self.remembered.remember(
            ref_id, found.meters, now, now + timedelta(days=self.settings.retention_days)
        )
        appeared, conflicts = self._close_watches(ref_id, found.meters, now)
        result = Result.METER_APPEARED if appeared else Result.METER_REMEMBERED
        return Outcome(result, appeared=appeared, conflicts=conflicts, **searched)

    def _close_watches(self, ref_id: str, meters: Sequence[MeterSummary], now: datetime) -> tuple[int, int]:
        """Close each open watch of ``ref_id`` these meters satisfy: (closed, conflicts met)."""
        pending = self.watches.open_watches_of_ref(ref_id)
        closed = conflicts = 0
        for _ in range(_CLOSE_ATTEMPTS):
            checks = [
                check(w, taken, now, self.meter_settings)
                for w in pending
                if (taken := since_completion(meters, w))
            ]
            results = publish_then_save(checks, self.watches, self.publisher)
            if any(saved is Saved.NOT_PUBLISHED for _, saved in results):
                raise EventsNotPublished("SNS did not take a meter.appeared; the delivery is retried")
            closed += sum(1 for _, saved in results if saved is Saved.SAVED)
            raced = [done.before.entry_id for done, saved in results if saved is Saved.CONFLICT]
            conflicts += len(raced)
            pending = [w for w in map(self.watches.get, raced) if w is not None and w.is_open]
            if not pending:
                return closed, conflicts
        raise WatchesBusy(f"{len(pending)} watch(es) changed under every attempt to close them")

    def _enrollment(self, delivery: Delivery) -> Outcome:
        ref_id = _reference(delivery)
        event = enrollment_event(delivery)
        if event is None:
            return Outcome(Result.KEPT, ref_id=ref_id)
        message = to_message(event, event["data"]["meter_id"])  # the FIFO group: the meter
        if self.publisher.publish([message]):
            raise EventsNotPublished(f"SNS did not take the {event['type']} event; the delivery is retried")
        return Outcome(Result.ENROLLMENT_PUBLISHED, ref_id=ref_id)


def confirmed(meter_id: str, meters: Sequence[MeterSummary]) -> bool:
    """Whether the Meters search lists the meter the webhook announced."""
    return any(meter.meter_id == meter_id for meter in meters)


def confirm_retry_seconds(receive_count: int, settings: WebhookSettings) -> int | None:
    """After the ``receive_count``-th receive of an unconfirmed meter.created: how long until it is
    delivered again (meter_confirm_retry_seconds, doubling each time, at most SQS's 12 hours), or None
    when that was the last of ``meter_confirm_attempts``."""
    if receive_count >= settings.meter_confirm_attempts:
        return None
    doublings = max(receive_count - 1, 0)
    return min(MAX_VISIBILITY_SECONDS, settings.meter_confirm_retry_seconds * 2**doublings)


def keeps_body(event_type: str) -> bool:
    """Whether a processed delivery's record keeps its body: types not understood (yet), so nothing
    is lost, and enrollment events, which the partner may want in full later."""
    return event_type not in wire.WEBHOOK_EVENT_TYPES or event_type in ENROLLMENT_TYPES


def processed_record(
    delivery: Delivery, result: Result, now: datetime, settings: WebhookSettings
) -> ProcessedWebhook:
    return ProcessedWebhook(
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        received_at=delivery.received_at,
        processed_at=now,
        outcome=result.value,
        expires_at=now + timedelta(days=settings.retention_days),
        body=delivery.body if keeps_body(delivery.event_type) else None,
    )


def _reference(delivery: Delivery) -> str | None:
    value = delivery.payload.get(wire.WEBHOOK_PARTNER_REFERENCE) if delivery.known else None
    return value if isinstance(value, str) else None
