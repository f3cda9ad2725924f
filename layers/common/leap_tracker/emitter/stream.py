"""From a table stream record's images (already deserialised) to the messages of its events (pure).

A record that is not a snapshot the poller writes raises :class:`NotASnapshot`; its message names
what is wrong, never the entry id (it embeds the Reference ID, and the message reaches the log).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from leap_tracker import table
from leap_tracker.events.diff import DEFAULT_RULES, DiffRules, change_events
from leap_tracker.events.publishing import OutgoingMessage, to_message
from leap_tracker.leap.connect_model import code_problem
from leap_tracker.privacy import excerpt
from leap_tracker.table import UnreadableStoredEntry, decode_stored_entry


class NotASnapshot(ValueError):
    """A connection item whose attributes are not a snapshot the poller writes (a poison record)."""


@dataclass(frozen=True, slots=True)
class SnapshotChange:
    entry_id: str
    sequence: int
    old_entry: dict[str, Any] | None
    new_entry: dict[str, Any]


def snapshot_change(
    old_image: Mapping[str, Any] | None, new_image: Mapping[str, Any] | None
) -> SnapshotChange | None:
    """The change a record carries; None when it is not a write of a connection snapshot (a REMOVE, or
    another kind of item: the event source filter lets only connection items through, this double-checks)."""
    if not new_image or not _is_snapshot(new_image):
        return None
    entry_id = table.entry_id_from_pk(new_image[table.PK])
    if not table.entry_id_fits(entry_id):
        raise NotASnapshot(
            f"connection item's entry id is empty, not Unicode text or over {table.MAX_ENTRY_ID_BYTES} bytes"
        )
    old = _entry(old_image) if old_image and _is_snapshot(old_image) else None
    new = _entry(new_image)
    if new is None:
        raise NotASnapshot(f"connection item has no {table.CONN_ENTRY!r}")
    return SnapshotChange(entry_id, _sequence(new_image), old, new)


def _sequence(image: Mapping[str, Any]) -> int:
    """The item's sequence: a whole number from 1 (DynamoDB numbers arrive as Decimal)."""
    value = image.get(table.CONN_SEQUENCE)
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        try:
            if value == int(value) and value >= 1:
                return int(value)
        except (ValueError, OverflowError):  # NaN, Infinity
            pass
    found = "absent" if value is None else f"not a whole number from 1 (a {type(value).__name__})"
    raise NotASnapshot(f"connection item's {table.CONN_SEQUENCE!r} is {found}")


def record_messages(
    old_image: Mapping[str, Any] | None,
    new_image: Mapping[str, Any] | None,
    rules: DiffRules = DEFAULT_RULES,
) -> list[OutgoingMessage]:
    """The messages to publish for one stream record, in order (none for a write that entered nothing)."""
    change = snapshot_change(old_image, new_image)
    if change is None:
        return []
    try:
        events = change_events(change.old_entry, change.new_entry, change.sequence, rules)
    except (KeyError, ValueError) as exc:  # a required Leap field missing or malformed
        raise NotASnapshot(f"the entry cannot be diffed: {type(exc).__name__}: {excerpt(str(exc))}") from exc
    messages = [to_message(event, change.entry_id) for event in events]
    for message in messages:  # an entry stored before codes were bounded: SNS would refuse it
        for name, value in message.attributes.items():
            problem = code_problem(value)
            if problem:
                raise NotASnapshot(f"the event's SNS attribute {name} {problem}")
    return messages


def _is_snapshot(image: Mapping[str, Any]) -> bool:
    return str(image.get(table.PK, "")).startswith(table.CONNECTION_PREFIX) and (
        image.get(table.SK) == table.CONNECTION_SK
    )


def _entry(image: Mapping[str, Any]) -> dict[str, Any] | None:
    value = image.get(table.CONN_ENTRY)
    if value is None:
        return None
    try:
        return decode_stored_entry(value)
    except UnreadableStoredEntry as exc:
        raise NotASnapshot(f"{table.CONN_ENTRY!r}: {exc}") from exc
