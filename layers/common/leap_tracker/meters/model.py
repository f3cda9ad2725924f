"""The meter watch: one per completed connection (entry id), held in the table until it closes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class WatchStatus(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class ClosedReason(StrEnum):
    APPEARED = "appeared"  # meters found: meter.appeared published
    EXPIRED = "expired"  # give-up horizon reached without meters: meter.watch_expired published
    CONNECTION_GONE = "connection_gone"  # the connection snapshot was deleted: nothing published


@dataclass(frozen=True, slots=True)
class MeterWatch:
    """What the sweep knows of one completed connection. Instants are timezone-aware UTC.

    ``sequence`` is the connection sequence of the completion being watched: together with the entry
    id it makes the ids of this watch's events deterministic, and a later completion (higher sequence)
    can start a new watch over a closed one (see :func:`leap_tracker.meters.schedule.supersedes`).
    """

    entry_id: str
    ref_id: str
    transmission_region: str | None
    completed_at: datetime
    sequence: int
    opened_at: datetime
    due_at: datetime | None  # when the next check is due; None once closed
    checks: int = 0
    overdue_published: bool = False
    status: WatchStatus = WatchStatus.OPEN
    closed_reason: ClosedReason | None = None
    closed_at: datetime | None = None
    last_checked_at: datetime | None = None
    meter_ids: tuple[str, ...] = ()  # the meters that closed it (ids only)

    @property
    def is_open(self) -> bool:
        return self.status is WatchStatus.OPEN


@dataclass(frozen=True, slots=True)
class MeterSummary:
    """What a partner learns of one meter: no address, customer or account data, ever."""

    meter_id: str
    utility_name: str | None
    created_at: datetime | None
