"""Outreach end to end: Leap simulator -> poller -> emitter -> outreach queue -> outreach function ->
a partner's webhook endpoint that verifies every signature with the ``standardwebhooks`` package.

Scenario customers (put into the simulator, one per stage a customer can stall at) give exact
expectations; the simulator's own population, moving through the funnel meanwhile, is held to the
rules every message must follow. Time only moves with ``cloud.advance`` (the simulated clock).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from jsonschema import Draft202012Validator

from devtools.leap_simulator import LeapSimulator
from devtools.local_runner import LocalCloud
from devtools.webhook_receiver import Delivery, WebhookReceiver
from leap_tracker.events import catalog
from leap_tracker.leap import wire
from leap_tracker.outreach.decision import assess
from leap_tracker.timeutil import parse_instant
from tests.builders import PGE, SCE, SDGE, entry, utility

COOLDOWN = timedelta(hours=48)  # the template's defaults
MAX_ATTEMPTS = 3
HOUR = timedelta(hours=1)
SWEEP_EVERY = timedelta(hours=12)


def scenario(last: datetime) -> dict[str, tuple[dict[str, Any], str | None]]:
    """Reference ID -> (the entry Leap serves, the one reason its customer must get; None: no message)."""
    connected, not_connected, error = wire.UTILITY_CONNECTED, wire.UTILITY_NOT_CONNECTED, wire.UTILITY_ERROR
    cases: dict[str, tuple[str, list, dict | None, str | None]] = {
        "s-not-started": (wire.CONNECTION_NOT_STARTED, [], None, "not_started"),
        "s-not-connected": (
            wire.CONNECTION_PARTIAL,
            [utility(SDGE, not_connected)],
            None,
            "utility_not_connected",
        ),
        "s-unknown-code": (
            wire.CONNECTION_ERROR,
            [utility(SDGE, error, error_code="NEVER_SEEN")],
            None,
            "utility_error.unknown",
        ),
        "s-commercial": (
            wire.CONNECTION_PARTIAL,
            [utility(SDGE, connected), utility(SCE, error, error_code=wire.ERROR_INVALID_CREDENTIALS)],
            None,
            "utility_error.INVALID_CREDENTIALS",
        ),
        "s-agreement": (
            wire.CONNECTION_PARTIAL,
            [utility(SDGE, connected)],
            {
                wire.AGREEMENT_PROHIBITED_RESOURCE_ATTESTATION: "SIGNED",
                wire.AGREEMENT_DEMAND_RESPONSE_PARTICIPATION: "AWAITING_SIGNATURE",
            },
            "agreement_pending",
        ),
        "s-other-utility": (
            wire.CONNECTION_PARTIAL,
            [utility(SDGE, not_connected), utility(PGE, connected, required=False)],
            None,
            None,
        ),
        "s-completed": (wire.CONNECTION_COMPLETED, [utility(SDGE, connected)], None, None),
        "s-canceled": (
            wire.CONNECTION_ERROR,
            [utility(SDGE, error, error_code=wire.ERROR_USER_CANCELED)],
            None,
            "utility_error.USER_CANCELED",
        ),
    }
    return {
        ref: (entry(status, utilities, agreements, ref_id=ref, last=last), reason)
        for ref, (status, utilities, agreements, reason) in cases.items()
    }


def by_ref(deliveries: list[Delivery]) -> dict[str, list[Delivery]]:
    grouped: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        grouped[delivery.event["subject"]].append(delivery)
    return grouped


def poll(cloud: LocalCloud) -> None:
    cloud.fire_schedule("PollerFunction")
    cloud.drain()


def republish(cloud: LocalCloud, events: list[Any]) -> None:
    """Publish events again exactly as the emitter did (same bodies, same attributes): a replay."""
    sns = cloud.client("sns")
    topic = cloud.resources["EventsTopic"].ref
    for message in events:
        sns.publish(
            TopicArn=topic,
            Message=json.dumps(message.body),
            MessageAttributes={
                k: {"DataType": "String", "StringValue": v} for k, v in message.attributes.items()
            },
        )


def fail_after_success_once(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """The handler does its work, then the invocation errors (a lost response): SQS delivers it all again."""
    state = {"failed": False}

    def wrapped(event: Any, context: Any) -> Any:
        result = handler(event, context)
        if not state["failed"] and event.get("Records"):
            state["failed"] = True
            raise RuntimeError("the invocation timed out after the work was done")
        return result

    return wrapped


def test_each_stalled_customer_gets_one_right_message_an_hour_after_and_reminders_up_to_the_max(
    cloud: LocalCloud, leap: LeapSimulator, webhook: WebhookReceiver
) -> None:
    outreach_audit = cloud.subscribe_queue("EventsTopic", {"type": [{"prefix": "outreach."}]})
    changes = cloud.subscribe_queue("EventsTopic", {"type": [{"anything-but": {"prefix": "outreach."}}]})
    start = cloud.now()
    last_interaction = start - 10 * timedelta(minutes=1)
    actionable = last_interaction + HOUR
    cases = scenario(last_interaction)
    for raw, _reason in cases.values():
        leap.put_entry(raw)

    # Seen by the first poll, 10 minutes after the customers' last interaction: nothing yet.
    poll(cloud)
    cloud.advance(minutes=45)
    cloud.drain()
    assert by_ref(webhook.accepted()).keys().isdisjoint(cases)

    # An hour after the last interaction: one message each, with the right reason.
    cloud.advance(minutes=5, seconds=1)  # the deferral hid the messages until the hour, to the second
    cloud.drain()
    first = by_ref(webhook.accepted())
    for ref, (_raw, reason) in cases.items():
        got = [d.event["data"]["reason"] for d in first.get(ref, [])]
        assert got == ([reason] if reason else []), ref
        assert all(d.sent_at >= actionable for d in first.get(ref, []))

    # Replayed and duplicated events, and a redelivered batch: nothing more.
    replay = cloud.drain_queue(changes)
    assert replay
    republish(cloud, replay)
    republish(cloud, replay)
    cloud.wrap_handler("OutreachFunction", fail_after_success_once)
    cloud.drain()
    cloud.override_handler("OutreachFunction", None)
    cloud.advance(minutes=13)  # the failed batch's visibility timeout
    cloud.drain()
    poll(cloud)  # nothing changed at Leap: nothing new either
    assert len(webhook.accepted()) == sum(len(v) for v in first.values())

    # Staying stuck: reminders after each cooldown, never more than the maximum. The follow-up sweep
    # runs every SWEEP_EVERY here (hourly in the template); Leap is polled daily (the population moves on).
    audit = [m.body for m in cloud.drain_queue(outreach_audit)]
    end = start + MAX_ATTEMPTS * COOLDOWN + timedelta(days=1)
    while cloud.now() < end:
        cloud.advance(hours=SWEEP_EVERY.total_seconds() / 3600)
        if (cloud.now() - start) % timedelta(days=1) < SWEEP_EVERY:
            poll(cloud)
        cloud.fire_schedule("OutreachFunction")
        cloud.drain()
        audit += [m.body for m in cloud.drain_queue(outreach_audit)]  # SQS keeps messages 4 days
    everything = by_ref(webhook.accepted())
    for ref, (_raw, reason) in cases.items():
        messages = everything.get(ref, [])
        if reason is None:
            assert messages == [], ref
            continue
        assert [d.event["data"]["attempt"] for d in messages] == [1, 2, 3], ref
        assert {d.event["data"]["reason"] for d in messages} == {reason}
        times = [d.sent_at for d in messages]
        assert all(later - earlier >= COOLDOWN for earlier, later in itertools.pairwise(times))
        assert times[-1] - times[0] < 2 * (COOLDOWN + SWEEP_EVERY)

    # Every decision is audited, once.
    sent: dict[str, int] = defaultdict(int)
    for event in audit:
        Draft202012Validator(catalog.json_schema(event["type"])).validate(event)
        if event["type"] == catalog.OUTREACH_SENT:
            sent[event["subject"]] += 1
    assert all(sent[ref] == (3 if reason else 0) for ref, (_raw, reason) in cases.items())
    suppressed = {
        (e["subject"], e["data"]["suppressed_because"])
        for e in audit
        if e["type"] == catalog.OUTREACH_SUPPRESSED
    }
    assert ("s-other-utility", "other_utility") in suppressed
    assert ("s-completed", "completed") in suppressed
    assert webhook.rejected() == []
    assert not [
        record for record in cloud.errors if record.function == "OutreachFunction" and record.source != "sqs"
    ]

    _population_follows_the_rules(webhook, leap, set(cases))


def _population_follows_the_rules(
    webhook: WebhookReceiver, leap: LeapSimulator, scenario_refs: set[str]
) -> None:
    """The simulated customers, moving through the funnel meanwhile, got only messages that were due."""
    population = {ref: d for ref, d in by_ref(webhook.accepted()).items() if ref not in scenario_refs}
    assert population, "the population's stalled customers got messages too"
    for ref, messages in population.items():
        assert len(messages) <= MAX_ATTEMPTS, ref
        times = [d.sent_at for d in messages]
        assert all(later - earlier >= COOLDOWN for earlier, later in itertools.pairwise(times)), ref
        completed = leap.completed_at(ref)
        for delivery in messages:
            connection = delivery.event["data"]["connection"]
            last = parse_instant(connection[wire.ENTRY_LAST_INTERACTION])
            assert delivery.sent_at >= last + HOUR, ref  # never before the hour
            assert connection == leap.snapshot(ref, at=last), ref  # a state Leap really showed
            assert connection[wire.ENTRY_CONNECTION_STATUS] != wire.CONNECTION_COMPLETED
            assert completed is None or last < completed, ref
            assert delivery.event["data"]["reason"] == assess(connection).reason, ref


# --- the default deploy: the topic channel and the stack's OutreachRequestsQueue ---------------------


def _stalled_two_hours_ago(cloud: LocalCloud, leap: LeapSimulator) -> dict[str, Any]:
    raw, _reason = scenario(cloud.now() - 2 * HOUR)["s-not-connected"]
    leap.put_entry(raw)
    return raw


def _requests_for(cloud: LocalCloud, ref_id: str) -> list[dict[str, Any]]:
    """Drain the outreach requests queue as a partner would (by the stack output); this customer's."""
    requests = [message.body for message in cloud.drain_queue(cloud.outputs["OutreachRequestsQueueUrl"])]
    for request in requests:
        Draft202012Validator(catalog.json_schema(catalog.OUTREACH_REQUESTED)).validate(request)
    return [request for request in requests if request["subject"] == ref_id]


def test_by_default_a_stalled_customer_gets_one_request_in_the_outreach_requests_queue(
    default_cloud: LocalCloud, leap: LeapSimulator
) -> None:
    cloud = default_cloud
    audit = cloud.subscribe_queue("EventsTopic", {"type": [{"prefix": "outreach."}]})
    raw = _stalled_two_hours_ago(cloud, leap)

    poll(cloud)  # the last interaction is over an hour old: actionable at once

    (request,) = _requests_for(cloud, raw[wire.ENTRY_REF_ID])
    assert (request["type"], request["data"]["reason"], request["data"]["attempt"]) == (
        catalog.OUTREACH_REQUESTED,
        "utility_not_connected",
        1,
    )
    sent = [
        m.body
        for m in cloud.drain_queue(audit)
        if m.body["type"] == catalog.OUTREACH_SENT and m.body["subject"] == raw[wire.ENTRY_REF_ID]
    ]
    assert [(e["data"]["message_id"], e["data"]["channels"]) for e in sent] == [(request["id"], ["topic"])]

    cloud.advance(hours=1)  # the next sweep and poll: nothing more within the cooldown
    cloud.fire_schedule("OutreachFunction")
    poll(cloud)
    assert _requests_for(cloud, raw[wire.ENTRY_REF_ID]) == []
    assert not [record for record in cloud.errors if record.function == "OutreachFunction"]


def test_a_follow_up_sweep_with_failures_is_retried_then_lands_in_the_failure_queue(
    default_cloud: LocalCloud, leap: LeapSimulator
) -> None:
    cloud = default_cloud
    raw = _stalled_two_hours_ago(cloud, leap)
    poll(cloud)
    assert len(_requests_for(cloud, raw[wire.ENTRY_REF_ID])) == 1
    topic_arn = cloud.resources.topic_arn("OutreachTopic")

    cloud.advance(hours=COOLDOWN.total_seconds() / 3600, minutes=1)  # the reminder is due
    cloud.set_env("OutreachFunction", OUTREACH_TOPIC_ARN=topic_arn + "-gone")  # the topic refuses
    first = cloud.fire_schedule("OutreachFunction")
    for minutes in (1, 2):  # Lambda's two asynchronous retries
        cloud.advance(minutes=minutes)
        cloud.drain()

    assert type(first.error).__name__ == "FollowUpsFailed"
    (failure,) = [m.body for m in cloud.drain_queue("ScheduledRunFailureQueue")]
    assert failure["requestPayload"] == {"mode": "follow_up"}
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    assert failure["responsePayload"]["errorType"] == "FollowUpsFailed"

    cloud.set_env("OutreachFunction", OUTREACH_TOPIC_ARN=topic_arn)  # fixed: the customer stayed due
    cloud.fire_schedule("OutreachFunction")
    (reminder,) = _requests_for(cloud, raw[wire.ENTRY_REF_ID])
    assert (reminder["data"]["attempt"], reminder["data"]["reminder"]) == (2, True)
