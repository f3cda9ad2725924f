"""The poller's other collaborators: an in-memory store, a clock and a remaining-time budget.

The in-memory store follows the ``PollerStore`` contract of the DynamoDB store (the integration
tests run the same contract checks against both), so the run logic can be tested without moto: the
lease, and the history of stored changes (each with the previous stored entry, refused when the
change does not follow the stored sequence, and nothing of the call written then).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from leap_tracker.poller.ports import (
    Checkpoint,
    LeaseHeld,
    LeaseLost,
    LeaseUse,
    QuarantineRecord,
    SnapshotWrite,
    StoredState,
)
from tests.builders import T0


class StoredChange(NamedTuple):
    """A history item as the in-memory store keeps it: canonical JSON, the previous one None at 1."""

    sequence: int
    previous: str | None
    entry: str


class StoreRefused(RuntimeError):
    """What the fake raises where the DynamoDB store raises PreviousEntryUnknown."""


@dataclass
class MemoryStore:
    """An in-memory PollerStore that counts what it is asked to write."""

    snapshots: dict[str, SnapshotWrite] = field(default_factory=dict)
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    checkpoints_saved: int = 0
    lease: tuple[str, datetime] | None = None
    lease_use: LeaseUse = LeaseUse.PASS  # what the holder of ``lease`` does
    waiting_pass: tuple[str, datetime] | None = None  # a pass waiting for the lease: (owner, until)
    acquire_attempts: int = 0
    written: list[tuple[str, int]] = field(default_factory=list)  # (entry id, sequence), in order
    write_calls: int = 0
    history: dict[str, list[StoredChange]] = field(default_factory=dict)  # by entry id, in sequence order
    reads: list[tuple[int, bool]] = field(default_factory=list)  # (entries asked for, consistent) per read
    # What an eventually consistent read still sees of an entry (a write it has not caught up with);
    # None: the entry is not there yet. Consistent reads see ``snapshots``.
    lagging: dict[str, SnapshotWrite | None] = field(default_factory=dict)

    def acquire_lease(
        self, owner: str, now: datetime, until: datetime, use: LeaseUse = LeaseUse.PASS
    ) -> None:
        self.acquire_attempts += 1
        if use is LeaseUse.REF_ID and self.waiting_pass is not None and not self.waiting_pass[1] < now:
            raise LeaseHeld(*self.waiting_pass, LeaseUse.PASS, waiting=True)
        if self.lease is not None and not self.lease[1] < now:
            raise LeaseHeld(*self.lease, self.lease_use)
        self.lease, self.lease_use = (owner, until), use

    def announce_waiting_pass(self, owner: str, until: datetime) -> None:
        self.waiting_pass = (owner, until)

    def withdraw_waiting_pass(self, owner: str) -> None:
        if self.waiting_pass is not None and self.waiting_pass[0] == owner:
            self.waiting_pass = None

    def renew_lease(self, owner: str, until: datetime) -> None:
        if self.lease is None or self.lease[0] != owner:
            raise LeaseLost(f"run {owner} lost the poller lease")
        self.lease = (owner, until)

    def release_lease(self, owner: str) -> bool:
        if self.lease is None or self.lease[0] != owner:
            return False
        self.lease = None
        return True

    def load_checkpoint(self) -> Checkpoint:
        return self.checkpoint

    def save_checkpoint(self, checkpoint: Checkpoint, owner: str, now: datetime) -> None:
        self.checkpoint = checkpoint
        self.checkpoints_saved += 1

    def read_snapshots(self, entry_ids: Sequence[str], *, consistent: bool = True) -> dict[str, StoredState]:
        self.reads.append((len(entry_ids), consistent))
        seen: dict[str, SnapshotWrite | None] = {**self.snapshots}
        if not consistent:
            seen |= self.lagging
        return {
            entry_id: StoredState(write.entry.content_hash, write.sequence, write.entry.last_interaction)
            for entry_id in entry_ids
            if (write := seen.get(entry_id)) is not None
        }

    def write_changes(
        self, snapshots: Sequence[SnapshotWrite], quarantined: Sequence[QuarantineRecord], now: datetime
    ) -> None:
        self.write_calls += 1
        changes = [self._change(write) for write in snapshots]  # all checked before anything is stored
        for write, change in zip(snapshots, changes, strict=True):
            self.history.setdefault(write.entry.entry_id, []).append(change)
            self.snapshots[write.entry.entry_id] = write
            self.written.append((write.entry.entry_id, write.sequence))
        self.quarantine.extend(quarantined)

    def _change(self, write: SnapshotWrite) -> StoredChange:
        stored = self.snapshots.get(write.entry.entry_id)
        if (stored.sequence if stored else 0) != write.sequence - 1:
            raise StoreRefused("the change does not follow the stored snapshot's sequence")
        previous = stored.entry.canonical_json if stored else None
        return StoredChange(write.sequence, previous, write.entry.canonical_json)

    def sequence_of(self, entry_id: str) -> int:
        return self.snapshots[entry_id].sequence


@dataclass
class MemoryPollMarks:
    """An in-memory ``PollMarks`` (the contract tests hold DynamoPollMarks to the same behaviour)."""

    marks: dict[str, datetime] = field(default_factory=dict)
    reads: int = 0

    def polled_at(self, ref_id: str) -> datetime | None:
        self.reads += 1
        return self.marks.get(ref_id)

    def record_poll(self, ref_id: str, started_at: datetime, run_id: str) -> None:
        kept = self.marks.get(ref_id)
        if kept is None or kept < started_at:
            self.marks[ref_id] = started_at


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


class PageBudget:
    """A remaining-time callable with plenty of time for ``pages`` page checks, then none."""

    def __init__(self, pages: int) -> None:
        self.left = pages

    def __call__(self) -> int:
        self.left -= 1
        return 900_000 if self.left >= 0 else 0
