"""Leap's webhooks in the demo (docs/webhooks.md, docs/demo.md#webhooks).

The receiver is registered as an operator registers it (``leap-tracker webhooks register`` against the
simulator's Subscription API), then the simulator pushes through the runner's function URL, with
faults. Between two hours the clock goes to every moment something is due (a delivery Leap sends, a
delayed or retried queue message, an asynchronous retry), so a targeted poll two minutes after a
webhook happens two minutes after it, not at the next hour.

Half of Leap's deliveries are lost (the simulator's ``missed`` fault): the same run then measures a
meter or a Connect change whose webhook arrived beside one whose webhook never came, which is what the
product does without webhooks (the hourly poll and the meter sweep alone).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from devtools.demo.model import Check, Received, Run
from devtools.demo.recovery import cli_clients
from devtools.demo.world import World
from devtools.leap_simulator import LeapSimulator
from devtools.leap_simulator.webhooks import WebhookDelivery, WebhookFault, WebhookFaults
from devtools.local_runner import LocalCloud
from leap_tracker.events import catalog
from leap_tracker.leap import wire
from leap_tracker_cli import main as leap_tracker

RECEIVER = "WebhookReceiverFunction"
PROCESSOR = "WebhookProcessorFunction"
COMMAND = ("webhooks", "register")
# Seeded like the rest of the simulator. ``missed`` splits the run in two (see the module docstring).
DEMO_WEBHOOK_FAULTS = WebhookFaults(missed=0.5, duplicate=0.1, out_of_order=0.1, wrong_secret=0.05)
CONNECT_TYPES = (wire.WEBHOOK_CONNECT_SESSION_UPDATED, wire.WEBHOOK_AUTHORIZATION_UPDATED)


@dataclass
class Push:
    """What the demo did with webhooks, and what it saw of them."""

    registration: dict[str, Any] = field(default_factory=dict)  # the command's JSON answer
    status: int | None = None  # the command's exit status
    steps: int = 0  # moments stepped to between hours
    seen_requests: int = 0  # Leap's request_total when targeted polls were last looked for


def register(world: World, push: Push) -> None:
    """``leap-tracker webhooks register`` as an operator runs it; Leap then pushes with the demo's faults."""
    push.status, push.registration = register_receiver(world.cloud, world.leap, DEMO_WEBHOOK_FAULTS)


def register_receiver(
    cloud: LocalCloud, leap: LeapSimulator, faults: WebhookFaults
) -> tuple[int, dict[str, Any]]:
    """``leap-tracker webhooks register`` with what an operator's shell would hold for a local run; then
    the simulator pushes through the runner's function URL, with ``faults``. The command's exit status
    and JSON answer. (The demo and the soak both register this way.)"""
    environ = {
        "WEBHOOK_RECEIVER_URL": cloud.function_url(RECEIVER),
        "WEBHOOK_SECRET_ARN": cloud.resources["WebhookSecret"].ref,
        "LEAP_API_BASE_URL": leap.base_url,
        "LEAP_API_KEY": leap.api_key,
    }
    out = io.StringIO()
    status = leap_tracker.main([*COMMAND, "--json"], environ=environ, client=cli_clients(cloud), out=out)
    registration = json.loads(out.getvalue()) if out.getvalue().strip() else {}
    leap.set_webhook_transport(_through_function_url(cloud))
    leap.set_webhook_faults(faults)
    return status, registration


def _through_function_url(cloud: LocalCloud) -> Callable[[str, Mapping[str, str], bytes], int]:
    def transport(url: str, headers: Mapping[str, str], body: bytes) -> int:
        status, _headers, _body = cloud.call_function_url(url, "POST", headers, body)
        return status

    return transport


def step_until(world: World, run: Run, push: Push, until: datetime, deliver: Callable[..., None]) -> None:
    """The demo's steps between two hours: each moment's deliveries, then its targeted polls observed."""

    def at(moment: datetime) -> None:
        deliver(world, run, moment)
        observe_targeted_polls(world, run, push)

    push.steps += step_due(world.cloud, world.leap, until, at)


def step_due(
    cloud: LocalCloud, leap: LeapSimulator, until: datetime, on_moment: Callable[[datetime], None]
) -> int:
    """Go to each moment before ``until`` at which something is due, push what Leap sends then and call
    ``on_moment`` (which delivers what it sets off); then to ``until`` (its hour's schedules are the
    caller's). How many moments were stepped to."""
    steps = 0
    while True:
        due = [m for m in (leap.next_webhook_at(), cloud.next_due()) if m is not None]
        moment = min(due, default=None)
        if moment is None or moment >= until:
            break
        # On a grid (what falls due within a step goes together, in batches, as a poller of a queue
        # would take it), and never behind the clock: a function's duration may have moved it past.
        moment = max(on_grid(moment), cloud.now())
        if moment >= until:
            break
        cloud.advance(seconds=(moment - cloud.now()).total_seconds())
        leap.push_due_webhooks(moment)
        on_moment(moment)
        steps += 1
    cloud.advance(seconds=max(0.0, (until - cloud.now()).total_seconds()))
    return steps


STEP = timedelta(minutes=10)


def on_grid(moment: datetime) -> datetime:
    """The next STEP boundary at or after ``moment``."""
    seconds = STEP.total_seconds()
    return datetime.fromtimestamp(-(-moment.timestamp() // seconds) * seconds, moment.tzinfo)


def observe_targeted_polls(world: World, run: Run, push: Push) -> None:
    """Leap's state at each targeted poll, into the histories the events check compares with: a poll
    of one Reference ID stores what Leap answered then, which no hourly poll may ever see."""
    requests = world.leap.requests_since(push.seen_requests)
    push.seen_requests += len(requests)
    ref_param = wire.ConnectWire().param_ref_id
    for request in requests:
        for ref_id in request.query.get(ref_param, []):
            run.targeted_polls[ref_id].append(request.at)
            entry = world.leap.snapshot(ref_id, request.at)
            history = run.histories[ref_id]
            if entry is not None and (not history or history[-1] != entry):
                history.append(entry)


# --- the figures ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latency:
    count: int
    median: timedelta | None
    p95: timedelta | None

    @classmethod
    def of(cls, values: Iterable[timedelta]) -> Latency:
        ordered = sorted(values)
        if not ordered:
            return cls(0, None, None)
        return cls(len(ordered), _quantile(ordered, 0.5), _quantile(ordered, 0.95))

    def text(self) -> str:
        if not self.count:
            return "none"
        return f"{self.count:4d}, median {_duration(self.median)}, p95 {_duration(self.p95)}"


def _quantile(ordered: Sequence[timedelta], p: float) -> timedelta:
    """The nearest-rank quantile (a value that happened)."""
    rank = max(1, -(-len(ordered) * p // 1))
    return ordered[int(rank) - 1]


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    minutes = value.total_seconds() / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


@dataclass(frozen=True, slots=True)
class PushFigures:
    meter_pushed: Latency  # meter.created delivered
    meter_lost: Latency  # meter.created never delivered: the sweep found the meter
    change_pushed: Latency  # a Connect change with a connect_session webhook delivered
    change_lost: Latency  # no webhook delivered for it: the hourly poll found it
    lookups_pushed: float | None  # the sweep's Reference ID lookups per watch
    lookups_lost: float | None
    watches_pushed: int
    watches_lost: int
    sweep_calls: int
    processor_calls: int


def _delivered(
    deliveries: Iterable[WebhookDelivery], types: Sequence[str]
) -> dict[tuple[str, datetime], bool]:
    """(Reference ID, moment) -> whether any webhook of those types about it was delivered."""
    found: dict[tuple[str, datetime], bool] = {}
    for delivery in deliveries:
        if delivery.event_type in types:
            key = (delivery.partner_reference, delivery.happened_at)
            found[key] = found.get(key, False) or delivery.delivered
    return found


def figures(world: World, run: Run, push: Push) -> PushFigures:
    deliveries = world.leap.webhook_deliveries
    meters = _delivered(deliveries, (wire.WEBHOOK_METER_CREATED,))
    appeared = _first_arrivals(run.inbox, lambda e: e["type"] == catalog.METER_APPEARED)
    meter_latency: dict[bool, list[timedelta]] = {True: [], False: []}
    for (ref_id, created), was_delivered in meters.items():
        if ref_id in appeared and appeared[ref_id] >= created:
            meter_latency[was_delivered].append(appeared[ref_id] - created)
    change_latency = _change_latencies(world, run, _delivered(deliveries, CONNECT_TYPES))
    arm = {ref_id: delivered for (ref_id, _), delivered in meters.items()}
    lookups = {True: 0, False: 0}
    for request in run.sweep_searches:
        for ref_id in request.body.get(wire.METERS_REQ_CONNECTION_REFERENCE_IDS) or []:
            if ref_id in arm:
                lookups[arm[ref_id]] += 1
    watches = {flag: sum(1 for d in arm.values() if d is flag) for flag in (True, False)}
    searches = world.leap.requests[wire.METERS_SEARCH_PATH]
    return PushFigures(
        Latency.of(meter_latency[True]),
        Latency.of(meter_latency[False]),
        Latency.of(change_latency[True]),
        Latency.of(change_latency[False]),
        lookups[True] / watches[True] if watches[True] else None,
        lookups[False] / watches[False] if watches[False] else None,
        watches[True],
        watches[False],
        len(run.sweep_searches),
        searches - len(run.sweep_searches),
    )


def _first_arrivals(
    inbox: Iterable[Received], wanted: Callable[[dict[str, Any]], bool]
) -> dict[str, datetime]:
    first: dict[str, datetime] = {}
    for received in inbox:
        event = received.event
        if wanted(event):
            first.setdefault(str(event["subject"]), received.at)
    return first


def _change_latencies(
    world: World, run: Run, pushed: Mapping[tuple[str, datetime], bool]
) -> dict[bool, list[timedelta]]:
    """From a change of a customer's entry (the simulator's moment) to the first change event carrying
    that state; a change superseded before any poll saw it has no event and is left out."""
    arrivals: dict[str, list[tuple[datetime, str]]] = {}
    for received in run.inbox:
        event = received.event
        connection = (event.get("data") or {}).get("connection")
        if event["type"].startswith("connection.") and isinstance(connection, Mapping):
            arrivals.setdefault(str(event["subject"]), []).append(
                (received.at, str(connection.get(wire.ENTRY_LAST_INTERACTION)))
            )
    latency: dict[bool, list[timedelta]] = {True: [], False: []}
    for ref_id in world.leap.ref_ids:
        for moment in world.leap.change_times(ref_id):
            entry = world.leap.snapshot(ref_id, moment)
            if entry is None:
                continue
            state = str(entry.get(wire.ENTRY_LAST_INTERACTION))
            found = [at for at, seen in arrivals.get(ref_id, []) if seen == state and at >= moment]
            if found:
                latency[pushed.get((ref_id, moment), False)].append(min(found) - moment)
    return latency


def figure_lines(numbers: PushFigures, push: Push) -> list[str]:
    def per_watch(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    answer = push.registration
    rows = [
        ("", "webhook delivered", "no webhook (poll, sweep)"),
        ("meter created -> meter.appeared", numbers.meter_pushed.text(), numbers.meter_lost.text()),
        ("Connect change -> its event", numbers.change_pushed.text(), numbers.change_lost.text()),
        ("sweep lookups per meter watch", per_watch(numbers.lookups_pushed), per_watch(numbers.lookups_lost)),
    ]
    return [
        "Webhooks (push) beside the hourly poll and the meter sweep (pull): docs/webhooks.md",
        f"  subscription {answer.get('webhook_id')} {answer.get('action')} for "
        f"{len(answer.get('event_types', []))} event types (exit status {push.status})",
        "  $ leap-tracker webhooks register --stack-name <your stack>",
        "  half of Leap's deliveries are lost on purpose: the same run, with and without a webhook",
        *(f"  {name:32}{pushed:>34}   {lost:>34}" for name, pushed, lost in rows),
        f"  Meters API calls: the sweep {numbers.sweep_calls}, the webhook processor's confirmations "
        f"{numbers.processor_calls}; {push.steps} moments stepped to between the hours",
        *_saved(numbers),
    ]


def _saved(numbers: PushFigures) -> list[str]:
    """What a delivered meter.created saves the sweep, per watch and at the Meters API's 100 a call."""
    if numbers.lookups_pushed is None or numbers.lookups_lost is None:
        return []
    fewer = numbers.lookups_lost - numbers.lookups_pushed
    return [
        f"  a delivered meter.created saves the sweep {fewer:.1f} lookups a watch: "
        f"{fewer * 10:.0f} Meters API calls per 1,000 completed connections"
    ]


def _fate(ref_id: str, via: Mapping[bool, set[str]]) -> str:
    return "delivered" if ref_id in via[True] else "lost"


def push_check(world: World, run: Run) -> Check:
    """Every meter Leap created got exactly one meter.appeared, whether its webhook came or not;
    duplicates and out-of-order deliveries changed nothing; every wrong-secret call was refused."""
    deliveries = world.leap.webhook_deliveries
    problems: list[str] = []
    appeared: dict[str, int] = {}
    for received in run.inbox:
        if received.event["type"] == catalog.METER_APPEARED:
            appeared[str(received.event["subject"])] = appeared.get(str(received.event["subject"]), 0) + 1
    meters = [d for d in deliveries if d.event_type == wire.WEBHOOK_METER_CREATED]
    via: dict[bool, set[str]] = {True: set(), False: set()}
    for delivery in meters:
        via[delivery.delivered].add(delivery.partner_reference)
    for ref_id in sorted(via[True] | via[False]):
        count = appeared.get(ref_id, 0)
        # Delivered: reported at once. Lost: at most once, and the meter.appeared check holds the sweep
        # to finding it when its rules say it must have (a meter late in the run may still be due).
        if count > 1 or (ref_id in via[True] and count != 1):
            problems.append(f"{ref_id}: {count} meter.appeared, its meter.created {_fate(ref_id, via)}")
    wrong = [a for d in deliveries for a in d.attempts if a.fault is WebhookFault.WRONG_SECRET]
    problems += [
        f"a wrong-secret call at {a.at:%d %H:%M} answered {a.status}" for a in wrong if a.status != 401
    ]
    # Each answer 2xx is one message on WebhookQueue, and nothing else is: a refused call sends none.
    accepted = sum(1 for d in deliveries for a in d.attempts if a.accepted)
    enqueued = sum(
        r.usage["calls:sqs.SendMessage"] for r in world.cloud.invocations if r.function == RECEIVER
    )
    if enqueued != accepted:
        problems.append(f"{enqueued} messages enqueued for {accepted} deliveries answered 2xx")
    duplicates = sum(1 for d in deliveries if WebhookFault.DUPLICATE in d.faults and d.delivered)
    reordered = sum(1 for d in deliveries if WebhookFault.OUT_OF_ORDER in d.faults and d.delivered)
    name = "meter webhooks"
    if problems:
        return Check(name, False, f"{len(problems)} problem(s): {'; '.join(problems[:5])}")
    return Check(
        name,
        True,
        f"{len(meters)} meter.created for {len(via[True] | via[False])} customers: reported once each where "
        f"delivered ({len(via[True])}), never twice where lost (the sweep's); {duplicates} duplicated "
        f"and {reordered} reordered deliveries changed nothing; {len(wrong)} wrong-secret calls refused "
        f"401; {enqueued} messages enqueued for the {accepted} calls answered 2xx",
    )
