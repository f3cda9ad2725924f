"""What processing Leap's webhooks needs from the outside world (adapters implement these; tests fake
them). The Meters search is ``leap.api.MeterSource``, the topic ``meters.ports.EventPublisher``, the
remembered meters ``meters.ports.RememberedMeters``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from leap_tracker.meters.model import MeterWatch


class PollRequests(Protocol):
    """Ask for a targeted poll of one Reference ID (``adapters/poll_requests.py`` ``SqsPollRequests``):
    whoever implements it debounces, and the poll reads Leap's current state, so asking again (a
    duplicate or out-of-order webhook) costs at most one more read of the Connect API."""

    def request(self, ref_id: str, received_at: datetime) -> None: ...


@dataclass(frozen=True, slots=True)
class ProcessedWebhook:
    """The record of one delivery processed to its end (the duplicate check), kept for a while."""

    event_id: str  # Leap's webhook_event_id
    event_type: str
    received_at: datetime
    processed_at: datetime
    outcome: str  # webhooks.processing.Result
    expires_at: datetime
    body: str | None = None  # as received, kept for unknown types and enrollment events


class ProcessedWebhooks(Protocol):
    """``adapters/webhook_ledger.py``."""

    def get(self, event_id: str) -> ProcessedWebhook | None:
        """The record of this delivery, read consistently; None when it was never processed."""
        ...

    def record(self, processed: ProcessedWebhook) -> bool:
        """Keep the record unless one exists for its event id; False when one does (a duplicate
        processed at the same time: the first record stays)."""
        ...


class WatchesOfReference(Protocol):
    """``adapters/watch_store.py`` ``DynamoWatchStore``: the watches a Reference ID's meter names."""

    def open_watches_of_ref(self, ref_id: str) -> list[MeterWatch]:
        """The open watches of this Reference ID whose connection snapshot is still in the table (a
        Query of ref-index, never a Scan; one per entry: a Reference ID may have several)."""
        ...

    def get(self, entry_id: str) -> MeterWatch | None: ...

    def replace(self, before: MeterWatch, after: MeterWatch) -> bool:
        """As ``meters.ports.WatchStore.replace``: conditional on the watch still being ``before``."""
        ...
