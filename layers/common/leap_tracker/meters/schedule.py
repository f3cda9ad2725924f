"""When a meter watch is checked, when it is overdue and when it gives up: pure rules, no I/O.

All three moments hang off the completion (``completed_at``, the completion's last interaction):

    completed_at ── first check ──────── overdue ─────────────────────────── give-up horizon
                    (+first_check_hours)  (+overdue_hours)                    (+give_up_days)
                    │ backoff: retry_minutes,  │ every overdue_retry_hours     │ one last check,
                    │ doubling, capped at      │ (meter.overdue once)          │ then meter.watch_expired
                    │ max_retry_hours          │                               │

A check that finds meters closes the watch (meter.appeared) whatever the moment. A check that finds
none reschedules it strictly later than the check, never past the horizon, and pulled in to the
overdue moment so that meter.overdue goes out on time; the check at or after the horizon is the last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from leap_tracker.config import MeterWatchSettings
from leap_tracker.events import catalog
from leap_tracker.meters.model import ClosedReason, MeterWatch, WatchStatus

# 2**32 minutes is ~8000 years: any backoff cap is reached long before, and timedelta cannot overflow.
_MAX_DOUBLINGS = 32


@dataclass(frozen=True, slots=True)
class Timeline:
    """The fixed moments of one watch, derived from its completion."""

    first_check_at: datetime
    overdue_at: datetime
    give_up_at: datetime


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """A check's result: the watch's next state and the catalog event type to publish, if any."""

    watch: MeterWatch
    publish: str | None


def timeline(completed_at: datetime, settings: MeterWatchSettings) -> Timeline:
    give_up_at = completed_at + timedelta(days=settings.give_up_days)
    return Timeline(
        first_check_at=min(completed_at + timedelta(hours=settings.first_check_hours), give_up_at),
        overdue_at=completed_at + timedelta(hours=settings.overdue_hours),
        give_up_at=give_up_at,
    )


def new_watch(
    *,
    entry_id: str,
    ref_id: str,
    transmission_region: str | None,
    completed_at: datetime,
    sequence: int,
    now: datetime,
    settings: MeterWatchSettings,
) -> MeterWatch:
    """A watch for a completion. Its first check may already be due (a completion seen late)."""
    return MeterWatch(
        entry_id=entry_id,
        ref_id=ref_id,
        transmission_region=transmission_region,
        completed_at=completed_at,
        sequence=sequence,
        opened_at=now,
        due_at=timeline(completed_at, settings).first_check_at,
    )


def supersedes(existing: MeterWatch, completion_sequence: int) -> bool:
    """Whether a completion starts a new watch in place of ``existing`` (same entry id).

    Only a LATER completion (the connection left COMPLETED and came back) over a watch that closed
    WITHOUT meters: the customer may have fixed what kept the meters away. An open watch keeps
    waiting on its first completion, and once meters appeared a Reference ID gets no second
    meter.appeared. A redelivered or replayed completion (same or lower sequence) changes nothing.
    """
    return (
        existing.status is WatchStatus.CLOSED
        and existing.closed_reason is not ClosedReason.APPEARED
        and completion_sequence > existing.sequence
    )


def after_check(
    watch: MeterWatch, meter_ids: Sequence[str], now: datetime, settings: MeterWatchSettings
) -> CheckOutcome:
    """The watch after one Meters API check at ``now`` that found ``meter_ids`` (maybe none)."""
    checked = replace(watch, checks=watch.checks + 1, last_checked_at=now)
    if meter_ids:
        closed = _closed(checked, ClosedReason.APPEARED, now, meter_ids=tuple(meter_ids))
        return CheckOutcome(closed, catalog.METER_APPEARED)
    moments = timeline(watch.completed_at, settings)
    if now >= moments.give_up_at:
        return CheckOutcome(_closed(checked, ClosedReason.EXPIRED, now), catalog.METER_WATCH_EXPIRED)
    due_at = next_check_at(checked.checks, now, moments, settings)
    if now >= moments.overdue_at and not watch.overdue_published:
        return CheckOutcome(replace(checked, due_at=due_at, overdue_published=True), catalog.METER_OVERDUE)
    return CheckOutcome(replace(checked, due_at=due_at), None)


def close_gone(watch: MeterWatch, now: datetime) -> MeterWatch:
    """The watch of a connection whose snapshot was deleted: closed, nothing to tell anyone."""
    return _closed(watch, ClosedReason.CONNECTION_GONE, now)


def next_check_at(checks: int, now: datetime, moments: Timeline, settings: MeterWatchSettings) -> datetime:
    """When to check again after the ``checks``-th empty check at ``now`` (``now`` < give-up horizon).

    Always strictly after ``now``: before the overdue moment the waits double from retry_minutes up to
    max_retry_hours (most meters come within a day, so early checks are dense), capped at the overdue
    moment; after it, every overdue_retry_hours. Never past the horizon.
    """
    if now < moments.overdue_at:
        doublings = min(max(checks - 1, 0), _MAX_DOUBLINGS)
        wait_minutes = min(settings.retry_minutes * 2**doublings, settings.max_retry_hours * 60)
        due = min(now + timedelta(minutes=wait_minutes), moments.overdue_at)
    else:
        due = now + timedelta(hours=settings.overdue_retry_hours)
    return min(due, moments.give_up_at)


def _closed(
    watch: MeterWatch, reason: ClosedReason, now: datetime, meter_ids: tuple[str, ...] = ()
) -> MeterWatch:
    return replace(
        watch,
        status=WatchStatus.CLOSED,
        closed_reason=reason,
        closed_at=now,
        due_at=None,
        meter_ids=meter_ids,
    )
