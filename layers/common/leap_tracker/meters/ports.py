"""What the meter watch logic needs from the outside world (adapters implement these; tests fake them)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Protocol

from leap_tracker.events.publishing import OutgoingMessage
from leap_tracker.meters.model import MeterSummary, MeterWatch


class WatchWriter(Protocol):
    """What a check needs to save its outcome (:func:`leap_tracker.meters.checks.publish_then_save`)."""

    def replace(self, before: MeterWatch, after: MeterWatch) -> bool:
        """Store ``after`` if the stored watch is still ``before`` (same sequence, checks and status).

        False when someone else changed it first (a concurrent sweep or completion): optimistic locking.
        """
        ...


class WatchStore(WatchWriter, Protocol):
    def create(self, watch: MeterWatch) -> bool:
        """Store a new watch unless one exists for its entry id; False when one does."""
        ...

    def get(self, entry_id: str) -> MeterWatch | None: ...

    def due_watches(self, now: datetime) -> Iterator[MeterWatch]:
        """Open watches due at or before ``now``, earliest first, read lazily page by page."""
        ...

    def existing_connections(self, entry_ids: Sequence[str]) -> set[str]:
        """Which of these entry ids still have a connection snapshot."""
        ...


class EventPublisher(Protocol):
    """``leap_tracker.adapters.sns_publisher.SnsPublisher`` in Lambda."""

    def publish(self, messages: Sequence[OutgoingMessage]) -> dict[str, str]:
        """Publish every message; return {event id: reason} for each one that was not accepted."""
        ...


class RememberedMeters(Protocol):
    """Meters a ``meter.created`` webhook named and the Meters API confirmed, by Reference ID, kept
    until the connection's completion opens its watch (``adapters/remembered_meters.py``)."""

    def remember(
        self, ref_id: str, meters: Sequence[MeterSummary], now: datetime, expires_at: datetime
    ) -> None:
        """Keep these meters of ``ref_id`` (one item each: writing one again changes nothing that matters)."""
        ...

    def recall(self, ref_id: str) -> list[MeterSummary]:
        """Every meter kept for ``ref_id``, read consistently (a remember just before is seen)."""
        ...
