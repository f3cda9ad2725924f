"""``make demo``: the whole product, locally, over a few simulated days, checked against ground truth.

The Leap simulator (a seeded population moving through the Connect funnel, meters appearing after
completion) answers on 127.0.0.1; template.yaml runs in moto through the local runner, which plays
Lambda (the table stream, the SQS queues, the schedules); a partner's webhook endpoint on 127.0.0.1
verifies every outreach signature. Nothing needs an AWS account, Docker or the network.

Every simulated hour: the clock moves one hour (the simulator follows), the poller's schedule fires,
everything it set off is delivered (stream -> emitter -> SNS -> queues -> outreach and meter_watch),
then the other schedules template.yaml declares (outreach follow-up, meter sweep) fire and their work
is delivered too. Two partner queues subscribed to the events topic (one with no filter, one with a
filter policy from docs/events.md) collect what a partner would receive.

At the end: a summary a partner would want, and ground-truth checks (PASS/FAIL) comparing what the
product did with what the simulator says happened. Same seed, same output (the wall-time line aside).

    python -m devtools.demo [--seed N] [--customers N] [--days N] [--start-offset HOURS]
                            [--click-days N] [--quiet] [--function-logs FILE]

docs/demo.md explains the output.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from devtools.leap_simulator import DEFAULT_START as CAMPAIGN_START
from devtools.leap_simulator import LeapSimulator
from devtools.local_runner import LocalCloud, PartnerMessage
from devtools.webhook_receiver import Delivery, WebhookReceiver
from leap_tracker import table
from leap_tracker.config import MeterWatchSettings, Settings, load_settings
from leap_tracker.events import catalog
from leap_tracker.events.diff import DiffRules, change_events
from leap_tracker.leap import wire
from leap_tracker.table import decode_stored_entry
from leap_tracker.timeutil import format_instant, parse_instant

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = PROJECT_ROOT / "template.yaml"
EVENTS_DOC = PROJECT_ROOT / "docs" / "events.md"

DEFAULT_SEED = 22
DEFAULT_CUSTOMERS = 300
DEFAULT_DAYS = 3
# The demo joins a campaign already running for a day: the first poll finds a backlog, and customers
# who completed before the demo started can reach meter.overdue (72 h) within three simulated days.
DEFAULT_START_OFFSET_HOURS = 24
DEFAULT_CLICK_DAYS = 4  # customers open their Connect URL over this many days from the campaign start

TICK = timedelta(hours=1)  # one simulated hour per step
BATCH_GET_LIMIT = 100  # keys per BatchGetItem
FUNNEL_EVERY = timedelta(hours=12)  # rows of the funnel table
FILTERED_POLICY = "errors-in-caiso"  # a ready filter policy of docs/events.md, shown on a second queue

# Logical ids of template.yaml the demo needs by name (every schedule is read from the runner).
EVENTS_TOPIC = "EventsTopic"
TABLE = "ConnectionsTable"
POLLER = "PollerFunction"
EMITTER = "EmitterFunction"
OUTREACH = "OutreachFunction"
METER_SWEEP = "MeterSweepFunction"

CHANGE_FAMILIES = ("connection", "utility", "agreement")  # what the emitter publishes
STATUS_ORDER = (
    wire.CONNECTION_NOT_STARTED,
    wire.CONNECTION_PARTIAL,
    wire.CONNECTION_ERROR,
    wire.CONNECTION_COMPLETED,
)


# ------------------------------------------------------------------------------------ what to run


@dataclass(frozen=True, slots=True)
class DemoConfig:
    seed: int = DEFAULT_SEED
    customers: int = DEFAULT_CUSTOMERS
    days: int = DEFAULT_DAYS
    start_offset_hours: int = DEFAULT_START_OFFSET_HOURS
    click_days: int = DEFAULT_CLICK_DAYS

    @property
    def start(self) -> datetime:
        return CAMPAIGN_START + timedelta(hours=self.start_offset_hours)

    @property
    def hours(self) -> int:
        return self.days * 24


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"


@dataclass(frozen=True, slots=True)
class DemoResult:
    config: DemoConfig
    report: str  # everything written to ``out``: deterministic for a given configuration
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]


# ---------------------------------------------------------------------------------- what was seen


@dataclass(frozen=True, slots=True)
class Received:
    at: datetime  # the simulated hour it was collected in
    message: PartnerMessage

    @property
    def event(self) -> dict[str, Any]:
        return self.message.body


@dataclass(frozen=True, slots=True)
class Hour:
    """One simulated hour: what the poll did and what a partner saw meanwhile."""

    at: datetime
    poll: Mapping[str, Any]
    events: Counter[str]  # by type, from the unfiltered partner queue
    messages_sent: int  # verified webhook deliveries


@dataclass
class Run:
    """Everything observed during the run, plus the ground truth read at the same instants."""

    polls: list[datetime] = field(default_factory=list)
    sweeps: list[datetime] = field(default_factory=list)
    funnels: list[tuple[datetime, Counter[str], Counter[str]]] = field(default_factory=list)  # table, truth
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    inbox: list[Received] = field(default_factory=list)  # the unfiltered partner queue
    filtered: list[Received] = field(default_factory=list)  # the queue with FILTERED_POLICY
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)  # ref id -> table snapshot, at the end

    @property
    def end(self) -> datetime:
        return self.polls[-1]


@dataclass(frozen=True, slots=True)
class World:
    """The three local parts, wired as tests/e2e/conftest.py wires them."""

    leap: LeapSimulator
    webhook: WebhookReceiver
    cloud: LocalCloud
    everything: str  # partner queue URLs
    filtered: str
    filter_policy: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rules:
    """The configuration the functions actually run with (template.yaml's environment)."""

    settings: Settings  # the outreach function's
    meters: MeterWatchSettings  # the meter sweep's
    diff: DiffRules  # the emitter's

    @property
    def actionable_delay(self) -> timedelta:
        return timedelta(minutes=self.settings.actionable_delay_minutes)


# ------------------------------------------------------------------------------------ entry points


def run_demo(
    seed: int = DEFAULT_SEED,
    customers: int = DEFAULT_CUSTOMERS,
    days: int = DEFAULT_DAYS,
    out: TextIO | None = None,
    *,
    start_offset_hours: int = DEFAULT_START_OFFSET_HOURS,
    click_days: int = DEFAULT_CLICK_DAYS,
    quiet: bool = False,
    function_logs: Path | None = None,
) -> DemoResult:
    """Run the product over ``days`` simulated days; write progress, summary and checks to ``out``.

    The functions' own output (logs, EMF metrics) is discarded, or appended to ``function_logs``.
    """
    config = DemoConfig(seed, customers, days, start_offset_hours, click_days)
    report = _Report(out or sys.stdout)  # taken before stdout is redirected for the functions
    report.line(_headline(config))
    with _functions_output_to(function_logs), _world(config) as world:
        rules = _rules(world.cloud)
        run = _run_hours(world, config, report if not quiet else None)
        run.stored = _stored_entries(world.cloud)
        summary = _summary(world, run, rules)
        checks = tuple(_checks(world, run, rules))
    report.block(summary)
    report.block(["Ground-truth checks", *(check.line() for check in checks)])
    return DemoResult(config, report.text(), checks)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    result = run_demo(
        args.seed,
        args.customers,
        args.days,
        sys.stdout,
        start_offset_hours=args.start_offset,
        click_days=args.click_days,
        quiet=args.quiet,
        function_logs=args.function_logs,
    )
    print(f"\n---\nwall time: {time.perf_counter() - started:.1f} s (the only line that varies between runs)")
    return 0 if result.passed else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.demo",
        description="Run leap-connect-tracker locally (moto + the Leap simulator) and check it against "
        "the simulator's ground truth. Exits 1 when a check fails.",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="simulator seed (default %(default)s)")
    parser.add_argument("--customers", type=_positive, default=DEFAULT_CUSTOMERS, help="default %(default)s")
    parser.add_argument(
        "--days", type=_positive, default=DEFAULT_DAYS, help="simulated days (default %(default)s)"
    )
    parser.add_argument(
        "--start-offset",
        type=_not_negative,
        default=DEFAULT_START_OFFSET_HOURS,
        metavar="HOURS",
        help="hours the campaign has been running when the demo starts (default %(default)s)",
    )
    parser.add_argument(
        "--click-days",
        type=_positive,
        default=DEFAULT_CLICK_DAYS,
        help="customers click over this many days from the campaign start (default %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no line per simulated hour, only the summary")
    parser.add_argument(
        "--function-logs",
        type=Path,
        metavar="FILE",
        help="append the functions' output (JSON logs, EMF metrics) to FILE instead of discarding it",
    )
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _headline(config: DemoConfig) -> str:
    return (
        f"leap-connect-tracker demo: seed {config.seed}, {config.customers} customers clicking over "
        f"{config.click_days} days from {_clock(CAMPAIGN_START)}; {config.days} simulated days of hourly "
        f"runs from {_clock(config.start)} (UTC)"
    )


class _Report:
    """Writes to ``out`` as it goes and keeps a copy (the deterministic report)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lines: list[str] = []

    def line(self, text: str) -> None:
        self._lines.append(text)
        print(text, file=self._out, flush=True)

    def block(self, lines: Iterable[str]) -> None:
        self.line("")
        for text in lines:
            self.line(text)

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


# ---------------------------------------------------------------------------------- the local world


@contextmanager
def _world(config: DemoConfig) -> Iterator[World]:
    click_window = timedelta(days=config.click_days)
    leap = LeapSimulator(config.seed, config.customers, start=CAMPAIGN_START, click_window=click_window)
    with leap, WebhookReceiver() as webhook:
        cloud = LocalCloud(
            TEMPLATE,
            start=config.start,
            parameters={
                "LeapApiBaseUrl": leap.base_url,
                "OutreachChannels": "webhook",  # the demo's partner takes outreach on a signed webhook
                "OutreachWebhookUrl": webhook.url,
            },
            secrets={"LeapApiKeySecretArn": leap.api_key, "OutreachWebhookSecretArn": webhook.secret},
        )
        with cloud:
            leap.set_time(cloud.now())
            cloud.on_advance(lambda now, _delta: leap.set_time(now))  # Leap answers as of the same instant
            scope, policy = doc_filter_policy(FILTERED_POLICY)
            yield World(
                leap=leap,
                webhook=webhook,
                cloud=cloud,
                everything=cloud.subscribe_queue(EVENTS_TOPIC, name="partner-everything"),
                filtered=cloud.subscribe_queue(EVENTS_TOPIC, policy, scope=scope, name="partner-filtered"),
                filter_policy=policy,
            )


class _FunctionOutput(io.TextIOBase):
    """Where the functions' stdout goes during the run: their JSON log lines and EMF metrics (one
    document per invocation) would bury the demo's own lines. Discarded, or appended to a file.

    One object for the whole process: Powertools' Logger keeps the stream it found at import.
    """

    def __init__(self) -> None:
        super().__init__()
        self.target: TextIO | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.target is not None:
            self.target.write(text)
        return len(text)


_FUNCTION_OUTPUT = _FunctionOutput()


@contextmanager
def _functions_output_to(path: Path | None) -> Iterator[None]:
    with ExitStack() as stack:
        _FUNCTION_OUTPUT.target = stack.enter_context(path.open("a", encoding="utf-8")) if path else None
        stack.callback(setattr, _FUNCTION_OUTPUT, "target", None)
        stack.enter_context(redirect_stdout(_FUNCTION_OUTPUT))
        yield


def doc_filter_policy(name: str, doc: Path = EVENTS_DOC) -> tuple[str, dict[str, Any]]:
    """(scope, policy) of a ready filter policy published in docs/events.md, by its name."""
    fence = re.compile(r"```json filter-policy name=(\S+) scope=(\S+)\n(.*?)```", re.DOTALL)
    for found, scope, body in fence.findall(doc.read_text(encoding="utf-8")):
        if found == name:
            return scope, json.loads(body)
    raise LookupError(f"{doc} publishes no filter policy named {name!r}")


def _rules(cloud: LocalCloud) -> Rules:
    def settings_of(function: str) -> Settings:
        return load_settings(cloud.functions[function].full_environment())

    return Rules(
        settings=settings_of(OUTREACH),
        meters=settings_of(METER_SWEEP).meters,
        diff=DiffRules.from_settings(settings_of(EMITTER)),
    )


# ------------------------------------------------------------------------------------ the hours


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


def _run_hours(world: World, config: DemoConfig, progress: _Report | None) -> Run:
    run = Run()
    polls, others = _cadences(world.cloud)
    for hour in range(1, config.hours + 1):
        now = world.cloud.advance(seconds=TICK.total_seconds())  # the simulator follows
        seen = _one_hour(world, run, _due(polls, hour * TICK), _due(others, hour * TICK), now)
        if progress is not None:
            progress.line(_hour_line(seen))
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
        _observe(world, run, now)
    events = Counter(received.event["type"] for received in run.inbox[before[0] :])
    sent = [d for d in world.webhook.deliveries[before[1] :] if d.verified]
    return Hour(now, poll, events, len(sent))


def _fire(world: World, run: Run, cadences: list[_Cadence], now: datetime) -> dict[str, Any]:
    """Fire the schedules, then deliver all they set off; returns the last invocation's result."""
    result: dict[str, Any] = {}
    for cadence in cadences:
        schedule = world.cloud.schedules[cadence.schedule_id]
        record = world.cloud.fire_schedule(schedule.function, cadence.schedule_id)
        result = record.result if isinstance(record.result, dict) else {"error": repr(record.error)}
    if cadences:
        _deliver(world, run, now)
    return result


def _deliver(world: World, run: Run, now: datetime) -> None:
    """Drain the cloud, emptying the unfiltered partner queue after every delivery round.

    A partner consumes continuously, and in moto a receive costs more the deeper the queue (see
    docs/demo.md): letting it fill for a whole hour would slow the demo for nothing.
    """
    cloud = world.cloud
    while True:
        run.inbox += [Received(now, m) for m in cloud.drain_queue(world.everything)]
        if cloud.pump() == 0 and cloud.drain() == 0:  # drain(): settles a round that invoked nothing
            return


def _observe(world: World, run: Run, now: datetime) -> None:
    """The table's funnel and Leap's ground truth at the same instant; the snapshot histories."""
    truth = world.leap.entries_at(now)
    stored = _stored_snapshots(world.cloud, [entry[wire.ENTRY_ID] for entry in truth])
    run.funnels.append((now, _statuses(stored), world.leap.status_counts(now)))
    for entry in truth:
        history = run.histories[entry[wire.ENTRY_REF_ID]]
        if not history or history[-1] != entry:
            history.append(entry)


def _stored_entries(cloud: LocalCloud) -> dict[str, dict[str, Any]]:
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
    client, name = cloud.client("dynamodb"), cloud.resources.table_name(TABLE)
    found: list[dict[str, Any]] = []
    for start in range(0, len(entry_ids), BATCH_GET_LIMIT):
        keys = [_key(table.connection_key(i)) for i in entry_ids[start : start + BATCH_GET_LIMIT]]
        request = {
            name: {
                "Keys": keys,
                "ProjectionExpression": "#entry",
                "ConsistentRead": True,
                "ExpressionAttributeNames": {"#entry": table.CONN_ENTRY},
            }
        }
        while request:
            answer = client.batch_get_item(RequestItems=request)
            found += [decode_stored_entry(item[table.CONN_ENTRY]["B"]) for item in answer["Responses"][name]]
            request = answer.get("UnprocessedKeys") or {}
    return found


def _key(key: Mapping[str, str]) -> dict[str, dict[str, str]]:
    return {name: {"S": value} for name, value in key.items()}


def _statuses(entries: Iterable[Mapping[str, Any]]) -> Counter[str]:
    return Counter(str(entry.get(wire.ENTRY_CONNECTION_STATUS)) for entry in entries)


# ------------------------------------------------------------------------------- progress lines


def _hour_line(hour: Hour) -> str:
    events = hour.events
    changes = {t: n for t, n in events.items() if _family(t) in CHANGE_FAMILIES}
    return "  ".join(
        (
            _clock(hour.at),
            f"{_poll_text(hour.poll):<32}",
            f"changes {sum(changes.values()):>4}: {_compact(changes) or '-'}",
            f"| outreach sent {hour.messages_sent} suppressed {events[catalog.OUTREACH_SUPPRESSED]}",
            f"| meters appeared {events[catalog.METER_APPEARED]} overdue {events[catalog.METER_OVERDUE]}",
        )
    )


def _poll_text(poll: Mapping[str, Any]) -> str:
    if not poll:
        return "no poll"
    if poll.get("status") != "completed":
        return f"poll {poll.get('status', 'failed')}: {poll.get('reason') or poll.get('error', '')}"[:32]
    seen, changed = poll.get("entries_seen", 0), poll.get("changed", 0)
    return f"poll {poll.get('pass', '?'):<11} seen {seen:>3} changed {changed:>3}"


def _compact(counts: Mapping[str, int]) -> str:
    return " ".join(f"{_short(t)} {counts[t]}" for t in _catalog_order(counts))


def _short(event_type: str) -> str:
    """connection.partial -> partial, utility.error -> u.error, agreement.pending -> a.pending."""
    family, _, name = event_type.partition(".")
    return name if family == "connection" else f"{family[0]}.{name}"


def _family(event_type: str) -> str:
    return event_type.partition(".")[0]


def _catalog_order(types: Iterable[str]) -> list[str]:
    order = {name: position for position, name in enumerate(catalog.CATALOG)}
    return sorted(types, key=lambda t: (order.get(t, len(order)), t))


def _pair(table_value: int, truth_value: int) -> str:
    return f"{table_value:>4} |{truth_value:>4}"


def _minutes(span: timedelta) -> str:
    return f"{int(span.total_seconds() // 60)} min"


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


# --------------------------------------------------------------------------------------- summary


def _summary(world: World, run: Run, rules: Rules) -> list[str]:
    return [
        *_funnel_table(run),
        "",
        *_events_table(world, run),
        "",
        *_outreach_table(world, run),
        "",
        *_meters_table(world, run, rules),
        "",
        *_calls_table(world),
    ]


def _table(header: tuple[str, ...], rows: Iterable[tuple[Any, ...]], widths: tuple[int, ...]) -> list[str]:
    def fmt(cells: tuple[Any, ...]) -> str:
        first, *rest = cells
        text = f"  {first!s:<{widths[0]}}" + "".join(
            f"{cell!s:>{width}}" for cell, width in zip(rest, widths[1:], strict=True)
        )
        return text.rstrip()

    return [fmt(header), *(fmt(row) for row in rows)]


def _funnel_table(run: Run) -> list[str]:
    statuses = [*STATUS_ORDER, *sorted({s for _, t, g in run.funnels for s in (*t, *g)} - set(STATUS_ORDER))]
    rows = [
        (_clock(at), *(_pair(stored[s], truth[s]) for s in statuses), _pair(stored.total(), truth.total()))
        for at, stored, truth in _funnel_rows(run)
    ]
    return [
        "Funnel by connection_status: the table's snapshots | Leap's ground truth, at the same instant",
        *_table(("time (UTC)", *statuses, "total"), rows, (18, *(14 for _ in statuses), 14)),
    ]


def _funnel_rows(run: Run) -> list[tuple[datetime, Counter[str], Counter[str]]]:
    first = run.funnels[0][0]
    chosen = [row for row in run.funnels if (row[0] - first) % FUNNEL_EVERY == timedelta(0)]
    return chosen if chosen[-1] is run.funnels[-1] else [*chosen, run.funnels[-1]]


def _events_table(world: World, run: Run) -> list[str]:
    counts = Counter(r.event["type"] for r in run.inbox)
    unique = len({r.event["id"] for r in run.inbox})
    filtered = Counter(r.event["type"] for r in run.filtered)
    rows = [(t, counts[t], filtered[t] or "") for t in _catalog_order(counts)]
    return [
        "Events a partner received, by type: a queue with no filter | a queue with the filter policy "
        f"{FILTERED_POLICY!r}",
        f"  (docs/events.md: {json.dumps(world.filter_policy, sort_keys=True)})",
        *_table(("type", "no filter", FILTERED_POLICY), rows, (26, 11, 17)),
        *_table(("total", f"{counts.total()}", f"{filtered.total()}"), [], (26, 11, 17)),
        f"  ({unique} distinct event ids: {counts.total() - unique} duplicate deliveries)",
    ]


def _outreach_table(world: World, run: Run) -> list[str]:
    accepted = world.webhook.accepted()
    by_reason: dict[str, Counter[str]] = defaultdict(Counter)
    for delivery in accepted:
        data = delivery.event["data"]
        by_reason[str(data["reason"])]["reminder" if data.get("reminder") else "first"] += 1
    rows = [(r, c.total(), c["first"], c["reminder"]) for r, c in sorted(by_reason.items())]
    total = sum(by_reason.values(), Counter())
    suppressed = Counter(
        r.event["data"]["suppressed_because"]
        for r in run.inbox
        if r.event["type"] == catalog.OUTREACH_SUPPRESSED
    )
    return [
        "Outreach: messages the partner's webhook endpoint received and verified, by reason",
        *_table(("reason", "messages", "first", "reminders"), rows, (34, 10, 8, 11)),
        *_table(("total", total.total(), total["first"], total["reminder"]), [], (34, 10, 8, 11)),
        f"  ({len(world.webhook.deliveries)} deliveries, {len(world.webhook.rejected())} with a bad "
        "signature)",
        "Considered and not sent (outreach.suppressed audit events), by cause",
        *_table(("cause", "events"), sorted(suppressed.items()), (34, 10)),
    ]


def _meters_table(world: World, run: Run, rules: Rules) -> list[str]:
    truth = _meter_truth(world.leap, run, rules.meters)
    got = _meter_events(run)
    completed = len(truth)
    appeared_by_end = sum(1 for t in truth.values() if t.appear is not None and t.appear <= run.end)
    waiting = completed - len(got[catalog.METER_APPEARED]) - len(got[catalog.METER_WATCH_EXPIRED])
    rows = [
        ("connections completed (watches)", completed, f"{completed} completed by the last poll"),
        (
            catalog.METER_APPEARED,
            len(got[catalog.METER_APPEARED]),
            f"{appeared_by_end} had meters by the end, {sum(t.must_appear for t in truth.values())} "
            "early enough that a sweep must have found them",
        ),
        (
            catalog.METER_OVERDUE,
            len(got[catalog.METER_OVERDUE]),
            f"{sum(t.expect_overdue for t in truth.values())} overdue by the rules",
        ),
        (catalog.METER_WATCH_EXPIRED, len(got[catalog.METER_WATCH_EXPIRED]), ""),
        ("still waiting at the end", waiting, ""),
    ]
    return [
        "Meters: events on the topic | the simulator's ground truth (meter rules from template.yaml: first "
        f"check {rules.meters.first_check_hours} h, overdue {rules.meters.overdue_hours} h, give up "
        f"{rules.meters.give_up_days} d)",
        *_table(("", "events", "  ground truth"), [(a, b, f"  {c}") for a, b, c in rows], (32, 8, 2)),
    ]


def _calls_table(world: World) -> list[str]:
    cloud, leap = world.cloud, world.leap
    aws = sorted(cloud.aws_calls.items())
    http = sorted(leap.requests.items())
    errors = Counter(record.function for record in cloud.errors)
    invocations = sorted(cloud.invocation_counts.items())
    return [
        "AWS calls the functions made, by service and operation",
        *_table(("call", "count"), [(f"{s}.{op}", n) for (s, op), n in aws], (40, 8)),
        *_table(("total", sum(n for _, n in aws)), [], (40, 8)),
        "HTTP requests to Leap, by endpoint",
        *_table(("endpoint", "count"), http, (40, 8)),
        "Invocations, by function",
        *_table(("function", "count", "failed"), [(f, n, errors[f]) for f, n in invocations], (40, 8, 8)),
    ]


# ---------------------------------------------------------------------------------------- checks


@dataclass(frozen=True, slots=True)
class _MeterTruth:
    """One customer who completed by the last poll, with what the meter rules imply for them."""

    ref_id: str
    completed: datetime
    appear: datetime | None  # when Leap shows the meters; None: never
    must_appear: bool  # found early enough that some sweep must have checked after it
    expect_overdue: bool


def _meter_truth(leap: LeapSimulator, run: Run, rules: MeterWatchSettings) -> dict[str, _MeterTruth]:
    """The meter rules of docs/meters.md applied to the simulator's ground truth.

    A watch opens in the hour of the first poll that sees COMPLETED; its first check is due
    ``first_check_hours`` after completion (at once if that is past). From then on two checks are never
    further apart than the longest wait (``max_retry_hours`` before the overdue moment,
    ``overdue_retry_hours`` after it), and a check is pulled in to the overdue moment; a check runs at
    the first sweep at or after its due time. So meters that appeared at A are certainly found if a
    sweep ran at or after max(first check, A) + the longest wait; and the first check at or after the
    overdue moment (or the first check, if later) publishes meter.overdue when no meter is there yet.
    """
    found: dict[str, _MeterTruth] = {}
    for ref_id in leap.ref_ids:
        completed = leap.completed_at(ref_id)
        opened = None if completed is None else _first_at_or_after(run.polls, completed)
        if completed is not None and opened is not None:
            appear = leap.meters_appear_at(ref_id)
            first_check = max(completed + timedelta(hours=rules.first_check_hours), opened)
            found[ref_id] = _MeterTruth(
                ref_id=ref_id,
                completed=completed,
                appear=appear,
                must_appear=_certainly_found(completed, first_check, appear, run.sweeps, rules),
                expect_overdue=_overdue_expected(completed, first_check, appear, run.sweeps, rules),
            )
    return found


def _certainly_found(
    completed: datetime,
    first_check: datetime,
    appear: datetime | None,
    sweeps: list[datetime],
    rules: MeterWatchSettings,
) -> bool:
    if appear is None or not sweeps:
        return False
    longest_wait = timedelta(hours=max(rules.max_retry_hours, rules.overdue_retry_hours))
    horizon = completed + timedelta(days=rules.give_up_days)
    return max(first_check, appear) + longest_wait <= min(sweeps[-1], horizon)


def _overdue_expected(
    completed: datetime,
    first_check: datetime,
    appear: datetime | None,
    sweeps: list[datetime],
    rules: MeterWatchSettings,
) -> bool:
    """The first check at or after the overdue moment found no meter (and came before the horizon)."""
    check = _first_at_or_after(sweeps, max(completed + timedelta(hours=rules.overdue_hours), first_check))
    horizon = completed + timedelta(days=rules.give_up_days)
    return check is not None and check < horizon and (appear is None or appear > check)


def _first_at_or_after(moments: list[datetime], moment: datetime) -> datetime | None:
    return next((m for m in moments if m >= moment), None)


def _meter_events(run: Run) -> dict[str, dict[str, list[Received]]]:
    """meter.* type -> ref id -> deliveries (first delivery of each event id)."""
    found: dict[str, dict[str, list[Received]]] = defaultdict(lambda: defaultdict(list))
    seen: set[str] = set()
    for received in run.inbox:
        event = received.event
        if _family(event["type"]) == "meter" and event["id"] not in seen:
            seen.add(event["id"])
            found[event["type"]][event["subject"]].append(received)
    return found


def _checks(world: World, run: Run, rules: Rules) -> Iterator[Check]:
    yield _clean_run(world)
    yield _funnel_matches(run)
    yield _snapshots_match(world.leap, run)
    yield _events_match(run, rules.diff)
    yield _filter_applied(world, run)
    yield from _meter_checks(world.leap, run, rules.meters)
    yield from _outreach_checks(world, run, rules)


def _check(name: str, problems: list[str], ok_detail: str) -> Check:
    if not problems:
        return Check(name, True, ok_detail)
    shown = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
    return Check(name, False, f"{len(problems)} problem(s): {shown}")


def _clean_run(world: World) -> Check:
    cloud = world.cloud
    problems = [f"{r.function} failed at {_clock(r.at)}: {r.error!r}" for r in cloud.errors]
    for output, url in sorted(cloud.outputs.items()):
        if output.endswith("QueueUrl") and (left := cloud.drain_queue(url, delete=False)):
            problems.append(f"{len(left)} message(s) in {output}")
    problems += [f"async event dropped: {event['function']}" for event in cloud.dropped_async_events]
    problems += [f"simulator error: {error!r}" for error in world.leap.server_errors]
    return _check(
        "clean run",
        problems,
        f"{len(cloud.invocations)} invocations, none failed; failure and dead-letter queues empty",
    )


def _funnel_matches(run: Run) -> Check:
    problems = [
        f"{_clock(at)}: table {dict(stored)} != Leap {dict(truth)}"
        for at, stored, truth in run.funnels
        if stored != truth
    ]
    return _check(
        "funnel = ground truth", problems, f"the table's funnel equals Leap's at all {len(run.funnels)} polls"
    )


def _snapshots_match(leap: LeapSimulator, run: Run) -> Check:
    truth = {entry[wire.ENTRY_REF_ID]: entry for entry in leap.entries_at(run.end)}
    problems = [f"{ref}: missing from the table" for ref in sorted(truth.keys() - run.stored.keys())]
    problems += [f"{ref}: not at Leap" for ref in sorted(run.stored.keys() - truth.keys())]
    problems += [
        f"{ref}: differs" for ref in sorted(truth.keys() & run.stored.keys()) if truth[ref] != run.stored[ref]
    ]
    return _check(
        "snapshots = ground truth",
        problems,
        f"all {len(truth)} stored snapshots equal Leap's entries at the last poll ({_clock(run.end)})",
    )


def _events_match(run: Run, rules: DiffRules) -> Check:
    """The unfiltered queue got exactly the change events the ground-truth histories imply."""
    expected: dict[str, dict[str, Any]] = {}
    for history in run.histories.values():
        previous = None
        for sequence, entry in enumerate(history, start=1):
            expected |= {e["id"]: e for e in change_events(previous, entry, sequence, rules)}
            previous = entry
    got = [r.event for r in run.inbox if _family(r.event["type"]) in CHANGE_FAMILIES]
    ids = [event["id"] for event in got]
    problems = [
        f"missing {expected[i]['type']} for {expected[i]['subject']}"
        for i in sorted(expected.keys() - set(ids))
    ]
    problems += [f"unexpected {e['type']} for {e['subject']}" for e in got if e["id"] not in expected]
    problems += [f"delivered {n} times: {i}" for i, n in Counter(ids).items() if n > 1]
    problems += [
        f"{e['type']} for {e['subject']} differs"
        for e in got
        if e["id"] in expected and expected[e["id"]] != e
    ]
    return _check(
        "events = ground truth",
        problems,
        f"the partner got exactly the {len(expected)} change events Leap's histories imply, once each",
    )


def _filter_applied(world: World, run: Run) -> Check:
    policy = world.filter_policy
    want = sorted(r.event["id"] for r in run.inbox if _matches(policy, r.message.attributes))
    got = sorted(r.event["id"] for r in run.filtered)
    problems = (
        [] if want == got else [f"filtered queue has {len(got)} events, the matching subset {len(want)}"]
    )
    return _check(
        "filter policy",
        problems,
        f"the {FILTERED_POLICY!r} queue got exactly the {len(got)} matching events of the unfiltered queue",
    )


def _matches(policy: Mapping[str, Any], attributes: Mapping[str, str]) -> bool:
    """An exact-value attribute policy (the only kind the demo shows)."""
    for name, allowed in policy.items():
        if not all(isinstance(value, str) for value in allowed):
            raise ValueError(f"the demo checks exact-value filter policies only, not {policy}")
        if attributes.get(name) not in allowed:
            return False
    return True


def _meter_checks(leap: LeapSimulator, run: Run, rules: MeterWatchSettings) -> Iterator[Check]:
    truth = _meter_truth(leap, run, rules)
    events = _meter_events(run)
    appeared = events[catalog.METER_APPEARED]
    problems = [
        f"{ref}: meter events without a completion" for t in events.values() for ref in t if ref not in truth
    ]
    problems += [f"{ref}: {len(got)} meter.appeared" for ref, got in appeared.items() if len(got) > 1]
    for ref, got in appeared.items():
        problems += _appeared_problems(leap, truth.get(ref), got[0])
    problems += [
        f"{ref}: meters at {_clock(t.appear)} never reported"  # type: ignore[arg-type]
        for ref, t in truth.items()
        if t.must_appear and ref not in appeared
    ]
    yield _check(
        "meter.appeared",
        problems,
        f"{len(appeared)} customers, once each, each after Leap showed their meters; none missed "
        f"({sum(t.must_appear for t in truth.values())} certain)",
    )
    overdue = events[catalog.METER_OVERDUE]
    expected = {ref for ref, t in truth.items() if t.expect_overdue}
    problems = [f"{ref}: meter.overdue not expected" for ref in sorted(overdue.keys() - expected)]
    problems += [f"{ref}: meter.overdue missing" for ref in sorted(expected - overdue.keys())]
    problems += [f"{ref}: {len(got)} meter.overdue" for ref, got in overdue.items() if len(got) > 1]
    horizon = timedelta(days=rules.give_up_days)
    problems += [
        f"{ref}: meter.watch_expired before the horizon"
        for ref, got in events[catalog.METER_WATCH_EXPIRED].items()
        if ref not in truth or got[0].at < truth[ref].completed + horizon
    ]
    yield _check(
        "meter.overdue",
        problems,
        f"exactly the {len(expected)} customers without meters at their first check from "
        f"{rules.overdue_hours} h after completion; no watch expired early",
    )


def _appeared_problems(leap: LeapSimulator, truth: _MeterTruth | None, received: Received) -> list[str]:
    if truth is None:
        return []
    ref, event = truth.ref_id, received.event
    if truth.appear is None or truth.appear > received.at:
        return [f"{ref}: meter.appeared at {_clock(received.at)} before Leap had meters"]
    meters = {m["meter_id"] for m in event["data"]["meters"]}
    problems = (
        [] if meters == {m[wire.METER_ID] for m in leap.meters_of(ref)} else [f"{ref}: wrong meter ids"]
    )
    if event["time"] != format_instant(truth.appear):
        problems.append(f"{ref}: time {event['time']} is not when the meters appeared")
    return problems


def _outreach_checks(world: World, run: Run, rules: Rules) -> Iterator[Check]:
    deliveries, outreach = world.webhook.deliveries, rules.settings.outreach
    problems = [f"{d.webhook_id}: bad signature ({d.error})" for d in deliveries if not d.verified]
    problems += [f"{d.webhook_id}: answered {d.status}" for d in deliveries if d.verified and d.status >= 300]
    problems += [
        f"{i}: delivered {n} times" for i, n in Counter(d.webhook_id for d in deliveries).items() if n > 1
    ]
    audited = {r.event["data"]["webhook_id"] for r in run.inbox if r.event["type"] == catalog.OUTREACH_SENT}
    received = {d.webhook_id for d in deliveries if d.verified}
    problems += (
        [f"{len(received ^ audited)} message(s) without their outreach.sent audit"]
        if received ^ audited
        else []
    )
    yield _check(
        "outreach delivery",
        problems,
        f"{len(deliveries)} messages, every signature verified, no webhook-id twice, each audited by "
        "outreach.sent",
    )
    yield _check(
        "outreach timing",
        list(_timing_problems(world.leap, deliveries, rules)),
        f"nobody messaged once COMPLETED or before last interaction + {_minutes(rules.actionable_delay)}; "
        f"at most {outreach.max_attempts} messages each, {outreach.cooldown_hours} h apart",
    )
    stalled, problems = _unconsidered(world, run, rules)
    yield _check(
        "stalled customers considered",
        problems,
        f"each of the {stalled} customers stalled at the end (actionable for 1 h or more) got a message or "
        "an outreach.suppressed with its cause",
    )


def _sent_at(delivery: Delivery) -> datetime:
    """When it was sent: the webhook-timestamp (the simulated clock)."""
    return datetime.fromtimestamp(int(delivery.timestamp), UTC)


def _timing_problems(leap: LeapSimulator, deliveries: list[Delivery], rules: Rules) -> Iterator[str]:
    outreach = rules.settings.outreach
    by_customer: dict[str, list[datetime]] = defaultdict(list)
    for delivery in (d for d in deliveries if d.verified):
        ref, sent = delivery.event["subject"], _sent_at(delivery)
        by_customer[ref].append(sent)
        entry = leap.snapshot(ref, at=sent)
        if entry is None:
            yield f"{ref}: messaged at {_clock(sent)}, before Leap had an entry"
            continue
        if entry.get(wire.ENTRY_CONNECTION_STATUS) == wire.CONNECTION_COMPLETED:
            yield f"{ref}: messaged at {_clock(sent)} while COMPLETED"
        if sent < parse_instant(entry[wire.ENTRY_LAST_INTERACTION]) + rules.actionable_delay:
            yield f"{ref}: messaged at {_clock(sent)}, before the last interaction was an hour old"
    for ref, times in sorted(by_customer.items()):
        if len(times) > outreach.max_attempts:
            yield f"{ref}: {len(times)} messages"
        gaps = [later - earlier for earlier, later in zip(sorted(times), sorted(times)[1:], strict=False)]
        if any(gap < timedelta(hours=outreach.cooldown_hours) for gap in gaps):
            yield f"{ref}: two messages within the cooldown"


def _unconsidered(world: World, run: Run, rules: Rules) -> tuple[int, list[str]]:
    """Customers not COMPLETED at the end, actionable for a whole hour, with no decision on record."""
    considered = {d.event["subject"] for d in world.webhook.accepted()}
    considered |= {r.event["subject"] for r in run.inbox if r.event["type"] == catalog.OUTREACH_SUPPRESSED}
    stalled = [
        ref
        for ref, entry in run.stored.items()
        if entry.get(wire.ENTRY_CONNECTION_STATUS) != wire.CONNECTION_COMPLETED
        and parse_instant(entry[wire.ENTRY_LAST_INTERACTION]) + rules.actionable_delay + TICK <= run.end
    ]
    return len(stalled), [
        f"{ref}: no message and no outreach.suppressed" for ref in sorted(stalled) if ref not in considered
    ]


if __name__ == "__main__":
    raise SystemExit(main())
