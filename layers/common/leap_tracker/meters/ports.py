"""What the meter watch logic needs from the outside world (adapters implement these; tests fake them)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Protocol

from leap_tracker.events.publishing import OutgoingMessage
from leap_tracker.meters.model import MeterWatch


class WatchStore(Protocol):
    def create(self, watch: MeterWatch) -> bool:
        """Store a new watch unless one exists for its entry id; False when one does."""
        ...

    def get(self, entry_id: str) -> MeterWatch | None: ...

    def replace(self, before: MeterWatch, after: MeterWatch) -> bool:
        """Store ``after`` if the stored watch is still ``before`` (same sequence, checks and status).

        False when someone else changed it first (a concurrent sweep or completion): optimistic locking.
        """
        ...

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
