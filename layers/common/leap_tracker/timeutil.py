"""Instants on the wire and in the table: timezone-aware UTC datetimes, written as RFC 3339 with a Z."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from leap_tracker.leap.wire import WIRE_DATETIME_FORMAT


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 / RFC 3339 instant; a value without an offset is taken as UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_instant(value: datetime) -> str:
    """Format to the second, in UTC, with a Z (the form Leap uses)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware UTC instant")
    return value.astimezone(UTC).strftime(WIRE_DATETIME_FORMAT)


def utc_now() -> datetime:
    return datetime.now(UTC)


# The field the template's schedules put in a scheduled run's input (<aws.scheduler.scheduled-time>).
SCHEDULED_TIME_FIELD = "scheduled_time"


def scheduled_time_or_now(event: Any, on_unusable: Callable[[str], None]) -> datetime:
    """A scheduled run's planned time (the same on the scheduler's retries), else the clock;
    ``on_unusable`` hears of a planned time that is not an instant (the caller logs it)."""
    planned = event.get(SCHEDULED_TIME_FIELD) if isinstance(event, dict) else None
    if isinstance(planned, str):
        try:
            return parse_instant(planned)
        except ValueError:
            on_unusable(planned)
    return utc_now()
