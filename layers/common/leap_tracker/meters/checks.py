"""One check of a watch against meters found, and its outcome published then saved.

Shared by every path that checks a watch: the hourly sweep (:mod:`.sweep`), a ``meter.created``
webhook (``leap_tracker.webhooks.processing``) and a watch that opens already satisfied
(:mod:`.opening`). Each goes through the same transition (:func:`leap_tracker.meters.schedule.after_check`)
and the same event builder, so a watch publishes each type under one id whoever checked it, and the
conditional save makes exactly one of them close it.

Publish, THEN save: a crash in between re-checks the watch later and publishes the same event id
again, instead of losing the event; a watch whose event SNS did not accept is not saved at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from leap_tracker.config import MeterWatchSettings
from leap_tracker.events.publishing import OutgoingMessage, to_message
from leap_tracker.meters import schedule
from leap_tracker.meters.events import watch_event
from leap_tracker.meters.model import MeterSummary, MeterWatch
from leap_tracker.meters.ports import EventPublisher, WatchWriter


class EventsNotPublished(RuntimeError):
    """SNS did not take an event: nothing of it was saved, so the message that asked for it is retried
    (the same event id goes out) and, failing that, the sweep still finds the meters."""


class Saved(StrEnum):
    SAVED = "saved"
    NOT_PUBLISHED = "not_published"  # SNS refused its event: not saved, the watch stays as it was
    CONFLICT = "conflict"  # someone else changed the watch first (a concurrent check): left to them


@dataclass(frozen=True, slots=True)
class Check:
    """A watch as read (``before``), its state after the check, and the event that check publishes."""

    before: MeterWatch
    outcome: schedule.CheckOutcome
    message: OutgoingMessage | None


def check(
    watch: MeterWatch, meters: Sequence[MeterSummary], now: datetime, settings: MeterWatchSettings
) -> Check:
    """``watch`` checked at ``now``, finding ``meters`` (maybe none)."""
    outcome = schedule.after_check(watch, [meter.meter_id for meter in meters], now, settings)
    message = None
    if outcome.publish:
        event = watch_event(outcome.publish, outcome.watch, now, settings, meters)
        message = to_message(event, watch.entry_id)
    return Check(watch, outcome, message)


def publish_then_save(
    checks: Sequence[Check], store: WatchWriter, publisher: EventPublisher
) -> list[tuple[Check, Saved]]:
    """Publish the checks' events in one call, then save each watch whose event was accepted (or
    that had none) with a conditional write; each check with what became of it, in order."""
    messages = [c.message for c in checks if c.message]
    failures = publisher.publish(messages) if messages else {}
    results: list[tuple[Check, Saved]] = []
    for c in checks:
        if c.message and c.message.event_id in failures:
            results.append((c, Saved.NOT_PUBLISHED))
        elif store.replace(c.before, c.outcome.watch):
            results.append((c, Saved.SAVED))
        else:
            results.append((c, Saved.CONFLICT))
    return results
