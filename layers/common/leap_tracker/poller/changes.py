"""Change detection (pure): validate a page and compare each entry with its stored snapshot."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from leap_tracker import table
from leap_tracker.leap.connect_model import (
    DEFAULT_KNOWN_VALUES,
    KnownValues,
    MalformedEntry,
    UnknownValue,
    ValidEntry,
    validate_entry,
)
from leap_tracker.poller.ports import (
    QuarantineRecord,
    SnapshotWrite,
    StoredState,
)

QUARANTINE_RETENTION = timedelta(days=30)
MAX_QUARANTINED_JSON_CHARS = 100_000  # keeps a quarantine item far below DynamoDB's 400 KB
MAX_QUARANTINE_REASON_CHARS = 1_000  # a reason may quote a name Leap sent (an agreement's): bounded too


class ChangeKind(StrEnum):
    NEW = "new"  # first seen: sequence 1
    CHANGED = "changed"  # different content, not older: next sequence
    UNCHANGED = "unchanged"  # same content hash
    STALE = "stale"  # older last interaction than the stored one: never regress

    @property
    def writes(self) -> bool:
        return self in (ChangeKind.NEW, ChangeKind.CHANGED)


@dataclass(frozen=True, slots=True)
class EntryChange:
    outcome: ChangeKind
    sequence: int | None = None  # the sequence to write, for NEW and CHANGED


_UNCHANGED = EntryChange(ChangeKind.UNCHANGED)  # most entries of a poll: one immutable value for all


def decide_entry(content_hash: str, last_interaction: datetime, stored: StoredState | None) -> EntryChange:
    """Compare one entry with its stored snapshot."""
    if stored is None:
        return EntryChange(ChangeKind.NEW, 1)
    if content_hash == stored.content_hash:
        return _UNCHANGED
    if stored.last_interaction is not None and last_interaction < stored.last_interaction:
        return EntryChange(ChangeKind.STALE)
    return EntryChange(ChangeKind.CHANGED, stored.sequence + 1)


def newest_per_id(entries: Sequence[ValidEntry]) -> list[ValidEntry]:
    """One entry per id: the newest by last interaction; on a tie, the later one in the page."""
    chosen: dict[str, ValidEntry] = {}
    for entry in entries:
        kept = chosen.get(entry.entry_id)
        if kept is None or entry.last_interaction >= kept.last_interaction:
            chosen[entry.entry_id] = entry
    return list(chosen.values())


@dataclass(frozen=True, slots=True)
class ValidatedPage:
    valid: list[ValidEntry]  # one per entry id
    quarantined: list[QuarantineRecord]
    unknown_values: Counter[UnknownValue]
    duplicates: int  # entries dropped because a newer one with the same id was in the page

    @property
    def max_last_interaction(self) -> datetime | None:
        return max((entry.last_interaction for entry in self.valid), default=None)


def validate_page(
    raw_entries: Sequence[Any], now: datetime, known: KnownValues = DEFAULT_KNOWN_VALUES
) -> ValidatedPage:
    valid: list[ValidEntry] = []
    quarantined: dict[str, QuarantineRecord] = {}  # by key: a batch write must not repeat a key
    unknown: Counter[UnknownValue] = Counter()
    for raw in raw_entries:
        try:
            entry = validate_entry(raw, known)
        except MalformedEntry as problem:
            record = quarantine_record(raw, problem, now)
            quarantined[record.key] = record
            continue
        valid.append(entry)
        if entry.unknown_values:  # rare: Counter.update costs a Mapping check even for nothing
            unknown.update(entry.unknown_values)
    unique = newest_per_id(valid)
    return ValidatedPage(unique, list(quarantined.values()), unknown, len(valid) - len(unique))


def quarantine_record(raw: Any, problem: MalformedEntry, now: datetime) -> QuarantineRecord:
    """The item that keeps a malformed entry aside. Its key is the entry id when that fits a key,
    else a hash of the raw entry: the quarantine item itself must never be what fails the page."""
    raw_json = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)  # ASCII
    entry_id = problem.entry_id if problem.entry_id and table.entry_id_fits(problem.entry_id) else None
    return QuarantineRecord(
        key=entry_id or "sha256:" + hashlib.sha256(raw_json.encode()).hexdigest(),
        reason=_storable_text(problem.reason[:MAX_QUARANTINE_REASON_CHARS]),
        raw_json=raw_json[:MAX_QUARANTINED_JSON_CHARS],
        received_at=now,
        expires_at=now + QUARANTINE_RETENTION,
        entry_id=entry_id,
    )


def _storable_text(text: str) -> str:
    """``text`` with any lone surrogate escaped: a DynamoDB string must be valid UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True, slots=True)
class PageChanges:
    writes: list[SnapshotWrite]
    outcomes: dict[str, EntryChange]  # by entry id

    def count(self, outcome: ChangeKind) -> int:
        return sum(1 for decision in self.outcomes.values() if decision.outcome is outcome)


def decide_page(valid: Sequence[ValidEntry], stored: dict[str, StoredState]) -> PageChanges:
    writes: list[SnapshotWrite] = []
    outcomes: dict[str, EntryChange] = {}
    for entry in valid:
        decision = decide_entry(entry.content_hash, entry.last_interaction, stored.get(entry.entry_id))
        outcomes[entry.entry_id] = decision
        if decision.sequence is not None:
            writes.append(SnapshotWrite(entry, decision.sequence))
    return PageChanges(writes, outcomes)


def reconfirmed(first: PageChanges, again: PageChanges) -> PageChanges:
    """``first`` (decided on an eventually consistent read) with the decisions for its writes taken
    again on a consistent read of them (``again``): only those stand."""
    return PageChanges(again.writes, {**first.outcomes, **again.outcomes})
