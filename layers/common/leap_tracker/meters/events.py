"""The ``meter.*`` CloudEvents a check publishes (types and schemas live in the catalog)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from leap_tracker.config import MeterWatchSettings
from leap_tracker.events import catalog
from leap_tracker.meters import schedule
from leap_tracker.meters.model import MeterSummary, MeterWatch
from leap_tracker.timeutil import format_instant

# With the entry id and the completion's sequence, names the watch in event ids: one watch publishes
# each type at most once, so a re-published event (a retried sweep) gets the id it had the first time.
EVENT_DISCRIMINATOR = "meter-watch"


def watch_event(
    event_type: str,
    watch: MeterWatch,
    now: datetime,
    settings: MeterWatchSettings,
    meters: Sequence[MeterSummary] = (),
) -> dict[str, Any]:
    """The event of ``event_type`` for ``watch`` (its state after the check), checked at ``now``.

    The envelope's ``sequence`` is the completion's: these events are facts about that completion.
    Its ``time`` is when the fact became true, not when a sweep noticed it (see :func:`occurred_at`).
    """
    data: dict[str, Any] = {
        "entry_id": watch.entry_id,
        "ref_id": watch.ref_id,
        "transmission_region": watch.transmission_region,
        "completed_at": format_instant(watch.completed_at),
        "checks": watch.checks,
    }
    if event_type == catalog.METER_APPEARED:
        data["meters"] = [_meter_data(meter) for meter in meters]
    elif event_type == catalog.METER_OVERDUE:
        data["overdue_after_hours"] = settings.overdue_hours
    elif event_type == catalog.METER_WATCH_EXPIRED:
        data["gave_up_after_days"] = settings.give_up_days
    else:
        raise ValueError(f"not a meter watch event type: {event_type!r}")
    return catalog.build_event(
        event_type,
        entry_id=watch.entry_id,
        subject=watch.ref_id,
        sequence=watch.sequence,
        time=format_instant(occurred_at(event_type, watch, now, settings, meters)),
        data=data,
        discriminator=EVENT_DISCRIMINATOR,
    )


def occurred_at(
    event_type: str,
    watch: MeterWatch,
    now: datetime,
    settings: MeterWatchSettings,
    meters: Sequence[MeterSummary] = (),
) -> datetime:
    """When the event's fact became true: the first meter's creation (else the check that found it),
    the overdue moment, or the give-up horizon. A re-published event keeps the same time."""
    moments = schedule.timeline(watch.completed_at, settings)
    if event_type == catalog.METER_OVERDUE:
        return moments.overdue_at
    if event_type == catalog.METER_WATCH_EXPIRED:
        return moments.give_up_at
    created = [meter.created_at for meter in meters if meter.created_at is not None]
    return min(created, default=now)


def _meter_data(meter: MeterSummary) -> dict[str, Any]:
    return {
        "meter_id": meter.meter_id,
        "utility_name": meter.utility_name,
        "created_at": format_instant(meter.created_at) if meter.created_at else None,
    }
