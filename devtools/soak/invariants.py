"""The invariants the product promises, each a pure function of the observations.

Each returns a :class:`Result`: how many things it checked (so a vacuous check shows as 0) and every
violation, naming the entry by its pseudonym and giving the evidence and the moment, so the report can
print the fault timeline around it.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from devtools.soak.observe import (
    SOAK_KEY,
    WEBHOOK_DEAD_LETTERS,
    WEBHOOK_QUEUE,
    Invocation,
    LeapWebhook,
    Observations,
    PollerRun,
)
from devtools.soak.plan import PROCESSOR, RECEIVER
from leap_tracker.events import catalog
from leap_tracker.leap import wire
from leap_tracker.outreach.decision import in_holdout
from leap_tracker.timeutil import parse_instant
from leap_tracker.webhooks.processing import Result as Processed

CHANGE_FAMILIES = ("connection", "utility", "agreement")  # what the emitter publishes
WRONG_SECRET = "wrong_secret"  # the simulator's fault: an attempt with every registered header value wrong
LEAP_GAVE_UP = "failed"  # the simulator's outcome once every retry of a delivery was refused
# The processor's outcomes for a meter.created the Meters API listed (its meter.appeared is due).
CONFIRMED = frozenset({Processed.METER_APPEARED.value, Processed.METER_REMEMBERED.value})
CATCH_UP = timedelta(hours=1)  # after faults stop, every transition arrives within this
STALLED_BOUND = timedelta(hours=3)  # a stalled customer due a message gets one (or a suppression) by then
CONTINUATION_BOUND = timedelta(seconds=60)  # a cut pass's continuation starts within this


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    entry: str  # a pseudonym, or "-"
    evidence: str
    at: datetime | None = None


@dataclass
class Result:
    name: str
    checked: int = 0
    violations: list[Violation] = field(default_factory=list)

    def fail(self, entry: str, evidence: str, at: datetime | None = None) -> None:
        self.violations.append(Violation(self.name, entry, evidence, at))

    @property
    def passed(self) -> bool:
        return not self.violations


def _entry(entry_id: str) -> str:
    return SOAK_KEY.entry(entry_id) if entry_id and entry_id != "-" else "-"


def _ref(ref_id: str) -> str:
    return SOAK_KEY.ref(ref_id) if ref_id else "-"


def _change_arrivals(obs: Observations) -> list[tuple[datetime, dict[str, Any]]]:
    return [(a.at, a.body) for a in obs.arrivals if a.body.get("type", "").split(".")[0] in CHANGE_FAMILIES]


# ---------------------------------------------------------------------------------------- events


def table_equals_leap(obs: Observations) -> Result:
    """After a clean hour, every stored snapshot equals Leap's entry at that instant."""
    result = Result("table equals Leap after a clean hour")
    for hour in (h for h in obs.hours if h.clean):
        for entry_id, truth in hour.truth.items():
            result.checked += 1
            stored = hour.stored.get(entry_id, "-")
            if stored != truth:
                result.fail(_entry(entry_id), f"table {stored} != Leap {truth}", hour.at)
    return result


def transitions_delivered(obs: Observations) -> Result:
    """Every change event the stored history implies reached the partner's queue, and those stored
    before faults stopped arrived within an hour after; nothing the history does not imply arrived."""
    result = Result("every transition reaches the partner")
    first: dict[str, datetime] = {}
    for at, body in _change_arrivals(obs):
        first.setdefault(body["id"], at)
        if body["id"] not in obs.expected_events:
            result.fail(_entry(_entry_id(body)), f"unexpected {body['type']} seq {body.get('sequence')}", at)
    for event_id, event in obs.expected_events.items():
        result.checked += 1
        entry = _entry(_entry_id(event))
        arrived = first.get(event_id)
        stored_at = obs.expected_at.get(event_id, obs.start)
        if arrived is None:
            result.fail(
                entry,
                f"{event['type']} seq {event['sequence']} stored {stored_at:%H:%M} never arrived",
                stored_at,
            )
        elif stored_at <= obs.faults_stop and arrived > obs.faults_stop + CATCH_UP:
            result.fail(
                entry,
                f"{event['type']} seq {event['sequence']} arrived {arrived:%d %H:%M}, "
                "more than an hour after faults stopped",
                arrived,
            )
    return result


def one_payload_per_id(obs: Observations) -> Result:
    result = Result("one event id, one payload")
    bodies: dict[str, dict[str, Any]] = {}
    for arrival in obs.arrivals:
        event_id = arrival.body.get("id")
        if event_id not in bodies:
            bodies[event_id] = arrival.body
            result.checked += 1
        elif bodies[event_id] != arrival.body:
            changed = sorted(k for k in arrival.body if arrival.body.get(k) != bodies[event_id].get(k))
            result.fail(
                _entry(_entry_id(arrival.body)),
                f"{arrival.body.get('type')} {event_id} with a second payload ({changed})",
                arrival.at,
            )
    return result


def sequence_never_back(obs: Observations) -> Result:
    """Per entry, in arrival order (first arrival of each id), the change sequence never goes back."""
    result = Result("sequence per entry never goes back")
    seen: set[str] = set()
    latest: dict[str, int] = {}
    for at, body in _change_arrivals(obs):
        if body["id"] in seen:
            continue
        seen.add(body["id"])
        result.checked += 1
        entry_id, sequence = _entry_id(body), int(body["sequence"])
        if sequence < latest.get(entry_id, 0):
            result.fail(_entry(entry_id), f"{body['type']} seq {sequence} after seq {latest[entry_id]}", at)
        latest[entry_id] = max(sequence, latest.get(entry_id, 0))
    return result


# -------------------------------------------------------------------------------------- outreach


def _messages(obs: Observations) -> list[Any]:
    """Accepted webhook messages, one per webhook-id (the endpoint deduplicates on it)."""
    unique: dict[str, Any] = {}
    for call in obs.webhook:
        if call.accepted:
            unique.setdefault(call.webhook_id, call)
    return sorted(unique.values(), key=lambda c: c.sent_at)


def outreach_once_per_reason_and_state(obs: Observations) -> Result:
    result = Result("no two messages for the same reason and state")
    by_key: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for call in _messages(obs):
        data = call.event["data"]
        by_key[(data["entry_id"], data["dedupe_key"])].append(call)
    for (entry_id, key), calls in by_key.items():
        result.checked += 1
        if len(calls) > 1:
            ids = ", ".join(c.webhook_id for c in calls)
            result.fail(
                _entry(entry_id),
                f"{len(calls)} messages for {key.split('#')[0]} (same state): {ids}",
                calls[1].sent_at,
            )
    return result


def _completed_stored(obs: Observations) -> dict[str, datetime]:
    """When the poller first stored COMPLETED, per entry."""
    found: dict[str, datetime] = {}
    for change in obs.history:
        if change.new.get(wire.ENTRY_CONNECTION_STATUS) == wire.CONNECTION_COMPLETED:
            found[change.entry_id] = min(change.written_at, found.get(change.entry_id, change.written_at))
    return found


def outreach_not_after_completed(obs: Observations) -> Result:
    result = Result("no message after COMPLETED")
    completed = _completed_stored(obs)
    for call in _messages(obs):
        result.checked += 1
        data = call.event["data"]
        entry_id = data["entry_id"]
        if data["connection"].get(wire.ENTRY_CONNECTION_STATUS) == wire.CONNECTION_COMPLETED:
            result.fail(_entry(entry_id), "messaged on a COMPLETED snapshot", call.sent_at)
        elif entry_id in completed and call.sent_at > completed[entry_id]:
            result.fail(
                _entry(entry_id),
                f"messaged at {call.sent_at:%d %H:%M:%S}, COMPLETED stored {completed[entry_id]:%d %H:%M:%S}",
                call.sent_at,
            )
    return result


def _actionable_at(connection: dict[str, Any], obs: Observations) -> datetime:
    """When outreach may act on a snapshot: its last interaction + the actionable delay."""
    return parse_instant(connection[wire.ENTRY_LAST_INTERACTION]) + obs.rules.actionable_delay


def outreach_not_before_actionable(obs: Observations) -> Result:
    result = Result("no message before last interaction + 1 h")
    for call in _messages(obs):
        result.checked += 1
        connection = call.event["data"]["connection"]
        due = _actionable_at(connection, obs)
        if call.sent_at < due:
            result.fail(
                _entry(connection[wire.ENTRY_ID]),
                f"messaged at {call.sent_at:%d %H:%M}, actionable only from {due:%d %H:%M}",
                call.sent_at,
            )
    return result


def outreach_within_maximum(obs: Observations) -> Result:
    result = Result("no more messages than the maximum, none within the cooldown")
    by_entry: dict[str, list[Any]] = defaultdict(list)
    for call in _messages(obs):
        by_entry[call.event["data"]["entry_id"]].append(call)
    for entry_id, calls in by_entry.items():
        result.checked += 1
        if len(calls) > obs.rules.max_attempts:
            result.fail(
                _entry(entry_id),
                f"{len(calls)} messages (maximum {obs.rules.max_attempts})",
                calls[-1].sent_at,
            )
        for earlier, later in itertools.pairwise(calls):
            if later.sent_at - earlier.sent_at < obs.rules.cooldown:
                result.fail(
                    _entry(entry_id),
                    f"two messages {later.sent_at - earlier.sent_at} apart (cooldown {obs.rules.cooldown})",
                    later.sent_at,
                )
    return result


def outreach_holdout_waits(obs: Observations) -> Result:
    """A first message to a customer in the measurement holdout goes no earlier than its release."""
    result = Result("no first message to a held-out customer before its release")
    for call in _messages(obs):
        data = call.event["data"]
        if data.get("attempt") != 1:
            continue
        result.checked += 1
        connection = data["connection"]
        if not in_holdout(connection[wire.ENTRY_ID], str(data["reason"]), obs.rules.holdout_percent):
            continue
        release = _actionable_at(connection, obs) + obs.rules.holdout
        if call.sent_at < release:
            result.fail(
                _entry(connection[wire.ENTRY_ID]),
                f"held out for {data['reason']}, messaged at {call.sent_at:%d %H:%M}, "
                f"released only at {release:%d %H:%M}",
                call.sent_at,
            )
    return result


def stalled_customers_messaged(obs: Observations) -> Result:
    """Each customer stalled at the end, actionable long enough, got a message or a suppression."""
    result = Result("every stalled customer due a message gets one")
    considered = {c.event["data"]["entry_id"] for c in _messages(obs)}
    considered |= {
        a.body["data"].get("entry_id") or a.body["data"]["connection"]["id"]
        for a in obs.arrivals
        if a.body.get("type") == catalog.OUTREACH_SUPPRESSED
    }
    for entry_id, entry in obs.final_stored.items():
        if entry.get(wire.ENTRY_CONNECTION_STATUS) == wire.CONNECTION_COMPLETED:
            continue
        due = _actionable_at(entry, obs)
        if due + STALLED_BOUND > obs.end:
            continue
        result.checked += 1
        if entry_id not in considered:
            result.fail(
                _entry(entry_id),
                f"due from {due:%d %H:%M}, no message and no outreach.suppressed by {obs.end:%d %H:%M}",
                due,
            )
    return result


# ---------------------------------------------------------------------------------------- meters


def meter_appeared_once(obs: Observations) -> Result:
    """Every completed customer whose meters appeared early enough gets exactly one meter.appeared
    (none gets two, none without completing)."""
    result = Result("exactly one meter.appeared per completed entry with meters")
    appeared: dict[str, set[str]] = defaultdict(set)
    first_at: dict[str, datetime] = {}
    for arrival in obs.arrivals:
        if arrival.body.get("type") == catalog.METER_APPEARED:
            appeared[arrival.body["subject"]].add(arrival.body["id"])
            first_at.setdefault(arrival.body["subject"], arrival.at)
    completed = _completed_stored(obs)
    last_sweep = obs.sweeps[-1] if obs.sweeps else obs.start
    for ref_id, customer in obs.customers.items():
        ids = appeared.get(ref_id, set())
        opened = completed.get(customer.entry_id)
        if customer.completed_at is None or opened is None:
            if ids:
                result.checked += 1
                result.fail(_ref(ref_id), "meter.appeared without a stored completion", first_at[ref_id])
            continue
        result.checked += 1
        if len(ids) > 1:
            result.fail(_ref(ref_id), f"{len(ids)} meter.appeared ({sorted(ids)})", first_at[ref_id])
        if customer.meters_at is None:
            continue
        first_check = max(customer.completed_at + obs.rules.first_check, opened)
        certain = max(first_check, customer.meters_at) + obs.rules.longest_meter_wait + timedelta(hours=2)
        if not ids and certain <= min(last_sweep, customer.completed_at + obs.rules.give_up):
            result.fail(
                _ref(ref_id), f"meters there from {customer.meters_at:%d %H:%M}, never reported", certain
            )
    return result


# -------------------------------------------------------------------------------- Leap's webhooks


def _receiver_calls(obs: Observations) -> dict[str, list[Invocation]]:
    """The receiver's function URL calls by the webhook_event_id they carried, in order."""
    calls: dict[str, list[Invocation]] = defaultdict(list)
    for inv in obs.invocations:
        if inv.function == RECEIVER and inv.source == "function-url" and inv.items:
            calls[inv.items[0]].append(inv)
    return calls


def webhook_secret_refused(obs: Observations) -> Result:
    """Every call Leap made with a wrong secret was refused (401; a 5xx when a fault failed the call)
    and enqueued nothing; every call with the right one was not refused as unauthorized; every 2xx
    answer came after exactly one message was in WebhookQueue (so the receiver's accepted SendMessage
    calls equal its 2xx answers, plus the calls that failed after their enqueue: a crash, a timeout)."""
    result = Result("a wrong secret is refused and enqueues nothing; each 2xx enqueued once")
    calls = _receiver_calls(obs)
    for hook in obs.leap_webhooks:
        made = calls.get(hook.event_id, [])
        if len(made) != len(hook.attempts):
            result.checked += 1
            result.fail(
                _ref(hook.ref_id),
                f"{hook.event_type}: Leap made {len(hook.attempts)} call(s), the receiver ran {len(made)}",
                hook.due_at,
            )
            continue
        for attempt, call in zip(hook.attempts, made, strict=True):
            result.checked += 1
            enqueued = call.sent.count(WEBHOOK_QUEUE)
            what = f"{hook.event_type} call at {attempt.at:%d %H:%M:%S}"
            if attempt.fault == WRONG_SECRET and (attempt.accepted or enqueued):
                result.fail(
                    _ref(hook.ref_id),
                    f"{what} with a wrong secret answered {attempt.status}, {enqueued} message(s) enqueued",
                    attempt.at,
                )
            elif attempt.fault != WRONG_SECRET and attempt.status == 401:
                result.fail(_ref(hook.ref_id), f"{what} with the stack's secret answered 401", attempt.at)
            elif attempt.accepted and enqueued != 1:
                result.fail(
                    _ref(hook.ref_id),
                    f"{what} answered {attempt.status} after {enqueued} message(s) enqueued",
                    attempt.at,
                )
    return result


def _appeared_by_ref(obs: Observations) -> dict[str, set[str]]:
    appeared: dict[str, set[str]] = defaultdict(set)
    for arrival in obs.arrivals:
        if arrival.body.get("type") == catalog.METER_APPEARED:
            appeared[str(arrival.body["subject"])].add(str(arrival.body["id"]))
    return appeared


def meter_webhook_reported_once(obs: Observations) -> Result:
    """A customer whose meter.created was delivered and confirmed (the Meters search listed it) gets
    exactly one meter.appeared once its completion is stored; one whose webhooks were all lost, or
    never confirmed (left to the sweep, which the meter.appeared invariant holds), at most one."""
    result = Result("every delivered meter.created gives exactly one meter.appeared")
    appeared = _appeared_by_ref(obs)
    completed = _completed_stored(obs)
    by_ref: dict[str, list[LeapWebhook]] = defaultdict(list)
    for hook in obs.leap_webhooks:
        if hook.event_type == wire.WEBHOOK_METER_CREATED:
            by_ref[hook.ref_id].append(hook)
    for ref_id, hooks in sorted(by_ref.items()):
        ids = appeared.get(ref_id, set())
        customer = obs.customers.get(ref_id)
        delivered = [h for h in hooks if h.delivered]
        first = min(h.due_at for h in hooks)
        result.checked += 1
        if len(ids) > 1:
            result.fail(_ref(ref_id), f"{len(ids)} meter.appeared ({sorted(ids)})", first)
            continue
        if not delivered or customer is None or customer.entry_id not in completed:
            continue  # lost, or no watch yet: at most one (above); the meter invariant does the rest
        confirmed = [h for h in delivered if obs.processed_webhooks.get(h.event_id) in CONFIRMED]
        if confirmed and not ids:
            result.fail(
                _ref(ref_id),
                f"meter.created delivered {confirmed[0].due_at:%d %H:%M} and confirmed, completion stored "
                f"{completed[customer.entry_id]:%d %H:%M}: no meter.appeared",
                max(confirmed[0].due_at, completed[customer.entry_id]),
            )
    return result


def webhooks_processed_or_parked(obs: Observations) -> Result:
    """Every delivery the receiver answered 2xx was processed (its WEBHOOK# record is in the table), or
    sits in WebhookDeadLetterQueue after processing failed on it (the failures on record), or is still
    queued for the processor at the end."""
    result = Result("every webhook accepted is processed or parked with its reason")
    failed_messages = {
        item
        for inv in obs.invocations
        if inv.function == PROCESSOR
        for item in (inv.items if inv.error is not None else inv.failed_items)
    }
    parked = {
        str(message.body.get(wire.WEBHOOK_EVENT_ID)): message.message_id
        for message in obs.parked
        if message.queue == WEBHOOK_DEAD_LETTERS and isinstance(message.body, dict)
    }
    for hook in obs.leap_webhooks:
        if not hook.accepted:
            continue
        result.checked += 1
        if hook.event_id in obs.processed_webhooks or hook.event_id in obs.queued_webhooks:
            continue
        if parked.get(hook.event_id) in failed_messages:
            continue
        accepted = next(a for a in hook.attempts if a.accepted)
        where = "parked with no failure of it on record" if hook.event_id in parked else "not parked"
        result.fail(
            _ref(hook.ref_id),
            f"{hook.event_type} accepted {accepted.at:%d %H:%M:%S}: never processed, {where}",
            accepted.at,
        )
    return result


# -------------------------------------------------------------------------------- the poller's passes


def continuations_follow(obs: Observations) -> Result:
    """Every pass run the time limit cut short after reading a page, its continuation number below
    POLLER_MAX_CONTINUATIONS, is followed by the continuation the poller sends itself (an ``async``
    invocation with the next number) within a minute; no run goes past the limit. The minute is
    simulated time in which nothing else ran: the runner runs invocations one after another where
    Lambda would run them at once, so another function's run in between delays nothing."""
    result = Result("a pass cut by the time limit continues within a minute; chains stay bounded")
    limit = obs.rules.max_continuations
    waiting = [run for run in obs.poller_runs if run.source == "async"]  # continuations, first attempts
    for run in obs.poller_runs:
        if run.continuation > limit:
            result.checked += 1
            result.fail("-", f"a run as continuation {run.continuation}, past the limit {limit}", run.at)
        if run.status != "interrupted" or run.pages == 0 or run.continuation >= limit:
            continue
        result.checked += 1
        cut = f"{run.pass_kind} pass cut after {run.pages} page(s) (continuation {run.continuation})"
        follow = next(
            (c for c in waiting if c.index > run.index and c.continuation == run.continuation + 1), None
        )
        if follow is None:
            result.fail("-", f"{cut}: never continued", run.ended)
            continue
        waiting.remove(follow)
        idle = _idle_between(obs, run, follow)
        if idle > CONTINUATION_BOUND:
            result.fail("-", f"{cut}: continued {idle} later, with nothing else running", follow.at)
    return result


def _idle_between(obs: Observations, run: PollerRun, follow: PollerRun) -> timedelta:
    """The simulated time from ``run``'s end to ``follow``'s start that no invocation in between took."""
    busy = timedelta(0)
    for inv in obs.invocations:
        if run.index < inv.index < follow.index:
            start, end = max(inv.at, run.ended), min(inv.ended or inv.at, follow.at)
            busy += max(end - start, timedelta(0))
    return follow.at - run.ended - busy


def refused_token_keeps_its_place(obs: Observations) -> Result:
    """When Leap refuses a page token of a pass it lists in order of the selection's date (a full
    pass, by start date, in a listing by start date), the pass never asks for its page one again: not
    in that run after its first request with a token, nor in the runs that go on with the same pass
    (resumed, up to the one that completes it). A pass Leap does not list in order may start again
    from page one, the only safe restart there: its runs are counted, not judged. A failed run is
    left out (what it read is not in its summary)."""
    result = Result("a refused page token of an ordered pass never reads page one again")
    refused: PollerRun | None = None  # the ordered pass under way had a token refused, in this run
    for run in obs.poller_runs:
        if run.status is None or run.status == "skipped":
            continue  # failed: unknown; skipped: touched nothing, the pass is still under way
        if not run.resumed:
            refused = None  # a fresh pass, or nothing to continue
        if run.token_restarts:
            result.checked += 1
            first_token = next((i for i, r in enumerate(run.requests) if r.token), len(run.requests))
            if run.ordered and run.first_page in run.requests[first_token + 1 :]:
                result.fail("-", f"{_restarts(run)}, then its page one again", run.ended)
            refused = run if run.ordered else None
        elif refused is not None and run.pass_kind == refused.pass_kind:
            result.checked += 1
            if run.first_page in run.requests:
                result.fail("-", f"{_restarts(refused)}; a later run read its page one again", run.at)
        if run.status == "completed":
            refused = None
    return result


def _restarts(run: PollerRun) -> str:
    refused = f"{run.token_restarts} page token(s) refused at {run.at:%d %H:%M}"
    return f"{run.pass_kind} pass listed in order, {refused}"


# -------------------------------------------------------------------------------- failures, alarms


def failures_accounted(obs: Observations) -> Result:
    """Every failed invocation (or item it reported failed) either succeeded later, or sits in a
    dead-letter or failure queue with its reason. A failed call of the webhook receiver (a 5xx to
    Leap) is retried by Leap: accounted by a later call of the same delivery that succeeded, or by
    Leap giving up on it (the poll and the sweep then reconcile)."""
    result = Result("every failure retried to success or parked with its reason")
    done: dict[tuple[str, str], int] = {}  # (function, item) -> last index it succeeded at
    for inv in obs.invocations:
        if inv.error is None:
            for item in set(inv.items) - set(inv.failed_items):
                done[(inv.function, item)] = inv.index
    parked = _parked_items(obs)
    parked |= {hook.event_id for hook in obs.leap_webhooks if hook.outcome == LEAP_GAVE_UP}
    for inv in obs.invocations:
        failed = inv.items if inv.error is not None else inv.failed_items
        if not failed or inv.source in ("direct",):
            continue
        for item in failed:
            result.checked += 1
            if done.get((inv.function, item), -1) > inv.index or item in parked or item in obs.in_flight:
                continue  # retried to success, parked, or still queued for its retry (a deferral)
            if inv.source == "stream" and _in_parked_range(item, obs):
                continue
            result.fail(
                "-",
                f"{inv.function} ({inv.source}) failed {_short(item)}: {inv.error or 'item failure'}; "
                "never succeeded, not parked",
                inv.at,
            )
    return result


def _parked_items(obs: Observations) -> set[str]:
    """Message ids in dead-letter queues, and the payload of each failed async event with a reason."""
    found: set[str] = set()
    for message in obs.parked:
        found.add(message.message_id)
        body = message.body
        if (
            isinstance(body, dict)
            and "requestPayload" in body
            and body.get("requestContext", {}).get("condition")
        ):
            found.add(json.dumps(body["requestPayload"], sort_keys=True, default=str))
    return found


def _in_parked_range(sequence: str, obs: Observations) -> bool:
    for message in obs.parked:
        info = message.body.get("DDBStreamBatchInfo") if isinstance(message.body, dict) else None
        if info and int(info["startSequenceNumber"]) <= int(sequence) <= int(info["endSequenceNumber"]):
            return True
    return False


def alarms_raised(obs: Observations) -> Result:
    """Whenever a dead-letter, failure or rejected-webhook queue holds messages, an alarm on it is in
    ALARM."""
    result = Result("no alarm condition without an alarm")
    for view in obs.alarms:
        if view.depth == 0:
            continue
        result.checked += 1
        if "ALARM" not in view.alarm_states:
            states = ", ".join(view.alarm_states) or "no alarm on it"
            result.fail("-", f"{view.queue} holds {view.depth} message(s); alarms: {states}", view.at)
    return result


INVARIANTS: tuple[Callable[[Observations], Result], ...] = (
    table_equals_leap,
    transitions_delivered,
    one_payload_per_id,
    sequence_never_back,
    outreach_once_per_reason_and_state,
    outreach_not_after_completed,
    outreach_not_before_actionable,
    outreach_within_maximum,
    outreach_holdout_waits,
    stalled_customers_messaged,
    meter_appeared_once,
    webhook_secret_refused,
    meter_webhook_reported_once,
    webhooks_processed_or_parked,
    continuations_follow,
    refused_token_keeps_its_place,
    failures_accounted,
    alarms_raised,
)


def check_all(
    obs: Observations, invariants: Iterable[Callable[[Observations], Result]] = INVARIANTS
) -> list[Result]:
    return [invariant(obs) for invariant in invariants]


def _entry_id(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    connection = data.get("connection") or {}
    return str(connection.get("id") or data.get("entry_id") or "-")


def _short(item: str) -> str:
    return item if len(item) <= 60 else item[:57] + "..."


def counts(results: Iterable[Result]) -> Counter[str]:
    return Counter({r.name: r.checked for r in results})
