"""A ``connection.completed`` event opens the connection's meter watch, exactly once.

A watch may open already satisfied: when a ``meter.created`` webhook came first (the meter exists
before the poller saw the completion), the processor remembered the meters the Meters API confirmed
(``RememberedMeters``), and opening publishes ``meter.appeared`` from them at once and closes the
watch, through the same check as the sweep (:mod:`leap_tracker.meters.checks`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from leap_tracker import table
from leap_tracker.config import MeterWatchSettings
from leap_tracker.events import catalog
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import MAX_REF_ID_BYTES, code_problem, identifier_problem
from leap_tracker.meters import schedule
from leap_tracker.meters.checks import EventsNotPublished, Saved, check, publish_then_save
from leap_tracker.meters.matching import searchable, since_completion
from leap_tracker.meters.model import MeterWatch
from leap_tracker.meters.ports import EventPublisher, RememberedMeters, WatchStore
from leap_tracker.privacy import excerpt
from leap_tracker.timeutil import parse_instant


class OpenResult(StrEnum):
    OPENED = "opened"
    REOPENED = "reopened"  # a later completion over a watch that closed without meters
    ALREADY_WATCHED = "already_watched"  # redelivery, replay, or nothing new to watch
    IGNORED = "ignored"  # not a connection.completed event
    # Remembered meters (a meter.created webhook came first) satisfied the open watch at once:
    # meter.appeared published, the watch closed.
    APPEARED = "appeared"


@dataclass(frozen=True, slots=True)
class EarlyMeters:
    """What opening a watch satisfied needs: the meters webhooks remembered, and the events topic."""

    remembered: RememberedMeters
    publisher: EventPublisher


class MalformedCompletion(ValueError):
    """A connection.completed event without the fields a watch needs, each of the right type and size
    (the message goes to the DLQ). The message names the field and what is wrong, never its value."""


_SEQUENCE = re.compile(rf"[0-9]{{1,{catalog.SEQUENCE_DIGITS}}}")


def watch_from_completion(event: Any, now: datetime, settings: MeterWatchSettings) -> MeterWatch | None:
    """The watch a CloudEvent asks for: None for any type but connection.completed.

    Every field that reaches the watch item is checked first: the entry id (the item's key) and the
    Reference ID within the key limits, the region a short code (it becomes an SNS attribute of the
    meter events), the last interaction an instant, the sequence a whole number.
    """
    if not isinstance(event, Mapping):
        raise MalformedCompletion(f"the message is {_type_name(event)}, not a CloudEvent object")
    if event.get("type") != catalog.CONNECTION_COMPLETED:
        return None
    data = event.get("data")
    connection = data.get("connection") if isinstance(data, Mapping) else None
    if not isinstance(connection, Mapping):
        raise MalformedCompletion("connection.completed event without a data.connection object")
    return schedule.new_watch(
        entry_id=_identifier(connection, wire.ENTRY_ID, table.MAX_ENTRY_ID_BYTES),
        ref_id=_identifier(connection, wire.ENTRY_REF_ID, MAX_REF_ID_BYTES),
        transmission_region=_region(connection),
        completed_at=_instant(connection, wire.ENTRY_LAST_INTERACTION),
        sequence=_sequence(event),
        now=now,
        settings=settings,
    )


def open_watch(
    store: WatchStore,
    event: Any,
    now: datetime,
    settings: MeterWatchSettings,
    early: EarlyMeters | None = None,
) -> OpenResult:
    """Open (or, for a later completion, reopen) the watch ``event`` asks for; safe to repeat.

    With ``early``, an open watch (just opened, or found open: a redelivery after SNS refused) that
    remembered meters satisfy is closed at once with ``meter.appeared`` (:data:`OpenResult.APPEARED`).
    Raises :class:`EventsNotPublished` when SNS refuses that event.
    """
    watch = watch_from_completion(event, now, settings)
    if watch is None:
        return OpenResult.IGNORED
    result, current = _open(store, watch)
    if (
        early is not None
        and current is not None
        and satisfy_from_remembered(store, current, early, now, settings)
    ):
        return OpenResult.APPEARED
    return result


def satisfy_from_remembered(
    store: WatchStore, watch: MeterWatch, early: EarlyMeters, now: datetime, settings: MeterWatchSettings
) -> bool:
    """Close an open watch with ``meter.appeared`` when remembered meters were created since its
    completion; False when there are none (or someone else changed the watch first)."""
    if not watch.is_open or not searchable(watch.ref_id):  # no webhook can name any other Reference ID
        return False
    meters = since_completion(early.remembered.recall(watch.ref_id), watch)
    if not meters:
        return False
    ((_, saved),) = publish_then_save([check(watch, meters, now, settings)], store, early.publisher)
    if saved is Saved.NOT_PUBLISHED:
        raise EventsNotPublished("SNS did not take the meter.appeared of a watch opening satisfied")
    return saved is Saved.SAVED


def _open(store: WatchStore, watch: MeterWatch) -> tuple[OpenResult, MeterWatch | None]:
    """The opening's result and the watch as stored after it (None when unknown)."""
    if store.create(watch):
        return OpenResult.OPENED, watch
    existing = store.get(watch.entry_id)
    if existing is None:  # deleted between the two calls: try once more, then let SQS redeliver
        return (OpenResult.OPENED, watch) if store.create(watch) else (OpenResult.ALREADY_WATCHED, None)
    if schedule.supersedes(existing, watch.sequence) and store.replace(existing, watch):
        return OpenResult.REOPENED, watch
    return OpenResult.ALREADY_WATCHED, existing


def _text(connection: Mapping[str, Any], name: str) -> str:
    value = connection.get(name)
    if not isinstance(value, str) or not value:
        found = "missing" if value is None else f"{_type_name(value)}, not a non-empty string"
        raise MalformedCompletion(f"connection.completed event: data.connection.{name} is {found}")
    return value


def _identifier(connection: Mapping[str, Any], name: str, max_bytes: int) -> str:
    value = _text(connection, name)
    problem = identifier_problem(value, max_bytes)
    if problem:
        raise MalformedCompletion(f"connection.completed event: data.connection.{name} {problem}")
    return value


def _region(connection: Mapping[str, Any]) -> str | None:
    value = connection.get(wire.ENTRY_TRANSMISSION_REGION)
    if value is None:
        return None
    where = f"connection.completed event: data.connection.{wire.ENTRY_TRANSMISSION_REGION}"
    if not isinstance(value, str):
        raise MalformedCompletion(f"{where} is {_type_name(value)}, not a string or null")
    problem = code_problem(value)
    if problem:
        raise MalformedCompletion(f"{where} {problem}")
    return value


def _instant(connection: Mapping[str, Any], name: str) -> datetime:
    value = _text(connection, name)
    try:
        return parse_instant(value)
    except ValueError:
        raise MalformedCompletion(
            f"connection.completed event: data.connection.{name} is not an ISO 8601 instant: {excerpt(value)}"
        ) from None


def _sequence(event: Mapping[str, Any]) -> int:
    value = event.get("sequence")
    if isinstance(value, str) and _SEQUENCE.fullmatch(value) and int(value) >= 1:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise MalformedCompletion(
        f"connection.completed event: sequence is not a whole number from 1 of at most "
        f"{catalog.SEQUENCE_DIGITS} digits (found {_type_name(value)})"
    )


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__
