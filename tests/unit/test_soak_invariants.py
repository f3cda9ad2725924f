"""The soak's invariants (devtools/soak/invariants.py): each passes on clean observations, with
something checked, and fails on a crafted violation, naming the entry by its pseudonym."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.soak import invariants as inv
from devtools.soak.observe import (
    SOAK_KEY,
    AlarmView,
    Arrival,
    ConnectRequest,
    Customer,
    HourView,
    Invocation,
    LeapWebhook,
    Observations,
    Parked,
    PollerRun,
    PushAttempt,
    Rules,
    StoredChange,
    WebhookCall,
)
from leap_tracker.events import catalog
from leap_tracker.outreach.decision import in_holdout

T0 = datetime(2025, 1, 7, 0, 0, tzinfo=UTC)
ENTRY = "CAISO_x_ref-1"
RULES = Rules(
    actionable_delay=timedelta(hours=1),
    max_attempts=3,
    cooldown=timedelta(hours=48),
    first_check=timedelta(hours=24),
    longest_meter_wait=timedelta(hours=24),
    give_up=timedelta(days=14),
    holdout_percent=50,
    holdout=timedelta(hours=168),
    max_continuations=4,
)


# Outreach's own hash decides (RULES hold out 50%): ENTRY is messaged at once, HELD_OUT waits.
assert not in_holdout(ENTRY, "utility_error.X", RULES.holdout_percent)
HELD_OUT = next(e for e in (f"CAISO_x_ref-{n}" for n in range(2, 100)) if in_holdout(e, "not_started", 50))


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def entry(status: str = "ERROR", last: float = 0.0, entry_id: str = ENTRY) -> dict[str, Any]:
    return {
        "id": entry_id,
        "ref_id": "ref-1",
        "connection_status": status,
        "start_date_time_utc": stamp(at(-5)),
        "last_interaction_date_time_utc": stamp(at(last)),
    }


def change_event(event_id: str, sequence: int) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "connection.partial",
        "sequence": f"{sequence:012d}",
        "data": {"connection": {"id": ENTRY}},
    }


def message(
    webhook_id: str,
    sent: float,
    key: str = "utility_error.X#abc#1",
    last: float = 0.0,
    attempt: int = 1,
    entry_id: str = ENTRY,
) -> WebhookCall:
    data = {
        "entry_id": entry_id,
        "dedupe_key": key,
        "webhook_id": webhook_id,
        "connection": entry(last=last, entry_id=entry_id),
        "reason": key.split("#")[0],
        "attempt": attempt,
    }
    return WebhookCall(webhook_id, at(sent), 204, True, {"type": "outreach.requested", "data": data})


RECEIVER, PROCESSOR = "WebhookReceiverFunction", "WebhookProcessorFunction"
EVENT = "7d0c9d2e-5c1a-4b7e-9f51-2f8d7c6a1b00"  # Leap's webhook_event_id of ref-1's meter.created


def meter_created(*attempts: PushAttempt, outcome: str = "delivered") -> LeapWebhook:
    faults = frozenset(a.fault for a in attempts if a.fault)
    return LeapWebhook(EVENT, "meter.created", "ref-1", at(3), faults, attempts, outcome)


def receiver_call(
    index: int, status: int, sent: tuple[str, ...] = (), error: str | None = None
) -> Invocation:
    """One function URL call of the receiver carrying EVENT, answered ``status``."""
    return Invocation(index, RECEIVER, "function-url", at(3), error, (EVENT,), (), status, sent)


POLLER = "PollerFunction"
PAGE_ONE = ConnectRequest("start_date", "2015-01-01T00:00:00Z", token=False)  # a full pass's first page
BOUNDARY = ConnectRequest("start_date", "2025-01-06T03:00:00Z", token=False)  # the newest start date read


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def full_pass_run(
    index: int, source: str, start: datetime, continuation: int, status: str, **fields: Any
) -> PollerRun:
    """A full pass run in a listing by start date (in its order), ten seconds long."""
    return PollerRun(
        index, source, start, start + seconds(10), continuation, status, **{"pages": 2, **fields}
    )


def cut_then_continued() -> tuple[list[Invocation], list[PollerRun]]:
    """A full pass cut after two pages at 01:00, the emitter busy for a minute, then the continuation
    (90 s after the cut, 30 s of them with nothing running), whose resumed token Leap refuses: it goes
    on from the newest start date read and completes."""
    cut = full_pass_run(
        10,
        "schedule",
        at(1),
        0,
        "interrupted",
        pass_kind="full",
        ordered=True,
        first_page=PAGE_ONE,
        requests=(PAGE_ONE, dataclasses.replace(PAGE_ONE, token=True)),
    )
    busy = Invocation(
        11, "EmitterFunction", "stream", cut.ended, None, ("1",), (), ended=cut.ended + seconds(60)
    )
    resumed_token = dataclasses.replace(PAGE_ONE, token=True)
    continued = full_pass_run(
        12,
        "async",
        cut.ended + seconds(90),
        1,
        "completed",
        pass_kind="full",
        resumed=True,
        token_restarts=1,
        ordered=True,
        first_page=PAGE_ONE,
        requests=(resumed_token, BOUNDARY, dataclasses.replace(BOUNDARY, token=True)),
    )
    polls = [cut, continued]
    records = [Invocation(r.index, POLLER, r.source, r.at, None, ("{}",), (), ended=r.ended) for r in polls]
    return [records[0], busy, records[1]], polls


def clean() -> Observations:
    obs = Observations(start=T0, end=at(48), faults_stop=at(40), rules=RULES)
    obs.hours = [HourView(at(1), True, {ENTRY: "h1"}, {ENTRY: "h1"})]
    obs.history = [StoredChange(ENTRY, 1, None, entry(), at(1))]
    obs.expected_events = {"e1": change_event("e1", 1), "e2": change_event("e2", 2)}
    obs.expected_at = {"e1": at(1), "e2": at(2)}
    obs.arrivals = [Arrival(at(1), obs.expected_events["e1"]), Arrival(at(2), obs.expected_events["e2"])]
    obs.arrivals.append(
        Arrival(at(3), {"id": "m1", "type": catalog.METER_APPEARED, "subject": "ref-1", "data": {}})
    )
    obs.webhook = [message("msg_1", sent=2)]
    obs.final_stored = {ENTRY: entry(last=0)}
    obs.customers = {"ref-1": Customer("ref-1", ENTRY, at(-30), at(-1))}
    obs.history.append(StoredChange(ENTRY, 2, entry(), entry("COMPLETED", last=2), at(2.5)))
    obs.sweeps = [at(47)]
    obs.invocations = [
        Invocation(0, "OutreachFunction", "sqs", at(1), None, ("m-a", "m-b"), ("m-b",)),
        Invocation(1, "OutreachFunction", "sqs", at(2), None, ("m-b",), ()),
    ]
    obs.alarms = [AlarmView(at(5), "dlq", 1, ("ALARM",)), AlarmView(at(6), "dlq", 0, ("OK",))]
    # ref-1's meter.created: first with a wrong secret (refused), then accepted and enqueued, processed.
    obs.leap_webhooks = [meter_created(PushAttempt(at(3), 401, "wrong_secret"), PushAttempt(at(3), 200))]
    obs.invocations += [receiver_call(2, 401), receiver_call(3, 200, ("WebhookQueue",))]
    obs.processed_webhooks = {EVENT: "meter_appeared"}
    records, obs.poller_runs = cut_then_continued()
    obs.invocations += records
    return obs


def continuation_run(obs: Observations) -> PollerRun:
    return next(run for run in obs.poller_runs if run.source == "async")


def replace_run(obs: Observations, run: PollerRun, **fields: Any) -> None:
    obs.poller_runs[obs.poller_runs.index(run)] = dataclasses.replace(run, **fields)


def page_one_read_again_later(obs: Observations) -> None:
    """The continuation is cut at once after its refusal (no page read: not continued), and the next
    hourly run of the pass reads its page one again."""
    continued = continuation_run(obs)
    replace_run(obs, continued, status="interrupted", pages=0, requests=continued.requests[:1])
    obs.poller_runs.append(
        full_pass_run(
            20,
            "schedule",
            at(2),
            0,
            "completed",
            pass_kind="full",
            resumed=True,
            ordered=True,
            first_page=PAGE_ONE,
            requests=(PAGE_ONE, dataclasses.replace(PAGE_ONE, token=True)),
        )
    )


def wrong_secret_accepted(obs: Observations) -> None:
    obs.leap_webhooks = [meter_created(PushAttempt(at(3), 200, "wrong_secret"), PushAttempt(at(3), 200))]
    obs.invocations[2] = receiver_call(2, 200, ("WebhookQueue",))


def right_secret_refused(obs: Observations) -> None:
    obs.leap_webhooks = [meter_created(PushAttempt(at(3), 401, "wrong_secret"), PushAttempt(at(3), 401))]
    obs.invocations[3] = receiver_call(3, 401)


def processing_failed_then_parked(obs: Observations, failed: bool = True) -> None:
    obs.processed_webhooks.clear()
    obs.parked = [Parked("WebhookDeadLetterQueue", "w-1", {"webhook_event_id": EVENT, "payload": {}})]
    if failed:
        obs.invocations.append(Invocation(4, PROCESSOR, "sqs", at(3), None, ("w-1",), ("w-1",)))


def no_completion(obs: Observations) -> None:
    obs.history = obs.history[:1]
    obs.final_stored = {ENTRY: entry(last=0)}


CASES: dict[str, tuple[Callable[[Observations], inv.Result], Callable[[Observations], None]]] = {
    "table differs after a clean hour": (
        inv.table_equals_leap,
        lambda o: o.hours.append(HourView(at(2), True, {ENTRY: "h2"}, {ENTRY: "h1"})),
    ),
    "a transition never arrives": (inv.transitions_delivered, lambda o: o.arrivals.pop(1)),
    "a transition arrives late": (
        inv.transitions_delivered,
        lambda o: o.arrivals.__setitem__(1, Arrival(at(43), o.expected_events["e2"])),
    ),
    "an event nobody expected": (
        inv.transitions_delivered,
        lambda o: o.arrivals.append(Arrival(at(4), change_event("e9", 3))),
    ),
    "one id, two payloads": (
        inv.one_payload_per_id,
        lambda o: o.arrivals.append(Arrival(at(5), {**change_event("e1", 1), "time": "other"})),
    ),
    "the sequence goes back": (
        inv.sequence_never_back,
        lambda o: o.arrivals.__setitem__(slice(0, 2), [o.arrivals[1], o.arrivals[0]]),
    ),
    "two messages for one reason and state": (
        inv.outreach_once_per_reason_and_state,
        lambda o: o.webhook.append(message("msg_2", sent=60)),
    ),
    "a message after COMPLETED was stored": (
        inv.outreach_not_after_completed,
        lambda o: o.webhook.append(message("msg_3", sent=3, key="k#2#1")),
    ),
    "a message within the hour": (
        inv.outreach_not_before_actionable,
        lambda o: o.webhook.__setitem__(0, message("msg_1", sent=0.5)),
    ),
    "more than the maximum": (
        inv.outreach_within_maximum,
        lambda o: o.webhook.extend(
            message(f"msg_m{i}", sent=2 + 50 * i, key=f"k#{i}#1") for i in range(1, 4)
        ),
    ),
    "within the cooldown": (
        inv.outreach_within_maximum,
        lambda o: o.webhook.append(message("msg_9", sent=10, key="k#9#1")),
    ),
    "a held-out customer messaged before its release": (
        inv.outreach_holdout_waits,
        lambda o: o.webhook.append(message("msg_h", sent=30, key="not_started#h#1", entry_id=HELD_OUT)),
    ),
    "a stalled customer never considered": (
        inv.stalled_customers_messaged,
        lambda o: (no_completion(o), o.webhook.clear()),
    ),
    "two meter.appeared": (
        inv.meter_appeared_once,
        lambda o: o.arrivals.append(
            Arrival(at(9), {"id": "m2", "type": catalog.METER_APPEARED, "subject": "ref-1", "data": {}})
        ),
    ),
    "meters never reported": (inv.meter_appeared_once, lambda o: o.arrivals.pop(2)),
    "a wrong secret accepted": (inv.webhook_secret_refused, wrong_secret_accepted),
    "the stack's own secret refused": (inv.webhook_secret_refused, right_secret_refused),
    "a 2xx with nothing enqueued": (
        inv.webhook_secret_refused,
        lambda o: o.invocations.__setitem__(3, receiver_call(3, 200)),
    ),
    "a delivered, confirmed meter.created never reported": (
        inv.meter_webhook_reported_once,
        lambda o: o.arrivals.pop(2),
    ),
    "a lost meter.created, two meter.appeared": (
        inv.meter_webhook_reported_once,
        lambda o: (
            o.leap_webhooks.__setitem__(0, meter_created(outcome="missed")),
            o.arrivals.append(
                Arrival(at(9), {"id": "m2", "type": catalog.METER_APPEARED, "subject": "ref-1", "data": {}})
            ),
        ),
    ),
    "an accepted webhook never processed": (
        inv.webhooks_processed_or_parked,
        lambda o: o.processed_webhooks.clear(),
    ),
    "a webhook parked with no failure on record": (
        inv.webhooks_processed_or_parked,
        lambda o: processing_failed_then_parked(o, failed=False),
    ),
    "a failure never retried nor parked": (inv.failures_accounted, lambda o: o.invocations.pop(1)),
    "a receiver call failed, Leap never retried it to success": (
        inv.failures_accounted,
        lambda o: o.invocations.__setitem__(3, receiver_call(3, 502, error="InjectedCrash()")),
    ),
    "a cut pass never continued": (
        inv.continuations_follow,
        lambda o: o.poller_runs.remove(continuation_run(o)),
    ),
    "a continuation more than a minute later, nothing running meanwhile": (
        inv.continuations_follow,
        lambda o: o.invocations.remove(next(i for i in o.invocations if i.function == "EmitterFunction")),
    ),
    "a chain past POLLER_MAX_CONTINUATIONS": (
        inv.continuations_follow,
        lambda o: o.poller_runs.append(full_pass_run(30, "async", at(3), 5, "completed", pass_kind="full")),
    ),
    "an ordered pass reads page one after its token was refused": (
        inv.refused_token_keeps_its_place,
        lambda o: replace_run(o, continuation_run(o), requests=(*continuation_run(o).requests[:1], PAGE_ONE)),
    ),
    "a later run of an ordered pass reads page one again": (
        inv.refused_token_keeps_its_place,
        page_one_read_again_later,
    ),
    "a queue holds messages, no alarm": (
        inv.alarms_raised,
        lambda o: o.alarms.append(AlarmView(at(7), "dlq", 2, ("OK",))),
    ),
}


def test_every_invariant_has_a_crafted_violation() -> None:
    assert {check for check, _ in CASES.values()} == set(inv.INVARIANTS)


def test_every_invariant_passes_on_clean_observations_and_checks_something() -> None:
    for result in inv.check_all(clean()):
        assert result.passed, (result.name, result.violations)
        assert result.checked > 0, result.name


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_invariant_fails_on_its_crafted_violation(case: str) -> None:
    check, spoil = CASES[case]
    obs = clean()
    spoil(obs)
    result = check(obs)
    assert not result.passed, case
    assert ENTRY not in repr(result.violations)  # pseudonyms only
    assert "ref-1" not in repr(result.violations)


def test_a_failure_parked_in_a_dead_letter_queue_or_still_queued_is_accounted_for() -> None:
    obs = clean()
    obs.invocations.pop(1)
    obs.parked = [Parked("dlq", "m-b", {})]
    assert inv.failures_accounted(obs).passed
    obs = dataclasses.replace(clean(), parked=[])
    obs.invocations.pop(1)
    obs.in_flight = {"m-b"}
    assert inv.failures_accounted(obs).passed


def test_a_webhook_parked_after_failures_or_still_queued_is_accounted_for() -> None:
    obs = clean()
    processing_failed_then_parked(obs)
    assert inv.webhooks_processed_or_parked(obs).passed
    obs = clean()
    obs.processed_webhooks.clear()
    obs.queued_webhooks = {EVENT}
    assert inv.webhooks_processed_or_parked(obs).passed


def test_a_receiver_failure_is_accounted_for_by_leaps_retry_or_by_leap_giving_up() -> None:
    obs = clean()  # the call failed after its enqueue (502); Leap's retry was answered 200
    obs.leap_webhooks = [meter_created(PushAttempt(at(3), 502), PushAttempt(at(3.1), 200))]
    obs.invocations[2:4] = [
        receiver_call(2, 502, ("WebhookQueue",), error="InjectedCrash()"),
        receiver_call(3, 200, ("WebhookQueue",)),
    ]
    assert inv.failures_accounted(obs).passed
    assert inv.webhook_secret_refused(obs).passed  # a failed call may have enqueued: Leap retries
    obs.invocations[3] = receiver_call(3, 502, error="InjectedCrash()")
    obs.leap_webhooks = [meter_created(PushAttempt(at(3), 502), PushAttempt(at(3.1), 502), outcome="failed")]
    assert inv.failures_accounted(obs).passed


def test_a_meter_created_not_confirmed_or_before_completion_may_give_none() -> None:
    obs = clean()
    obs.arrivals.pop(2)
    obs.processed_webhooks = {EVENT: "meter_unconfirmed"}  # left to the sweep
    assert inv.meter_webhook_reported_once(obs).passed
    obs = clean()
    obs.arrivals.pop(2)
    no_completion(obs)  # no watch to report it on yet
    assert inv.meter_webhook_reported_once(obs).passed


def test_violations_name_the_entry_by_its_pseudonym() -> None:
    obs = clean()
    obs.arrivals.pop(1)
    [violation] = inv.transitions_delivered(obs).violations
    assert violation.entry == SOAK_KEY.entry(ENTRY)
    assert violation.at == at(2)


def test_a_pass_listed_out_of_order_may_start_again_from_page_one_after_a_refused_token() -> None:
    obs = clean()
    for run in list(obs.poller_runs):
        replace_run(obs, run, ordered=False)
    replace_run(obs, continuation_run(obs), requests=(*continuation_run(obs).requests[:1], PAGE_ONE))
    result = inv.refused_token_keeps_its_place(obs)
    assert result.passed
    assert result.checked == 1


def test_a_fresh_pass_reads_page_one_and_a_run_without_progress_or_at_the_limit_is_not_continued() -> None:
    obs = clean()
    page_one_read_again_later(obs)
    replace_run(obs, obs.poller_runs[-1], resumed=False)  # a new pass (the refused one completed)
    assert inv.refused_token_keeps_its_place(obs).passed
    assert inv.continuations_follow(obs).passed  # the continuation read no page: nothing follows it
    obs = clean()
    obs.poller_runs.remove(continuation_run(obs))
    replace_run(obs, obs.poller_runs[0], continuation=4)  # the last of a chain: the next hour takes it up
    assert inv.continuations_follow(obs).passed
