"""What the poller exchanges with its store: the data it keeps between runs and the store Protocol.

The DynamoDB implementation is ``leap_tracker.adapters.poller_store.DynamoPollerStore``; tests may
pass any object with these methods. All instants are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from leap_tracker.leap.api import ConnectQuery
from leap_tracker.leap.connect_model import ValidEntry


class PassKind(StrEnum):
    """A pass reads one Connect selection from its first page to its last, possibly over several runs."""

    FULL = "full"  # by connection start date: every entry (the reconciliation)
    INCREMENTAL = "incremental"  # by last-interaction date, from the watermark minus the overlap


@dataclass(frozen=True, slots=True)
class PassState:
    """An unfinished pass: enough to resume it with the exact same query."""

    kind: PassKind
    query: ConnectQuery
    started_at: datetime
    page_token: str | None = None  # the next page to read; None = the first page
    pages_done: int = 0
    max_last_interaction: datetime | None = None  # running max over the entries seen in this pass
    restarts: int = 0  # times Leap refused the pass's token and it went on with a new query
    # The listing order (poller/listing.py): whether every entry read so far came in the order of the
    # selection's own date (start date for a full pass, last interaction for an incremental one), and
    # the newest such date read. A refused token then resumes from that date, not from page one.
    in_order: bool = True
    listed_through: str | None = None
    # The query the pass started with, once a refused token made it go on with another one (from the
    # newest date read): page one means page one of this one. None: ``query`` is the first one.
    first_query: ConnectQuery | None = None

    def advanced(
        self, next_page_token: str | None, page_max: datetime | None, order: ListingOrder
    ) -> PassState:
        return replace(
            self,
            page_token=next_page_token,
            pages_done=self.pages_done + 1,
            max_last_interaction=latest(self.max_last_interaction, page_max),
            in_order=order.in_order,
            listed_through=order.through,
        )

    @property
    def order(self) -> ListingOrder:
        return ListingOrder(self.in_order, self.listed_through)

    def after_refused_token(self) -> PassState:
        """How the pass goes on when Leap refuses its page token (``poller/listing.py`` says why).

        In order so far: the same selection from the newest date read (inclusive: the entries of
        that instant are read again and found unchanged), so no page before it is read twice.
        Otherwise: back to page one of the pass's first query (not of a query it went on with after an
        earlier refusal: the order that one relied on has just been shown wrong). Either way what was
        seen still counts for the watermark, and the pages done keep counting."""
        first = self.first_query or self.query
        if self.in_order and self.listed_through is not None:
            return replace(
                self,
                query=self.query.from_date(self.listed_through),
                page_token=None,
                restarts=self.restarts + 1,
                first_query=first,
            )
        return replace(
            self,
            query=first,
            page_token=None,
            restarts=self.restarts + 1,
            in_order=True,
            listed_through=None,
            first_query=None,
        )


@dataclass(frozen=True, slots=True)
class ListingOrder:
    """Whether the entries read so far came in order of the selection's date, and the newest one."""

    in_order: bool = True
    through: str | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The poller's state between runs (one item). The watermark moves only when a pass completes."""

    watermark: datetime | None = None  # newest last interaction seen by any completed pass
    last_full_started_at: datetime | None = None  # the start of the last COMPLETED full pass
    last_full_completed_at: datetime | None = None
    last_pass_completed_at: datetime | None = None
    pending: PassState | None = None  # an unfinished pass, resumed by the next scheduled run

    def with_pending(self, state: PassState) -> Checkpoint:
        return replace(self, pending=state)

    def completed(self, state: PassState, now: datetime) -> Checkpoint:
        full = state.kind is PassKind.FULL
        return Checkpoint(
            watermark=latest(self.watermark, state.max_last_interaction),
            last_full_started_at=state.started_at if full else self.last_full_started_at,
            last_full_completed_at=now if full else self.last_full_completed_at,
            last_pass_completed_at=now,
            pending=None,
        )


@dataclass(frozen=True, slots=True)
class StoredState:
    """The part of a stored connection snapshot that change detection needs."""

    content_hash: str
    sequence: int
    last_interaction: datetime | None


@dataclass(frozen=True, slots=True)
class SnapshotWrite:
    """A changed or new entry to store with its next sequence."""

    entry: ValidEntry
    sequence: int


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """A malformed entry kept aside with the reason, for a human to look at (expires on its own)."""

    key: str  # the entry id when it had one, else a hash of the raw entry
    reason: str
    raw_json: str
    received_at: datetime
    expires_at: datetime
    entry_id: str | None = None


class LeaseUse(StrEnum):
    """What a lease holder does: it decides who waits for whom (``run.py``)."""

    PASS = "pass"  # a pass (full or incremental): minutes
    REF_ID = "ref_id"  # one Reference ID (on demand or a targeted poll): one page, seconds


class LeaseHeld(Exception):
    """Another run holds the poller lease (``use``: what it does), or, refused to a ref_id run only, a
    pass is waiting for it (``waiting``: ``owner`` is that pass, ``until`` when it gives up)."""

    def __init__(
        self, owner: str, until: datetime | None, use: LeaseUse = LeaseUse.PASS, *, waiting: bool = False
    ) -> None:
        until_text = until.isoformat() if until else "unknown"
        held = f"a pass ({owner}) is waiting for the lease" if waiting else f"lease held by {owner}"
        super().__init__(f"{held} until {until_text}")
        self.owner = owner
        self.until = until
        self.use = use
        self.waiting = waiting


class LeaseLost(Exception):
    """This run no longer holds the lease (it expired and another run took it): stop, write nothing."""


class PollerStore(Protocol):
    def acquire_lease(
        self, owner: str, now: datetime, until: datetime, use: LeaseUse = LeaseUse.PASS
    ) -> None:
        """Take the lease if it is free or expired, and, for a ref_id run, no pass is waiting for it;
        raise :class:`LeaseHeld` otherwise."""
        ...

    def announce_waiting_pass(self, owner: str, until: datetime) -> None:
        """Say that pass ``owner`` waits for the lease until ``until``: ref_id runs stand back."""
        ...

    def withdraw_waiting_pass(self, owner: str) -> None:
        """Take back ``owner``'s announcement (no-op when it is not, or no longer, ``owner``'s)."""
        ...

    def renew_lease(self, owner: str, until: datetime) -> None:
        """Extend the lease if ``owner`` still holds it; raise :class:`LeaseLost` otherwise."""
        ...

    def release_lease(self, owner: str) -> bool:
        """Give the lease up if ``owner`` holds it; False when it did not (nothing changed)."""
        ...

    def load_checkpoint(self) -> Checkpoint: ...

    def save_checkpoint(self, checkpoint: Checkpoint, owner: str, now: datetime) -> None: ...

    def read_snapshots(self, entry_ids: Sequence[str], *, consistent: bool = True) -> dict[str, StoredState]:
        """The stored state of those entries that have a snapshot. ``consistent=False`` may miss a
        write of the last second or so (DynamoDB's eventually consistent read, half the read units):
        good enough to find what did not change, never to decide a write (``run.py``)."""
        ...

    def write_changes(
        self, snapshots: Sequence[SnapshotWrite], quarantined: Sequence[QuarantineRecord], now: datetime
    ) -> None:
        """Store all of them, or raise (then the page is not checkpointed and is replayed)."""
        ...


class PollMarks(Protocol):
    """When the last targeted poll of a Reference ID started (``adapters/poll_requests.py``)."""

    def polled_at(self, ref_id: str) -> datetime | None:
        """Read consistently; None when no targeted poll of it completed (or its mark expired)."""
        ...

    def record_poll(self, ref_id: str, started_at: datetime, run_id: str) -> None:
        """Keep ``started_at`` unless a later one is kept already (the mark only moves forward)."""
        ...


def latest(first: datetime | None, second: datetime | None) -> datetime | None:
    """The later of two optional instants."""
    if first is None:
        return second
    if second is None:
        return first
    return max(first, second)
