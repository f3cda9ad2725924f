"""The report: the headline, one progress line per simulated hour, and the summary tables."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TextIO

from devtools.demo.checks import meter_events, meter_truth
from devtools.demo.model import CHANGE_FAMILIES, FILTERED_POLICY, DemoConfig, Hour, Run, clock, family
from devtools.demo.world import Rules, World
from devtools.leap_simulator import DEFAULT_START as CAMPAIGN_START
from leap_tracker.events import catalog
from leap_tracker.leap import wire

FUNNEL_EVERY = timedelta(hours=12)  # rows of the funnel table
STATUS_ORDER = (
    wire.CONNECTION_NOT_STARTED,
    wire.CONNECTION_PARTIAL,
    wire.CONNECTION_ERROR,
    wire.CONNECTION_COMPLETED,
)


def headline(config: DemoConfig) -> str:
    return (
        f"leap-connect-tracker demo: seed {config.seed}, {config.customers} customers clicking over "
        f"{config.click_days} days from {clock(CAMPAIGN_START)}; {config.days} simulated days of hourly "
        f"runs from {clock(config.start)} (UTC)"
    )


class Report:
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


# ------------------------------------------------------------------------------- progress lines


def hour_line(hour: Hour) -> str:
    events = hour.events
    changes = {t: n for t, n in events.items() if family(t) in CHANGE_FAMILIES}
    return "  ".join(
        (
            clock(hour.at),
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


def _catalog_order(types: Iterable[str]) -> list[str]:
    order = {name: position for position, name in enumerate(catalog.CATALOG)}
    return sorted(types, key=lambda t: (order.get(t, len(order)), t))


def _pair(table_value: int, truth_value: int) -> str:
    return f"{table_value:>4} |{truth_value:>4}"


# --------------------------------------------------------------------------------------- summary


def summary_tables(world: World, run: Run, rules: Rules) -> list[str]:
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
        (clock(at), *(_pair(stored[s], truth[s]) for s in statuses), _pair(stored.total(), truth.total()))
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
    truth = meter_truth(world.leap, run, rules.meters)
    got = meter_events(run)
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
