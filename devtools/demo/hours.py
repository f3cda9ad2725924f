"""The hourly loop: each simulated hour the poller's schedule fires and all it set off is delivered,
then the template's other schedules; after a poll, the table and Leap's ground truth are read at the
same instant."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from devtools.demo.model import METER_SWEEP, POLLER, TABLE, TICK, DemoConfig, Hour, Received, Run
from devtools.demo.report import Report, hour_line
from devtools.demo.world import World
from devtools.local_runner import LocalCloud
from leap_tracker import table
from leap_tracker.adapters.dynamo import TableBatches, string_key
from leap_tracker.leap import wire
from leap_tracker.table import decode_stored_entry


@dataclass(frozen=True, slots=True)
class _Cadence:
    schedule_id: str
    every: timedelta


def _cadences(cloud: LocalCloud) -> tuple[list[_Cadence], list[_Cadence]]:
    """The poller's schedules, and every other schedule of the template (in a fixed order)."""
    polls, others = [], []
    for schedule_id in sorted(cloud.schedules):
        schedule = cloud.schedules[schedule_id]
        cadence = _Cadence(schedule_id, schedule_rate(schedule.expression))
        (polls if schedule.function == POLLER else others).append(cadence)
    if not polls:
        raise LookupError(f"template.yaml has no schedule for {POLLER}")
    return polls, others


def schedule_rate(expression: str) -> timedelta:
    """``rate(1 hour)`` -> 1 h. The demo steps hour by hour, so a rate must be whole hours."""
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression.strip())
    if match is None:
        raise ValueError(f"the demo plays rate(...) schedules only, not {expression!r}")
    amount, unit = int(match.group(1)), match.group(2).rstrip("s")
    every = timedelta(**{f"{unit}s": amount})
    if every < TICK or every % TICK:
        raise ValueError(f"{expression!r}: the demo steps one simulated hour at a time")
    return every


def _due(cadences: list[_Cadence], elapsed: timedelta) -> list[_Cadence]:
    return [cadence for cadence in cadences if elapsed % cadence.every == timedelta(0)]


HourHook = Callable[[int, datetime, Run], None]
# Called with the run and the next hour's instant before the clock goes there (devtools/demo/push.py
# steps to each moment something is due in between); None: the clock jumps an hour.
BetweenHours = Callable[[Run, datetime], None]


def run_hours(
    world: World,
    config: DemoConfig,
    progress: Report | None,
    before_hour: HourHook | None = None,
    after_hour: HourHook | None = None,
    between_hours: BetweenHours | None = None,
) -> Run:
    """Every simulated hour; the hooks are called with the hour's number (from 1), its instant and
    what was seen so far, before its schedules fire and after all they set off was delivered."""
    run = Run()
    polls, others = _cadences(world.cloud)
    for hour in range(1, config.hours + 1):
        if between_hours is None:
            now = world.cloud.advance(seconds=TICK.total_seconds())  # the simulator follows
        else:
            between_hours(run, world.cloud.now() + TICK)  # ends at that instant
            now = world.cloud.now()
        if before_hour is not None:
            before_hour(hour, now, run)
        seen = _one_hour(world, run, _due(polls, hour * TICK), _due(others, hour * TICK), now)
        if after_hour is not None:
            after_hour(hour, now, run)
        if progress is not None:
            progress.line(hour_line(seen))
    return run


def _one_hour(world: World, run: Run, polls: list[_Cadence], others: list[_Cadence], now: datetime) -> Hour:
    """Poll and deliver; then the other schedules and deliver; then look at the table and at Leap."""
    before = (len(run.inbox), len(world.webhook.deliveries))
    poll = _fire(world, run, polls, now)
    if polls:
        run.polls.append(now)
    _fire(world, run, others, now)
    if any(world.cloud.schedules[c.schedule_id].function == METER_SWEEP for c in others):
        run.sweeps.append(now)
    run.filtered += [Received(now, m) for m in world.cloud.drain_queue(world.filtered)]  # few: hourly
    if polls:
        _observe(world, run, now, poll)
    events = Counter(received.event["type"] for received in run.inbox[before[0] :])
    sent = [d for d in world.webhook.deliveries[before[1] :] if d.verified]
    tell_leap(world, run)
    return Hour(now, poll, events, len(sent))


def tell_leap(world: World, run: Run) -> None:
    """Tell the simulator of each message delivered since last told: outreach can move customers on
    (devtools/leap_simulator/nudges.py), as the partner's message would."""
    deliveries = world.webhook.deliveries
    for delivery in deliveries[run.told :]:
        if delivery.verified and 200 <= delivery.status < 300:
            event = delivery.event
            data = event["data"]
            world.leap.message(event["subject"], str(data["reason"]), str(data["variant"]), delivery.sent_at)
    run.told = len(deliveries)


def _fire(world: World, run: Run, cadences: list[_Cadence], now: datetime) -> dict[str, Any]:
    """Fire the schedules, then deliver all they set off; returns the last invocation's result."""
    result: dict[str, Any] = {}
    for cadence in cadences:
        schedule = world.cloud.schedules[cadence.schedule_id]
        before = world.leap.request_total
        record = world.cloud.fire_schedule(schedule.function, cadence.schedule_id)
        if schedule.function == METER_SWEEP:  # it runs alone: the webhook processor runs in deliver()
            searches = world.leap.requests_since(before)
            run.sweep_searches += [r for r in searches if r.path == wire.METERS_SEARCH_PATH]
        result = record.result if isinstance(record.result, dict) else {"error": repr(record.error)}
    if cadences:
        deliver(world, run, now)
    return result


def deliver(world: World, run: Run, now: datetime) -> None:
    """Drain the cloud, emptying the unfiltered partner queue after every delivery round.

    A partner consumes continuously, and in moto a receive costs more the deeper the queue (see
    docs/demo.md): letting it fill for a whole hour would slow the demo for nothing.
    """
    cloud = world.cloud
    while True:
        run.inbox += [Received(now, m) for m in cloud.drain_queue(world.everything)]
        if cloud.pump() == 0 and cloud.drain() == 0:  # drain(): settles a round that invoked nothing
            return


def _observe(world: World, run: Run, now: datetime, poll: Mapping[str, Any]) -> None:
    """The table's funnel, the poller's EntriesByStatus counts (what the dashboard shows) and Leap's
    ground truth at the same instant; the snapshot histories."""
    truth = world.leap.entries_at(now)
    stored = _stored_snapshots(world.cloud, [entry[wire.ENTRY_ID] for entry in truth])
    run.funnels.append((now, _statuses(stored), world.leap.status_counts(now)))
    counted = poll.get("entries_by_status")
    run.counted_funnels.append((now, None if counted is None else +Counter(counted)))
    for entry in truth:
        history = run.histories[entry[wire.ENTRY_REF_ID]]
        if not history or history[-1] != entry:
            history.append(entry)


def stored_entries(cloud: LocalCloud) -> dict[str, dict[str, Any]]:
    """Every connection snapshot in the table, by Reference ID (a runner client: not counted)."""
    pages = (
        cloud.client("dynamodb")
        .get_paginator("scan")
        .paginate(
            TableName=cloud.resources.table_name(TABLE),
            FilterExpression="begins_with(#pk, :prefix)",
            ProjectionExpression="#entry",
            ExpressionAttributeNames={"#pk": table.PK, "#entry": table.CONN_ENTRY},
            ExpressionAttributeValues={":prefix": {"S": table.CONNECTION_PREFIX}},
        )
    )
    entries = [decode_stored_entry(item[table.CONN_ENTRY]["B"]) for page in pages for item in page["Items"]]
    return {entry[wire.ENTRY_REF_ID]: entry for entry in entries}


def _stored_snapshots(cloud: LocalCloud, entry_ids: list[str]) -> list[dict[str, Any]]:
    """The stored snapshots of these entries (missing ones are left out). Far cheaper in moto than a
    scan of the whole table, which also holds outreach and meter items; the final check scans."""
    batches = TableBatches(cloud.client("dynamodb"), cloud.resources.table_name(TABLE))
    keys = [string_key(table.connection_key(entry_id)) for entry_id in dict.fromkeys(entry_ids)]
    items = batches.get(keys, projection=(table.CONN_ENTRY,), consistent=True)
    return [decode_stored_entry(item[table.CONN_ENTRY]["B"]) for item in items]


def _statuses(entries: Iterable[Mapping[str, Any]]) -> Counter[str]:
    return Counter(str(entry.get(wire.ENTRY_CONNECTION_STATUS)) for entry in entries)
