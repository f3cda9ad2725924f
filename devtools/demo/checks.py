"""The ground-truth checks (PASS/FAIL): what the product did against what the simulator says happened."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.demo.model import (
    CHANGE_FAMILIES,
    EMITTER,
    FILTERED_POLICY,
    TICK,
    Check,
    Received,
    Run,
    clock,
    family,
)
from devtools.demo.world import Rules, World
from devtools.leap_simulator import LeapSimulator
from devtools.local_runner.lambda_runtime import InvocationRecord
from devtools.webhook_receiver import Delivery
from leap_tracker.config import MeterWatchSettings
from leap_tracker.events import catalog
from leap_tracker.events.diff import DiffRules, change_events
from leap_tracker.leap import wire
from leap_tracker.timeutil import format_instant, parse_instant


@dataclass(frozen=True, slots=True)
class MeterTruth:
    """One customer who completed by the last poll, with what the meter rules imply for them."""

    ref_id: str
    completed: datetime
    appear: datetime | None  # when Leap shows the meters; None: never
    must_appear: bool  # found early enough that some sweep must have checked after it
    expect_overdue: bool


def meter_truth(leap: LeapSimulator, run: Run, rules: MeterWatchSettings) -> dict[str, MeterTruth]:
    """The meter rules of docs/meters.md applied to the simulator's ground truth.

    A watch opens in the hour of the first poll that sees COMPLETED; its first check is due
    ``first_check_hours`` after completion (at once if that is past). From then on two checks are never
    further apart than the longest wait (``max_retry_hours`` before the overdue moment,
    ``overdue_retry_hours`` after it), and a check is pulled in to the overdue moment; a check runs at
    the first sweep at or after its due time. So meters that appeared at A are certainly found if a
    sweep ran at or after max(first check, A) + the longest wait; and the first check at or after the
    overdue moment (or the first check, if later) publishes meter.overdue when no meter is there yet.
    """
    found: dict[str, MeterTruth] = {}
    for ref_id in leap.ref_ids:
        completed = leap.completed_at(ref_id)
        opened = None if completed is None else _first_at_or_after(run.polls, completed)
        if completed is not None and opened is not None:
            appear = leap.meters_appear_at(ref_id)
            first_check = max(completed + timedelta(hours=rules.first_check_hours), opened)
            found[ref_id] = MeterTruth(
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


def meter_events(run: Run) -> dict[str, dict[str, list[Received]]]:
    """meter.* type -> ref id -> deliveries (first delivery of each event id)."""
    found: dict[str, dict[str, list[Received]]] = defaultdict(lambda: defaultdict(list))
    seen: set[str] = set()
    for received in run.inbox:
        event = received.event
        if family(event["type"]) == "meter" and event["id"] not in seen:
            seen.add(event["id"])
            found[event["type"]][event["subject"]].append(received)
    return found


def ground_truth_checks(
    world: World, run: Run, rules: Rules, planted_at: datetime | None = None
) -> Iterator[Check]:
    """``planted_at``: the hour of the emitter failure the demo planted on purpose (the recovery):
    the emitter's failed invocations then, and their retries' repeats, are not a dirty run."""
    yield _clean_run(world, lambda r: r.function == EMITTER and planted_at is not None and r.at == planted_at)
    yield _funnel_matches(run)
    yield _counted_funnel_matches(run)
    yield _snapshots_match(world.leap, run)
    yield _events_match(run, rules.diff, planted_at)
    yield _filter_applied(world, run)
    yield from _meter_checks(world.leap, run, rules.meters)
    yield from _outreach_checks(world, run, rules)


def _check(name: str, problems: list[str], ok_detail: str) -> Check:
    if not problems:
        return Check(name, True, ok_detail)
    shown = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
    return Check(name, False, f"{len(problems)} problem(s): {shown}")


def _clean_run(world: World, excused: Callable[[InvocationRecord], bool]) -> Check:
    cloud = world.cloud
    planted = [r for r in cloud.errors if excused(r)]
    problems = [f"{r.function} failed at {clock(r.at)}: {r.error!r}" for r in cloud.errors if not excused(r)]
    for output, url in sorted(cloud.outputs.items()):
        if output.endswith("QueueUrl") and (left := cloud.drain_queue(url, delete=False)):
            problems.append(f"{len(left)} message(s) in {output}")
    for name, stack in sorted(cloud.subscribers.items()):  # the partner's dead-letter queues
        for output, url in sorted(stack.outputs.items()):
            if output.endswith("DeadLetterQueueUrl") and (left := cloud.drain_queue(url, delete=False)):
                problems.append(f"{len(left)} message(s) in {name} {output}")
    problems += [f"async event dropped: {event['function']}" for event in cloud.dropped_async_events]
    problems += [f"simulator error: {error!r}" for error in world.leap.server_errors]
    return _check(
        "clean run",
        problems,
        f"{len(cloud.invocations)} invocations, none failed but the {len(planted)} planted; "
        "failure and dead-letter queues empty",
    )


def _funnel_matches(run: Run) -> Check:
    problems = [
        f"{clock(at)}: table {dict(stored)} != Leap {dict(truth)}"
        for at, stored, truth in run.funnels
        if stored != truth
    ]
    return _check(
        "funnel = ground truth", problems, f"the table's funnel equals Leap's at all {len(run.funnels)} polls"
    )


def _counted_funnel_matches(run: Run) -> Check:
    """The poller's EntriesByStatus counts (the dashboard's funnel, from the funnel index) equal Leap's."""
    truths = {at: truth for at, _, truth in run.funnels}
    problems = [
        f"{clock(at)}: the poller did not count" for at, counted in run.counted_funnels if counted is None
    ]
    problems += [
        f"{clock(at)}: counted {dict(counted)} != Leap {dict(+truths[at])}"
        for at, counted in run.counted_funnels
        if counted is not None and counted != +truths[at]
    ]
    return _check(
        "dashboard funnel = ground truth",
        problems,
        f"the poller's EntriesByStatus counts equal Leap's at all {len(run.counted_funnels)} polls",
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
        f"all {len(truth)} stored snapshots equal Leap's entries at the last poll ({clock(run.end)})",
    )


def _events_match(run: Run, rules: DiffRules, planted_at: datetime | None) -> Check:
    """The unfiltered queue got exactly the change events the ground-truth histories imply."""
    expected: dict[str, dict[str, Any]] = {}
    for history in run.histories.values():
        previous = None
        for sequence, entry in enumerate(history, start=1):
            expected |= {e["id"]: e for e in change_events(previous, entry, sequence, rules)}
            previous = entry
    got = [r.event for r in run.inbox if family(r.event["type"]) in CHANGE_FAMILIES]
    ids = [event["id"] for event in got]
    problems = [
        f"missing {expected[i]['type']} for {expected[i]['subject']}"
        for i in sorted(expected.keys() - set(ids))
    ]
    problems += [f"unexpected {e['type']} for {e['subject']}" for e in got if e["id"] not in expected]
    counts = Counter(ids)
    # The planted failure's retries republish the events of later records that shared a PublishBatch
    # call with the refused one (at-least-once, same ids and bodies): excused in that hour only.
    retried = {
        i
        for i, n in counts.items()
        if n > 1 and planted_at and all(r.at == planted_at for r in run.inbox if r.event["id"] == i)
    }
    problems += [f"delivered {n} times: {i}" for i, n in counts.items() if n > 1 and i not in retried]
    problems += [
        f"{e['type']} for {e['subject']} differs"
        for e in got
        if e["id"] in expected and expected[e["id"]] != e
    ]
    return _check(
        "events = ground truth",
        problems,
        f"the partner got exactly the {len(expected)} change events Leap's histories imply, "
        + (f"each once but {len(retried)} twice (the planted failure's retries)" if retried else "once each"),
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
    truth = meter_truth(leap, run, rules)
    events = meter_events(run)
    appeared = events[catalog.METER_APPEARED]
    problems = [
        f"{ref}: meter events without a completion" for t in events.values() for ref in t if ref not in truth
    ]
    problems += [f"{ref}: {len(got)} meter.appeared" for ref, got in appeared.items() if len(got) > 1]
    for ref, got in appeared.items():
        problems += _appeared_problems(leap, truth.get(ref), got[0])
    problems += [
        f"{ref}: meters at {clock(t.appear)} never reported"  # type: ignore[arg-type]
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


def _appeared_problems(leap: LeapSimulator, truth: MeterTruth | None, received: Received) -> list[str]:
    if truth is None:
        return []
    ref, event = truth.ref_id, received.event
    if truth.appear is None or truth.appear > received.at:
        return [f"{ref}: meter.appeared at {clock(received.at)} before Leap had meters"]
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
        list(_timing_problems(world.leap, run, deliveries, rules)),
        f"nobody messaged once COMPLETED was stored or before its last interaction + "
        f"{_minutes(rules.actionable_delay)}; "
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


def _timing_problems(
    leap: LeapSimulator, run: Run, deliveries: list[Delivery], rules: Rules
) -> Iterator[str]:
    """Against what the product could know when it sent: COMPLETED once the table stored it (the first
    poll of the customer, hourly or targeted, at or after Leap's completion), and the last interaction
    of the snapshot the message was decided on (the one it carries)."""
    outreach = rules.settings.outreach
    by_customer: dict[str, list[datetime]] = defaultdict(list)
    for delivery in (d for d in deliveries if d.verified):
        ref, sent = delivery.event["subject"], _sent_at(delivery)
        by_customer[ref].append(sent)
        if leap.snapshot(ref, at=sent) is None:
            yield f"{ref}: messaged at {clock(sent)}, before Leap had an entry"
            continue
        completed = leap.completed_at(ref)
        stored = next((at for at in run.polled_at(ref) if completed is not None and at >= completed), None)
        if stored is not None and sent > stored:
            yield f"{ref}: messaged at {clock(sent)}, COMPLETED stored at {clock(stored)}"
        connection = delivery.event["data"]["connection"]
        if sent < parse_instant(connection[wire.ENTRY_LAST_INTERACTION]) + rules.actionable_delay:
            yield f"{ref}: messaged at {clock(sent)}, before the last interaction was an hour old"
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


def _minutes(span: timedelta) -> str:
    return f"{int(span.total_seconds() // 60)} min"
