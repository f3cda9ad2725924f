"""The webhook processor's collaborators in memory, each following its DynamoDB adapter's contract
(tests/integration/test_webhook_stores.py runs the same contract checks against both):

- :class:`MemoryWatches`: the meter watches (``meters.ports.WatchStore``) and the ref-index lookup
  (``webhooks.ports.WatchesOfReference``): a watch counts only while its connection snapshot exists;
- :class:`MemoryRememberedMeters`, :class:`MemoryProcessedWebhooks`: the two webhook item families;
- :class:`FakeMeterSource`: Leap's Meters search, whose meters become visible from a given search on
  (Leap's Meters API lagging its own webhook), counting the searches;
- :class:`RecordingPollRequests`: the targeted poll requests asked for.

The topic is ``tests.fakes.outreach.RecordingSink``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from leap_tracker.leap import wire
from leap_tracker.leap.api import LeapRequestError
from leap_tracker.meters.model import MeterSummary, MeterWatch
from leap_tracker.webhooks.ports import ProcessedWebhook


@dataclass
class MemoryWatches:
    """Watches by entry id; ``connections`` the snapshots (entry id -> Reference ID) ref-index lists
    with them. ``before_replace`` runs before each conditional replace (a test changes the watch
    there, as a concurrent check would)."""

    watches: dict[str, MeterWatch] = field(default_factory=dict)
    connections: dict[str, str] = field(default_factory=dict)
    before_replace: Callable[[MeterWatch], None] | None = None
    replaces: int = 0

    def create(self, watch: MeterWatch) -> bool:
        if watch.entry_id in self.watches:
            return False
        self.watches[watch.entry_id] = watch
        return True

    def get(self, entry_id: str) -> MeterWatch | None:
        return self.watches.get(entry_id)

    def replace(self, before: MeterWatch, after: MeterWatch) -> bool:
        if before.entry_id != after.entry_id:
            raise ValueError("replace() keeps the entry id")
        if self.before_replace is not None:
            self.before_replace(before)
        stored = self.watches.get(before.entry_id)
        if stored is None or (stored.sequence, stored.checks, stored.status) != (
            before.sequence,
            before.checks,
            before.status,
        ):
            return False
        self.watches[after.entry_id] = after
        self.replaces += 1
        return True

    def due_watches(self, now: datetime) -> Iterator[MeterWatch]:
        due = [w for w in self.watches.values() if w.is_open and w.due_at is not None and w.due_at <= now]
        yield from sorted(due, key=lambda w: (w.due_at, w.entry_id))

    def existing_connections(self, entry_ids: Sequence[str]) -> set[str]:
        return set(entry_ids) & set(self.connections)

    def open_watches_of_ref(self, ref_id: str) -> list[MeterWatch]:
        entries = sorted(e for e, w in self.watches.items() if w.ref_id == ref_id and e in self.connections)
        return [self.watches[e] for e in entries if self.watches[e].is_open]


@dataclass
class MemoryRememberedMeters:
    meters: dict[str, dict[str, MeterSummary]] = field(default_factory=dict)  # ref id -> meter id -> meter
    expires: dict[tuple[str, str], datetime] = field(default_factory=dict)
    recalls: int = 0

    def remember(
        self, ref_id: str, meters: Sequence[MeterSummary], now: datetime, expires_at: datetime
    ) -> None:
        for meter in meters:
            self.meters.setdefault(ref_id, {})[meter.meter_id] = meter
            self.expires[(ref_id, meter.meter_id)] = expires_at

    def recall(self, ref_id: str) -> list[MeterSummary]:
        self.recalls += 1
        kept = self.meters.get(ref_id, {})
        return [kept[meter_id] for meter_id in sorted(kept)]  # a Query returns them in sort-key order


@dataclass
class MemoryProcessedWebhooks:
    records: dict[str, ProcessedWebhook] = field(default_factory=dict)

    def get(self, event_id: str) -> ProcessedWebhook | None:
        return self.records.get(event_id)

    def record(self, processed: ProcessedWebhook) -> bool:
        if processed.event_id in self.records:
            return False
        self.records[processed.event_id] = processed
        return True


@dataclass
class FakeMeterSource:
    """A ``MeterSource``: meters by Reference ID, each visible from the ``visible_from``-th search on
    (0: at once); ``fail_with`` makes every search raise it."""

    meters: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    searches: list[tuple[list[str], str | None]] = field(default_factory=list)
    fail_with: Exception | None = None

    def add(
        self, ref_id: str, meter_id: str, created_at: str | None = None, visible_from: int = 0, **extra: Any
    ) -> dict[str, Any]:
        meter: dict[str, Any] = {
            wire.METER_ID: meter_id,
            wire.METER_CONNECTION_REFERENCES: [ref_id],
            wire.METER_UTILITY: {wire.UTILITY_NAME: "PGE"},
            "customer": {"street_1": "1 Private Road"},  # never published
            **extra,
        }
        if created_at is not None:
            meter[wire.METER_AUDIT] = {wire.METER_AUDIT_CREATED_AT: created_at}
        self.meters.append((meter, visible_from))
        return meter

    def search_by_connection_references(
        self, reference_ids: Sequence[str], created_after: str | None = None
    ) -> Iterator[dict[str, Any]]:
        if not all(wire.METERS_REFERENCE_ID_PATTERN.fullmatch(ref) for ref in reference_ids):
            raise LeapRequestError("400: connection_reference_ids")
        number = len(self.searches)
        self.searches.append((list(reference_ids), created_after))
        if self.fail_with is not None:
            raise self.fail_with
        for meter, visible_from in self.meters:
            if number >= visible_from and set(meter[wire.METER_CONNECTION_REFERENCES]) & set(reference_ids):
                yield meter


@dataclass
class RecordingPollRequests:
    requests: list[tuple[str, datetime]] = field(default_factory=list)

    def request(self, ref_id: str, received_at: datetime) -> None:
        self.requests.append((ref_id, received_at))
