"""One seed of the soak: bring the world up, play the hours with the plan's faults, collect, check."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from devtools.demo.push import on_grid, register_receiver, step_due
from devtools.leap_simulator import DEFAULT_START as CAMPAIGN_START
from devtools.leap_simulator import LeapSimulator
from devtools.leap_simulator.webhooks import WebhookFault, WebhookFaults
from devtools.local_runner import LocalCloud, function_urls
from devtools.local_runner.stack import ACCOUNT_ID
from devtools.soak import observe
from devtools.soak.injectors import Handled, Injectors
from devtools.soak.invariants import Result, check_all
from devtools.soak.observe import Observations
from devtools.soak.plan import (
    EMITTER,
    METER_SWEEP,
    OUTREACH,
    POLLER,
    Fault,
    last_fault_hour,
    listing_order,
    make_plan,
    webhook_faults,
)
from devtools.soak.plants import Plant
from devtools.soak.timeline import Timeline
from devtools.webhook_receiver import WebhookReceiver
from leap_tracker import table
from leap_tracker.adapters.dynamo import TableBatches, string_key
from leap_tracker.config import load_settings
from leap_tracker.events.diff import DiffRules, change_events
from leap_tracker.leap import wire
from leap_tracker.timeutil import parse_instant

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = PROJECT_ROOT / "template.yaml"
TABLE = "ConnectionsTable"
TICK = timedelta(hours=1)
DEFAULT_CUSTOMERS = 120
START_OFFSET = timedelta(hours=24)  # join a campaign running for a day: a backlog on the first poll
CLICK_WINDOW = timedelta(days=3)
# Incremental passes read a few to a few dozen entries: pages of 5 make most passes several pages, so
# page tokens (and Leap expiring them) are in play every hour, not only in the daily full pass.
PAGE_SIZE = 5
WEBHOOK_TIMEOUT_SECONDS = 1.0  # a hung endpoint costs a second of wall time, not ten
# Within each hour: deliver now, then at these minutes (async retries come 1 and 2 minutes after a
# failure; SQS redelivers after a visibility timeout), and in between at every moment something falls
# due (a webhook Leap sends, a delayed or invisible queue message), on devtools/demo/push.py's grid.
SETTLE_MINUTES = (1, 3, 6, 12, 20, 35, 50)


@dataclass
class SeedReport:
    seed: int
    hours: int
    plan: list[Fault]
    timeline: Timeline
    results: list[Result]
    invocations: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return sum(len(r.violations) for r in self.results)


def run_seed(
    seed: int, hours: int, customers: int = DEFAULT_CUSTOMERS, plant: Plant | None = None
) -> SeedReport:
    """One seed, deterministic: the same seed arms the same faults at the same simulated moments."""
    plan = make_plan(seed, hours)
    if plant is not None:
        plan = sorted([*plan, *plant.faults(hours)], key=lambda f: f.hour)
    timeline = Timeline()
    pushes = webhook_faults(seed) if plant is None else plant.webhook_faults(seed)
    with _world(seed, customers, pushes) as (leap, webhook, cloud, partner):
        with ExitStack() as stack:
            stack.enter_context(plant.apply(cloud, timeline) if plant else nullcontext())
            injectors = stack.enter_context(Injectors(cloud, leap, webhook, timeline))
            obs = _play(cloud, leap, webhook, partner, injectors, plan, hours)
        results = check_all(obs)
        return SeedReport(seed, hours, plan, timeline, results, invocations=len(cloud.invocations))


@contextmanager
def _world(
    seed: int, customers: int, pushes: WebhookFaults
) -> Iterator[tuple[LeapSimulator, WebhookReceiver, LocalCloud, str]]:
    leap = LeapSimulator(
        seed, customers, start=CAMPAIGN_START, click_window=CLICK_WINDOW, listing_order=listing_order(seed)
    )
    with leap, WebhookReceiver() as webhook:
        cloud = LocalCloud(
            TEMPLATE,
            start=CAMPAIGN_START + START_OFFSET,
            parameters={
                "LeapApiBaseUrl": leap.base_url,
                "OutreachChannels": "webhook",
                "OutreachWebhookUrl": webhook.url,
            },
            secrets={"LeapApiKeySecretArn": leap.api_key, "OutreachWebhookSecretArn": webhook.secret},
        )
        with cloud:
            leap.set_time(cloud.now())
            cloud.on_advance(lambda now, _delta: leap.set_time(now))
            cloud.set_env(OUTREACH, OUTREACH_WEBHOOK_TIMEOUT_SECONDS=str(WEBHOOK_TIMEOUT_SECONDS))
            cloud.set_env(POLLER, LEAP_PAGE_SIZE=str(PAGE_SIZE))  # several pages a run: page tokens in play
            status, _answer = register_receiver(cloud, leap, pushes)
            if status != 0:
                raise RuntimeError(f"leap-tracker webhooks register exited {status}")
            yield leap, webhook, cloud, cloud.subscribe_queue("EventsTopic")


def _play(
    cloud: LocalCloud,
    leap: LeapSimulator,
    webhook: WebhookReceiver,
    partner: str,
    injectors: Injectors,
    plan: list[Fault],
    hours: int,
) -> Observations:
    start = cloud.now()
    stop = last_fault_hour(plan)
    obs = Observations(start=start, end=start, faults_stop=start + stop * TICK + TICK, rules=_rules(cloud))
    cadences = [(s_id, _rate(s.expression)) for s_id, s in sorted(cloud.schedules.items())]
    cadences.sort(key=lambda c: cloud.schedules[c[0]].function != POLLER)  # the poll first

    def deliver(_moment: datetime) -> None:
        _deliver(cloud, partner, obs)

    views: list[observe.AlarmView] = []  # the last hour's
    for hour in range(1, hours + 1):
        top = start + hour * TICK
        _advance_to(cloud, top)
        faults = [f for f in plan if f.hour == hour]
        injectors.arm(faults)
        requests_before = leap.request_total
        for schedule_id, every in cadences:
            if (hour * TICK) % every == timedelta(0):
                cloud.fire_schedule(cloud.schedules[schedule_id].function, schedule_id)
        _deliver(cloud, partner, obs)
        for minute in SETTLE_MINUTES:
            _settle(cloud, leap, top + timedelta(minutes=minute), deliver)
        step_due(cloud, leap, top + TICK, deliver)  # the hour's faults stay armed to its end
        injectors.disarm()
        _deliver(cloud, partner, obs)
        obs.hours.append(_hour_view(cloud, leap, top, requests_before, clean=not faults))
        views = _alarm_views(cloud, views)
        obs.alarms += views
    obs.end = cloud.now()
    _collect(cloud, leap, webhook, injectors, obs)
    return obs


def _settle(
    cloud: LocalCloud, leap: LeapSimulator, moment: datetime, deliver: Callable[[datetime], None]
) -> None:
    """Step to each moment due before ``moment`` (on the grid), then deliver at ``moment`` too, unless
    nothing falls due by then: the last delivery left nothing deliverable, and a round that finds
    nothing costs a receive per queue."""
    webhook, waiting = leap.next_webhook_at(), cloud.next_due()
    due = [m for m in (webhook and on_grid(webhook), waiting) if m is not None]
    if not due or min(due) > moment:
        _advance_to(cloud, moment)
        return
    step_due(cloud, leap, moment, deliver)
    deliver(moment)


def _advance_to(cloud: LocalCloud, moment: Any) -> None:
    if cloud.now() < moment:
        cloud.advance(seconds=(moment - cloud.now()).total_seconds())


def _deliver(cloud: LocalCloud, partner: str, obs: Observations) -> None:
    """Deliver until nothing is left now, then read the partner's queue (reading it sets nothing off;
    one round that finds nothing ends a drain, where a pump and a drain took two)."""
    cloud.drain()
    obs.arrivals += [observe.Arrival(cloud.now(), m.body) for m in cloud.drain_queue(partner)]


def _rate(expression: str) -> timedelta:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression.strip())
    if match is None:
        raise ValueError(f"the soak plays rate(...) schedules only, not {expression!r}")
    every = timedelta(**{f"{match.group(2).rstrip('s')}s": int(match.group(1))})
    if every % TICK:
        raise ValueError(f"{expression!r}: the soak steps whole hours")
    return every


def _rules(cloud: LocalCloud) -> observe.Rules:
    settings = load_settings(cloud.functions[OUTREACH].full_environment())
    meters = load_settings(cloud.functions[METER_SWEEP].full_environment()).meters
    poller = load_settings(cloud.functions[POLLER].full_environment()).poller
    return observe.Rules(
        actionable_delay=timedelta(minutes=settings.actionable_delay_minutes),
        max_attempts=settings.outreach.max_attempts,
        cooldown=timedelta(hours=settings.outreach.cooldown_hours),
        first_check=timedelta(hours=meters.first_check_hours),
        longest_meter_wait=timedelta(hours=max(meters.max_retry_hours, meters.overdue_retry_hours)),
        give_up=timedelta(days=meters.give_up_days),
        holdout_percent=settings.outreach.holdout_percent,
        holdout=timedelta(hours=settings.outreach.holdout_hours),
        max_continuations=poller.max_continuations,
    )


def _hour_view(
    cloud: LocalCloud, leap: LeapSimulator, polled: datetime, requests_before: int, clean: bool
) -> observe.HourView:
    """The table now against Leap at the poll's instant (a clean hour's poll ran then, once), or, for a
    customer a targeted poll read later in the hour, at that poll's request."""
    truth = {e[wire.ENTRY_ID]: observe.entry_hash(e) for e in leap.entries_at(polled)}
    ref_param = leap.connect_wire.param_ref_id
    for request in leap.requests_since(requests_before):
        for ref_id in request.query.get(ref_param, []):
            entry = leap.snapshot(ref_id, request.at)
            if entry is not None:
                truth[entry[wire.ENTRY_ID]] = observe.entry_hash(entry)
    batches = TableBatches(cloud.client("dynamodb"), cloud.resources.table_name(TABLE))
    keys = [string_key(table.connection_key(entry_id)) for entry_id in truth]
    stored = {}
    for item in batches.get(keys, projection=(table.CONN_ENTRY,), consistent=True):
        entry = table.decode_stored_entry(item[table.CONN_ENTRY]["B"])
        stored[entry[wire.ENTRY_ID]] = observe.entry_hash(entry)
    return observe.HourView(polled, clean, truth, stored)


_PARKING = ("DeadLetter", "Failure", "Rejected")  # what a queue's output is named when it parks messages


def _parking_queues(cloud: LocalCloud) -> dict[str, str]:
    """Every dead-letter, failure or rejected-webhook queue the stack outputs: queue name -> URL."""
    return {
        url.rsplit("/", 1)[-1]: url
        for output, url in sorted(cloud.outputs.items())
        if output.endswith("QueueUrl") and any(word in output for word in _PARKING)
    }


def _alarm_views(cloud: LocalCloud, before: list[observe.AlarmView]) -> list[observe.AlarmView]:
    """Each parking queue's depth now, with the states of the alarms on it. The alarms are evaluated
    (which reads every alarm's queue) only when there is something new to judge: some queue holds
    messages, and not every queue is as deep as in the views ``before`` with its alarm in ALARM then.
    Nothing consumes these queues: the same depth is the same messages, so the same states."""
    from moto.sqs.models import sqs_backends

    queues = sqs_backends[ACCOUNT_ID][cloud.region].queues  # visible + in flight, as SQS counts them
    depths = {name: sum(not m.delayed for m in queues[name]._messages) for name in _parking_queues(cloud)}
    previous = {view.queue: view for view in before}

    def unchanged(name: str, depth: int) -> bool:
        view = previous.get(name)
        return view is not None and view.depth == depth and (not depth or "ALARM" in view.alarm_states)

    states: dict[str, tuple[str, ...]] = {}
    if any(depths.values()) and all(unchanged(name, depth) for name, depth in depths.items()):
        states = {name: previous[name].alarm_states for name in depths}
    elif any(depths.values()):
        evaluations = cloud.evaluate_alarms()
        states = {name: tuple(e.state for e in evaluations if e.queue == name) for name in depths}
    now = cloud.now()
    return [observe.AlarmView(now, name, depth, states.get(name, ())) for name, depth in depths.items()]


def _collect(
    cloud: LocalCloud, leap: LeapSimulator, webhook: WebhookReceiver, injectors: Injectors, obs: Observations
) -> None:
    client, name = cloud.client("dynamodb"), cloud.resources.table_name(TABLE)
    for page in client.get_paginator("scan").paginate(TableName=name, ConsistentRead=True):
        for item in page["Items"]:
            pk = item[table.PK]["S"]
            if pk.startswith(table.HISTORY_PREFIX):
                previous, new = table.decode_stored_change(item[table.HISTORY_CHANGE]["B"])
                obs.history.append(
                    observe.StoredChange(
                        table.entry_id_from_history_pk(pk),
                        int(item[table.HISTORY_SEQUENCE]["N"]),
                        previous,
                        new,
                        parse_instant(item[table.HISTORY_WRITTEN_AT]["S"]),
                    )
                )
            elif pk.startswith(table.CONNECTION_PREFIX) and table.CONN_ENTRY in item:
                entry = table.decode_stored_entry(item[table.CONN_ENTRY]["B"])
                obs.final_stored[entry[wire.ENTRY_ID]] = entry
            elif pk.startswith(table.WEBHOOK_PREFIX):  # the processor's record of a delivery
                outcome = item[table.WEBHOOK_OUTCOME]["S"]
                obs.processed_webhooks[pk.removeprefix(table.WEBHOOK_PREFIX)] = outcome
    rules = DiffRules.from_settings(load_settings(cloud.functions[EMITTER].full_environment()))
    for change in sorted(obs.history, key=lambda c: (c.entry_id, c.sequence)):
        for event in change_events(change.previous, change.new, change.sequence, rules):
            obs.expected_events[event["id"]] = event
            obs.expected_at[event["id"]] = change.written_at
    obs.webhook = [
        observe.WebhookCall(d.webhook_id, d.sent_at, d.status, d.verified, d.event if d.verified else {})
        for d in webhook.deliveries
        if d.timestamp
    ]
    handled = {h.index: h for h in injectors.handled}
    full_start = load_settings(cloud.functions[POLLER].full_environment()).poller.full_reconciliation_start
    for index, record in enumerate(cloud.invocations):
        seen = handled.get(index)
        items = seen.items if seen else ()
        failed = (seen.failed_items or ()) if seen else ()
        error = None if record.error is None else repr(record.error)[:200]
        status = None
        if record.source == "function-url":
            status = function_urls.http_answer(record.result, record.error)[0]
        obs.invocations.append(
            observe.Invocation(
                index,
                record.function,
                record.source,
                record.at,
                error,
                items,
                failed,
                status,
                seen.sent if seen else (),
                seen.ended if seen else None,
            )
        )
        if record.function == METER_SWEEP and record.error is None:
            obs.sweeps.append(record.at)
        if record.function == POLLER and record.source != "sqs" and seen is not None:
            obs.poller_runs.append(_poller_run(index, record, seen, leap, full_start))
    logical = {q.ref: q.logical_id for q in cloud.resources.of_type("AWS::SQS::Queue")}
    for url in _parking_queues(cloud).values():
        for message in cloud.drain_queue(url, delete=False):
            obs.parked.append(observe.Parked(logical.get(url, url), message.message_id, message.body))
    obs.in_flight = _queued_message_ids(cloud)
    _collect_webhooks(cloud, leap, injectors.timeline, obs)
    for entry in leap.entries_at(obs.end):
        ref_id = entry[wire.ENTRY_REF_ID]
        obs.customers[ref_id] = observe.Customer(
            ref_id, entry[wire.ENTRY_ID], leap.completed_at(ref_id), leap.meters_appear_at(ref_id)
        )


def _poller_run(
    index: int, record: Any, seen: Handled, leap: LeapSimulator, full_start: str
) -> observe.PollerRun:
    """A pass run from its record (the summary it answered) and what the wrapper saw (its payload, its
    Connect requests)."""
    payload = json.loads(seen.items[0]) if seen.items else {}  # a pass run's one item: its payload
    result = record.result if record.error is None and isinstance(record.result, dict) else {}
    pass_kind = result.get("pass")
    full = pass_kind == "full"
    # A full pass's page one is always the same query (a pass resumed after a refused token reads a
    # newer one); an incremental pass's is not judged (no listing is in its order).
    first_page = observe.ConnectRequest("start_date", full_start, token=False) if full else None
    return observe.PollerRun(
        index,
        record.source,
        record.at,
        seen.ended or record.at,
        int(payload.get("continuation") or 0),
        result.get("status"),
        pages=int(result.get("pages") or 0),
        pass_kind=pass_kind,
        resumed=bool(result.get("resumed")),
        token_restarts=int(result.get("token_restarts") or 0),
        ordered=full and leap.listing_order == "start_date",
        first_page=first_page,
        requests=tuple(_connect_request(query, leap.connect_wire) for query in seen.connect),
    )


def _connect_request(query: dict[str, list[str]], names: wire.ConnectWire) -> observe.ConnectRequest:
    token = bool(query.get(names.param_page_token, [""])[0])
    for selection, param in (
        ("start_date", names.param_start_date),
        ("last_interaction_date", names.param_last_interaction_date),
        ("ref_id", names.param_ref_id),
    ):
        if param in query:
            since = None if selection == "ref_id" else query[param][0]
            return observe.ConnectRequest(selection, since, token)
    return observe.ConnectRequest("", None, token)


def _collect_webhooks(cloud: LocalCloud, leap: LeapSimulator, timeline: Timeline, obs: Observations) -> None:
    """Leap's webhooks as the simulator knows them (its faults into the timeline, where they struck),
    and those still queued for the processor (moto's own record, as for in_flight)."""
    for delivery in leap.webhook_deliveries:
        attempts = tuple(
            observe.PushAttempt(a.at, a.status, None if a.fault is None else a.fault.value)
            for a in delivery.attempts
        )
        obs.leap_webhooks.append(
            observe.LeapWebhook(
                delivery.webhook_event_id,
                delivery.event_type,
                delivery.partner_reference,
                delivery.due_at,
                frozenset(f.value for f in delivery.faults),
                attempts,
                delivery.outcome.value,
            )
        )
        target = f"{delivery.event_type} {observe.SOAK_KEY.ref(delivery.partner_reference)}"
        if WebhookFault.MISSED in delivery.faults:
            timeline.add(delivery.due_at, f"leap_webhook_{WebhookFault.MISSED}", target)
        for attempt in attempts:
            if attempt.fault is not None:
                kind = f"leap_webhook_{attempt.fault}"
                timeline.add(attempt.at, kind, target, f"answered {attempt.status}")
    timeline.marks.sort(key=lambda mark: mark.at)  # stable: the same moment keeps its order
    from moto.sqs.models import sqs_backends

    queue_name = cloud.resources.queue_url(observe.WEBHOOK_QUEUE).rsplit("/", 1)[-1]
    for message in sqs_backends[ACCOUNT_ID][cloud.region].queues[queue_name]._messages:
        body = json.loads(message.body)
        obs.queued_webhooks.add(str(body.get(wire.WEBHOOK_EVENT_ID)))


def _queued_message_ids(cloud: LocalCloud) -> set[str]:
    """Every message still in a queue a function reads, in flight or not (moto's own record: a
    receive could not see the deferred ones)."""
    from moto.sqs.models import sqs_backends

    backend = sqs_backends[ACCOUNT_ID][cloud.region]
    names = {mapping.queue_url.rsplit("/", 1)[-1] for mapping in cloud.sqs_mappings.values()}
    return {message.id for name in names for message in backend.queues[name]._messages}
