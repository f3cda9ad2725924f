"""A ``connection.completed`` event opens the connection's meter watch, exactly once."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from leap_tracker.config import MeterWatchSettings
from leap_tracker.events import catalog
from leap_tracker.leap import wire
from leap_tracker.meters import schedule
from leap_tracker.meters.model import MeterWatch
from leap_tracker.meters.ports import WatchStore
from leap_tracker.timeutil import parse_instant


class OpenResult(StrEnum):
    OPENED = "opened"
    REOPENED = "reopened"  # a later completion over a watch that closed without meters
    ALREADY_WATCHED = "already_watched"  # redelivery, replay, or nothing new to watch
    IGNORED = "ignored"  # not a connection.completed event


class MalformedCompletion(ValueError):
    """A connection.completed event without the fields a watch needs (the message goes to the DLQ)."""


def watch_from_completion(
    event: dict[str, Any], now: datetime, settings: MeterWatchSettings
) -> MeterWatch | None:
    """The watch a CloudEvent asks for: None for any type but connection.completed."""
    if event.get("type") != catalog.CONNECTION_COMPLETED:
        return None
    try:
        connection = event["data"]["connection"]
        entry_id = _text(connection, wire.ENTRY_ID)
        ref_id = _text(connection, wire.ENTRY_REF_ID)
        completed_at = parse_instant(_text(connection, wire.ENTRY_LAST_INTERACTION))
        sequence = int(event["sequence"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedCompletion(f"connection.completed event {event.get('id')!r}: {exc!r}") from exc
    region = connection.get(wire.ENTRY_TRANSMISSION_REGION)
    return schedule.new_watch(
        entry_id=entry_id,
        ref_id=ref_id,
        transmission_region=region if isinstance(region, str) else None,
        completed_at=completed_at,
        sequence=sequence,
        now=now,
        settings=settings,
    )


def open_watch(
    store: WatchStore, event: dict[str, Any], now: datetime, settings: MeterWatchSettings
) -> OpenResult:
    """Open (or, for a later completion, reopen) the watch ``event`` asks for; safe to repeat."""
    watch = watch_from_completion(event, now, settings)
    if watch is None:
        return OpenResult.IGNORED
    if store.create(watch):
        return OpenResult.OPENED
    existing = store.get(watch.entry_id)
    if existing is None:  # deleted between the two calls: try once more, then let SQS redeliver
        return OpenResult.OPENED if store.create(watch) else OpenResult.ALREADY_WATCHED
    if schedule.supersedes(existing, watch.sequence) and store.replace(existing, watch):
        return OpenResult.REOPENED
    return OpenResult.ALREADY_WATCHED


def _text(mapping: dict[str, Any], name: str) -> str:
    value = mapping[name]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is {value!r}, not a non-empty string")
    return value
