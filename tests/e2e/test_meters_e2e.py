"""Meter watches end to end: Leap simulator -> poller -> emitter -> connection.completed -> meter_watch
-> scheduled meter_sweep -> meter.* events on the topic, as a partner's queue receives them.

Ground truth is the simulator's: when each customer completes and when (if ever) their meters appear.
The simulated customers click within two days, so every completion, its 14-day horizon and all three
endings fit in about three simulated weeks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from devtools.leap_simulator import LeapSimulator
from devtools.local_runner import LocalCloud, PartnerMessage
from leap_tracker import table
from leap_tracker.adapters.watch_store import item_from_watch
from leap_tracker.config import MeterWatchSettings
from leap_tracker.events import catalog
from leap_tracker.leap import wire
from leap_tracker.meters import schedule
from leap_tracker.timeutil import format_instant
from tests.e2e.conftest import E2E_START

# The schedules' cadence here: coarser than production's hour (the rules do not depend on it).
POLL_STEP = timedelta(hours=6)  # poller and sweep, while Leap's data still changes
QUIET_STEP = timedelta(hours=12)  # the sweep alone, afterwards
RULES = MeterWatchSettings()  # the template's defaults: overdue at 72 h, give up at 14 days
METER_FILTER = {"type": [{"prefix": "meter."}]}  # as docs/meters.md suggests
# Seed 5, 24 customers clicking within 2 days: 15 complete; meters come fast for 10, late for 2 and
# never for 3.
METERS_SEED, METERS_CUSTOMERS, CLICK_WINDOW = 5, 24, timedelta(days=2)


@pytest.fixture
def leap() -> Iterator[LeapSimulator]:
    """Overrides conftest's: a population whose completions cluster (see the module doc)."""
    with LeapSimulator(
        seed=METERS_SEED, customers=METERS_CUSTOMERS, start=E2E_START, click_window=CLICK_WINDOW
    ) as simulator:
        yield simulator


def first_at_or_after(times: list[datetime], moment: datetime) -> datetime:
    return min((t for t in times if t >= moment), default=datetime.max.replace(tzinfo=moment.tzinfo))


def expected_endings(leap: LeapSimulator, ref: str, sweeps: list[datetime]) -> list[str]:
    """What a partner should receive for a completed connection, from the simulator's ground truth
    and the times the sweep ran (the first sweep at or after a moment is the check that sees it)."""
    completed = leap.completed_at(ref)
    assert completed is not None
    appear = leap.meters_appear_at(ref)
    overdue_check = first_at_or_after(sweeps, completed + timedelta(hours=RULES.overdue_hours))
    last_check = first_at_or_after(sweeps, completed + timedelta(days=RULES.give_up_days))
    if appear is not None and appear <= overdue_check:
        return [catalog.METER_APPEARED]
    if appear is not None and appear <= last_check:
        return [catalog.METER_OVERDUE, catalog.METER_APPEARED]
    return [catalog.METER_OVERDUE, catalog.METER_WATCH_EXPIRED]


def run_schedules(
    cloud: LocalCloud, leap: LeapSimulator, partner: str, end: datetime
) -> tuple[list[PartnerMessage], list[datetime]]:
    """Fire the poller and the sweep until ``end``: the poller only while Leap's data can still change
    (later polls would store nothing). Returns what the partner's queue received, and the sweep times."""
    last_change = max(leap.change_times(ref)[-1] for ref in leap.ref_ids)
    received: list[PartnerMessage] = []
    sweeps: list[datetime] = []
    while cloud.now() <= end:
        polling = cloud.now() <= last_change + POLL_STEP
        if polling:
            cloud.fire_schedule("PollerFunction")
            cloud.drain()
        cloud.fire_schedule("MeterSweepFunction")
        sweeps.append(cloud.now())
        cloud.drain()
        received += cloud.drain_queue(partner)  # often: the queue keeps messages only 4 days
        cloud.advance(hours=(POLL_STEP if polling else QUIET_STEP).total_seconds() / 3600)
    return received, sweeps


def test_every_completed_connection_gets_the_meter_events_its_meters_call_for(
    cloud: LocalCloud, leap: LeapSimulator
) -> None:
    # Outreach is not under test here and costs most of the run: it acknowledges and does nothing.
    cloud.override_handler("OutreachFunction", lambda _event, _context: {"batchItemFailures": []})
    partner = cloud.subscribe_queue("EventsTopic", METER_FILTER)
    completed = [ref for ref in leap.ref_ids if leap.completed_at(ref) is not None]
    end = max(leap.completed_at(ref) for ref in completed) + timedelta(days=RULES.give_up_days) + QUIET_STEP

    received, sweeps = run_schedules(cloud, leap, partner, end)

    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in received:
        events[message.body["subject"]].append(message.body)
    endings: dict[str, int] = defaultdict(int)
    for ref in completed:
        expected = expected_endings(leap, ref, sweeps)
        assert [e["type"] for e in events[ref]] == expected, ref
        endings[" then ".join(expected)] += 1
        if expected[-1] == catalog.METER_APPEARED:
            appeared = events[ref][-1]
            truth = leap.meters_of(ref)
            assert {m["meter_id"] for m in appeared["data"]["meters"]} == {m[wire.METER_ID] for m in truth}
            assert appeared["time"] == format_instant(leap.meters_appear_at(ref))  # when they came
    assert len(endings) == 3, endings  # the population covers all three endings
    assert set(events) <= set(completed)  # nothing for connections that never completed
    for message in received:
        event = message.body
        Draft202012Validator(catalog.json_schema(event["type"])).validate(event)
        assert message.attributes == catalog.message_attributes(event)
        assert "customer" not in str(event["data"])  # no address or personal data from Meters v2
    assert cloud.errors == []


def test_250_due_watches_take_3_meters_api_calls_per_sweep(cloud: LocalCloud, leap: LeapSimulator) -> None:
    """The sweep through the runner (template wiring, secrets, schedule input) against the simulator:
    its completed customers plus Reference IDs Leap knows nothing of, 250 watches due at once."""
    now = cloud.advance(days=30)
    completions = {ref: leap.completed_at(ref) for ref in leap.ref_ids if leap.completed_at(ref) is not None}
    completed = list(completions)
    refs = completed + [f"unknown-{n:04d}" for n in range(250 - len(completed))]
    watches = [
        schedule.new_watch(
            entry_id=f"CAISO_{n:04d}_{ref}",
            ref_id=ref,
            transmission_region="CAISO",
            completed_at=completions.get(ref) or now - timedelta(days=2),
            sequence=5,
            now=now,
            settings=RULES,
        )
        for n, ref in enumerate(refs)
    ]
    # Seeded as the poller and meter_watch would have written them (the stream is never drained here).
    connections = cloud.client("dynamodb")
    rows = [item_from_watch(w) for w in watches] + [
        {**table.connection_key(w.entry_id), table.ITEM_TYPE: table.CONNECTION_ITEM_TYPE} for w in watches
    ]
    _batch_put(connections, cloud.resources.table_name("ConnectionsTable"), rows)
    partner = cloud.subscribe_queue("EventsTopic", METER_FILTER)
    leap.reset_requests()

    record = cloud.fire_schedule("MeterSweepFunction")

    assert leap.requests[wire.METERS_SEARCH_PATH] == 3
    summary = record.result
    assert (summary["due"], summary["checked"], summary["meters_api_calls"]) == (250, 250, 3)
    appeared = {
        m.body["subject"] for m in cloud.drain_queue(partner) if m.body["type"] == catalog.METER_APPEARED
    }
    assert appeared == {ref for ref in completed if leap.meters_appear_at(ref) is not None}


def _batch_put(client: Any, table_name: str, items: list[dict[str, Any]]) -> None:
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    for start in range(0, len(items), 25):
        requests = [
            {"PutRequest": {"Item": {k: serializer.serialize(v) for k, v in item.items()}}}
            for item in items[start : start + 25]
        ]
        client.batch_write_item(RequestItems={table_name: requests})
