"""Test doubles for the poller (Connect source, store, metrics, clock), and tests of the doubles.

The in-memory store follows the ``PollerStore`` contract of the DynamoDB store (the integration
tests run the same contract checks against both), so the run logic can be tested without moto.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leap_tracker.leap import wire
from leap_tracker.leap.api import ConnectPage, ConnectQuery
from leap_tracker.poller.ports import (
    Checkpoint,
    LeaseHeld,
    LeaseLost,
    QuarantineRecord,
    SnapshotWrite,
    StoredState,
)

T0 = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)


def instant(moment: datetime) -> str:
    return moment.strftime(wire.WIRE_DATETIME_FORMAT)


def make_entry(
    ref_id: str = "ref-1",
    *,
    status: str = wire.CONNECTION_PARTIAL,
    last: datetime = T0 - timedelta(hours=2),
    region: str = "CAISO",
    utility_status: str = wire.UTILITY_NOT_CONNECTED,
    error_code: str | None = None,
    agreements: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A well-formed Connect entry in the shape of Leap's guide."""
    started = last - timedelta(days=1)
    return {
        wire.ENTRY_ID: f"{region}_62631455-9dfd-433b-9482-fd043f2336d4_{ref_id}",
        wire.ENTRY_TRANSMISSION_REGION: region,
        wire.ENTRY_REF_ID: ref_id,
        wire.ENTRY_START: instant(started),
        wire.ENTRY_LAST_INTERACTION: instant(last),
        wire.ENTRY_CONNECTION_STATUS: status,
        wire.ENTRY_UTILITY_CONNECTIONS: [
            {
                wire.UTILITY_AUTHORIZATION_UUID: "910bfb80-8b22-4341-8b5b-8752a21dccad",
                wire.UTILITY_NAME: "SDG&E: San Diego Gas & Electric",
                wire.UTILITY_IS_REQUIRED: True,
                wire.UTILITY_STATUS: utility_status,
                wire.UTILITY_ERROR_CODE: error_code,
                wire.UTILITY_START: instant(started),
                wire.UTILITY_LAST_INTERACTION: instant(last),
            }
        ],
        wire.ENTRY_AGREEMENTS: agreements
        or {
            wire.AGREEMENT_PROHIBITED_RESOURCE_ATTESTATION: wire.AGREEMENT_NOT_REQUIRED,
            wire.AGREEMENT_DEMAND_RESPONSE_PARTICIPATION: wire.AGREEMENT_NOT_REQUIRED,
        },
    }


def make_entries(count: int, *, last: datetime = T0 - timedelta(hours=2)) -> list[dict[str, Any]]:
    return [make_entry(f"ref-{n:05d}", last=last + timedelta(seconds=n)) for n in range(count)]


def pages_of(entries: Sequence[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [list(entries[start : start + size]) for start in range(0, len(entries), size)]


class FakeSource:
    """A ConnectSource over fixed pages. Tokens are "tok+/<n>=" (they need URL encoding, like Leap's).

    ``errors[n]`` is raised (once) when page n is asked for; every request is recorded.
    """

    def __init__(self, pages: Sequence[Sequence[dict[str, Any]]]) -> None:
        self.pages = [list(page) for page in pages]
        self.errors: dict[int, Exception] = {}
        self.requests: list[tuple[ConnectQuery, str | None]] = []

    def iter_pages(self, query: ConnectQuery, page_token: str | None = None) -> Iterator[ConnectPage]:
        position = int(page_token.removeprefix("tok+/").removesuffix("=")) if page_token else 0
        token = page_token
        while True:
            self.requests.append((query, token))
            error = self.errors.pop(position, None)
            if error is not None:
                raise error
            entries = copy.deepcopy(self.pages[position]) if position < len(self.pages) else []
            position += 1
            token = f"tok+/{position}=" if position < len(self.pages) else None
            yield ConnectPage(entries=entries, next_page_token=token)
            if token is None:
                return


@dataclass
class MemoryStore:
    """An in-memory PollerStore that counts what it is asked to write."""

    snapshots: dict[str, SnapshotWrite] = field(default_factory=dict)
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    checkpoints_saved: int = 0
    lease: tuple[str, datetime] | None = None
    written: list[tuple[str, int]] = field(default_factory=list)  # (entry id, sequence), in order
    write_calls: int = 0

    def acquire_lease(self, owner: str, now: datetime, until: datetime) -> None:
        if self.lease is not None and not self.lease[1] < now:
            raise LeaseHeld(*self.lease)
        self.lease = (owner, until)

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

    def read_snapshots(self, entry_ids: Sequence[str]) -> dict[str, StoredState]:
        return {
            entry_id: StoredState(write.entry.content_hash, write.sequence, write.entry.last_interaction)
            for entry_id in entry_ids
            if (write := self.snapshots.get(entry_id)) is not None
        }

    def write_changes(
        self, snapshots: Sequence[SnapshotWrite], quarantined: Sequence[QuarantineRecord], now: datetime
    ) -> None:
        self.write_calls += 1
        for write in snapshots:
            self.snapshots[write.entry.entry_id] = write
            self.written.append((write.entry.entry_id, write.sequence))
        self.quarantine.extend(quarantined)

    def sequence_of(self, entry_id: str) -> int:
        return self.snapshots[entry_id].sequence


class RecordingMetrics:
    def __init__(self) -> None:
        self.values: list[tuple[str, str, float]] = []

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.values.append((name, str(unit), value))

    def total(self, name: str) -> float:
        return sum(value for metric, _, value in self.values if metric == name)

    def names(self) -> set[str]:
        return {name for name, _, _ in self.values}


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


# --- the doubles behave like what they stand for ----------------------------------------------


def test_fake_source_resumes_from_a_token_and_ends_with_no_token() -> None:
    source = FakeSource([[make_entry("a")], [make_entry("b")], [make_entry("c")]])
    query = ConnectQuery(start_date="2015-01-01T00:00:00Z")
    first = next(source.iter_pages(query))
    assert first.next_page_token == "tok+/1="
    rest = list(source.iter_pages(query, first.next_page_token))
    assert [page.entries[0][wire.ENTRY_REF_ID] for page in rest] == ["b", "c"]
    assert rest[-1].next_page_token is None


def test_memory_store_lease_is_exclusive_until_it_expires() -> None:
    store = MemoryStore()
    store.acquire_lease("run-1", T0, T0 + timedelta(minutes=16))
    with pytest.raises(LeaseHeld, match="run-1"):
        store.acquire_lease("run-2", T0 + timedelta(minutes=5), T0 + timedelta(minutes=21))
    store.acquire_lease("run-2", T0 + timedelta(minutes=17), T0 + timedelta(minutes=33))
    with pytest.raises(LeaseLost):
        store.renew_lease("run-1", T0 + timedelta(minutes=40))
    assert store.release_lease("run-1") is False
    assert store.release_lease("run-2") is True
