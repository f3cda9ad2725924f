"""Instants on the wire and in the table: timezone-aware UTC datetimes, written as RFC 3339 with a Z."""

from __future__ import annotations

from datetime import UTC, datetime

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
