"""The partner's path end to end: subscriber stacks deployed from subscriber/template.yaml next to the
main stack (LocalCloud.deploy_subscriber), fed by the Leap simulator -> poller -> emitter -> SNS.

- Two stacks with the ready policies ``completions`` and ``errors-in-caiso`` receive exactly the
  events their policies describe (the claims of tests/builders.py, written apart from the policies).
- The sample consumer applies each entry's events once and in sequence although its queue delivers
  the run's events shuffled, a third of them twice.
- A poison message ends in the stack's dead-letter queue and its alarm fires; the oldest-message
  alarm fires on a queue nobody reads. moto evaluates no alarm: the runner evaluates the SQS-metric
  alarms from the queues (``LocalCloud.evaluate_alarms``, docs/local-runner.md).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.leap_simulator import LeapSimulator
from devtools.local_runner import LocalCloud, PartnerMessage, SubscriberStack
from subscriber.consumer import app as consumer_app
from tests.builders import CLAIMS
from tests.e2e.conftest import E2E_CUSTOMERS, E2E_START
from tests.e2e.support import emitted, expected_events, run_polls

SUBSCRIBED = ("completions", "errors-in-caiso")  # two ready policies, one stack each
POLLS = 9  # three days, every 8 hours
SEED = 4  # the conftest's population has no CAISO error; this one has three, and completions, in 3 days
POISON = "{this is not an event"


@pytest.fixture
def leap() -> Iterator[LeapSimulator]:
    """The conftest's simulator with another seed (the ``cloud`` fixture uses this one)."""
    with LeapSimulator(seed=SEED, customers=E2E_CUSTOMERS, start=E2E_START) as simulator:
        yield simulator


def test_two_subscriber_stacks_receive_exactly_what_their_policies_describe(
    cloud: LocalCloud, leap: LeapSimulator
) -> None:
    stacks = {name: cloud.deploy_subscriber(name, {"FilterPolicyName": name}) for name in SUBSCRIBED}
    queues = {"everything": cloud.subscribe_queue("EventsTopic")}
    queues |= {name: stack.queue_url for name, stack in stacks.items()}

    run = run_polls(cloud, leap, queues, polls=POLLS)

    expected = expected_events(run.histories)
    tap = {m.body["id"]: m for m in run.received["everything"]}
    assert {e["id"] for e in emitted(run.received["everything"])} == set(expected)
    for name, stack in stacks.items():
        received = run.received[name]
        ids = [m.body["id"] for m in received]
        assert ids, f"{name}: the run must exercise it"
        assert len(ids) == len(set(ids)), name  # no duplicate without a failure
        assert set(ids) == {i for i, e in expected.items() if CLAIMS[name](e)}, name
        assert set(ids) == {i for i, m in tap.items() if CLAIMS[name](m.body)}, name  # nothing else either
        assert all(m.attributes == tap[m.body["id"]].attributes for m in received)  # raw, attributes kept
        assert _left_in_dead_letter_queues(cloud, stack) == 0


def test_the_sample_consumer_applies_each_entrys_events_once_and_in_sequence(
    cloud: LocalCloud, leap: LeapSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = cloud.deploy_subscriber("consumer", {"DeploySampleConsumer": "true"})  # no filter: every event
    mapping = cloud.sqs_mappings[stack.function_id("ConsumerFunctionQueue")]
    mapping.enabled = False  # hold the queue while the run fills it
    run_polls(cloud, leap, {}, polls=POLLS)
    held = cloud.drain_queue(stack.queue_url)
    # Redeliver as SNS and SQS may: out of order, some twice.
    rng = random.Random(13)
    redelivered = held + rng.sample(held, len(held) // 3)
    rng.shuffle(redelivered)
    for message in redelivered:
        _send(cloud, stack.queue_url, message)
    applied: list[dict[str, Any]] = []
    original = consumer_app.apply
    monkeypatch.setattr(consumer_app, "apply", lambda event: (applied.append(event), original(event)))

    mapping.enabled = True
    cloud.drain()
    consumer = stack.function_id("ConsumerFunction")

    assert not cloud.errors
    assert _left_in_dead_letter_queues(cloud, stack) == 0
    ids = [event["id"] for event in applied]
    assert len(ids) == len(set(ids))  # once each, though a third came twice
    by_entry: dict[str, list[int]] = defaultdict(list)
    for event in applied:
        if "connection" in event["data"]:
            by_entry[event["data"]["connection"]["id"]].append(int(event["sequence"]))
    assert all(sequences == sorted(sequences) for sequences in by_entry.values())  # never backwards
    latest = _latest_sequences(held)
    assert by_entry.keys() == latest.keys()
    assert _applied_sequences(cloud, stack) == latest
    # Every event of an entry's latest change is applied; older ones only if they came in time.
    newest = {m.body["id"] for m in held if _entry(m.body) and _sequence(m) == latest[_entry(m.body)]}
    assert newest <= set(ids)
    assert len(set(ids)) < len(held)  # the shuffle did make some events arrive late, and they were ignored
    others = {m.body["id"] for m in held if _entry(m.body) is None}  # meter and outreach events
    assert others
    assert others <= set(ids)
    # Every AWS call the consumer made is one its role allows (moto enforces no IAM).
    calls = {f"{service}:{operation}" for service, operation in cloud.aws_calls_by_function[consumer]}
    assert calls
    assert calls <= _allowed_actions(stack, "ConsumerFunctionRole")


def test_a_poison_message_reaches_the_dead_letter_queue_and_its_alarm_fires(cloud: LocalCloud) -> None:
    stack = cloud.deploy_subscriber(
        "completions", {"FilterPolicyName": "completions", "DeploySampleConsumer": "true"}
    )
    alarms = cloud.subscribe_queue(stack.outputs["AlarmTopicArn"], raw=False)
    cloud.client("sns").publish(
        TopicArn=cloud.outputs["EventsTopicArn"],
        Message=POISON,
        MessageAttributes={"type": {"DataType": "String", "StringValue": "connection.completed"}},
    )
    visibility = int(stack.resources["Queue"].properties["VisibilityTimeout"])
    receives = int(stack.resources["Queue"].properties["RedrivePolicy"]["maxReceiveCount"])

    assert _states(cloud, stack) == {"dead-letter-queue": "OK", "undelivered": "OK", "oldest-message": "OK"}
    for _ in range(receives + 1):  # each receive fails; the one after the last moves it aside
        cloud.drain()
        cloud.advance(seconds=visibility + 1)
    cloud.drain()

    consumer = [r for r in cloud.invocations if r.function == stack.function_id("ConsumerFunction")]
    assert len(consumer) == receives
    assert all(r.result["batchItemFailures"] for r in consumer)  # reported, not raised
    assert _states(cloud, stack) == {
        "dead-letter-queue": "ALARM",
        "undelivered": "OK",
        "oldest-message": "OK",
    }
    [notification] = [json.loads(m.envelope["Message"]) for m in cloud.drain_queue(alarms)]
    assert notification["AlarmName"] == "completions-dead-letter-queue"
    assert notification["NewStateValue"] == "ALARM"

    [dead] = cloud.drain_queue(stack.outputs["DeadLetterQueueUrl"])  # dealt with: read and deleted
    assert dead.body == POISON

    assert _states(cloud, stack)["dead-letter-queue"] == "OK"
    [back] = [json.loads(m.envelope["Message"]) for m in cloud.drain_queue(alarms)]
    assert (back["AlarmName"], back["NewStateValue"]) == ("completions-dead-letter-queue", "OK")


def test_the_oldest_message_alarm_fires_on_a_queue_nobody_reads(cloud: LocalCloud) -> None:
    stack = cloud.deploy_subscriber("completions", {"FilterPolicyName": "completions"})  # no consumer
    threshold = int(stack.parameters["OldestMessageAlarmSeconds"])
    cloud.client("sns").publish(
        TopicArn=cloud.outputs["EventsTopicArn"],
        Message=json.dumps({"id": "e-1"}),
        MessageAttributes={"type": {"DataType": "String", "StringValue": "connection.completed"}},
    )

    cloud.advance(seconds=threshold)
    assert _states(cloud, stack)["oldest-message"] == "OK"  # not older than the threshold yet
    cloud.advance(seconds=1)
    assert _states(cloud, stack)["oldest-message"] == "ALARM"
    cloud.drain_queue(stack.queue_url)
    assert _states(cloud, stack)["oldest-message"] == "OK"


# --- helpers --------------------------------------------------------------------------------------------


def _states(cloud: LocalCloud, stack: SubscriberStack) -> dict[str, str]:
    """The stack's alarms (by name without the stack prefix) as the runner evaluates them now."""
    prefix = f"{stack.name}-"
    return {
        e.name.removeprefix(prefix): e.state for e in cloud.evaluate_alarms() if e.name.startswith(prefix)
    }


def _left_in_dead_letter_queues(cloud: LocalCloud, stack: SubscriberStack) -> int:
    urls = (stack.outputs["DeadLetterQueueUrl"], stack.outputs["SubscriptionDeadLetterQueueUrl"])
    return sum(len(cloud.drain_queue(url, delete=False)) for url in urls)


def _send(cloud: LocalCloud, url: str, message: PartnerMessage) -> None:
    attributes = {
        name: {"DataType": "String", "StringValue": value} for name, value in message.attributes.items()
    }
    cloud.client("sqs").send_message(
        QueueUrl=url, MessageBody=json.dumps(message.body), MessageAttributes=attributes
    )


def _entry(event: dict[str, Any]) -> str | None:
    connection = event["data"].get("connection")
    return connection["id"] if connection is not None else None


def _sequence(message: PartnerMessage) -> int:
    return int(message.body["sequence"])


def _latest_sequences(messages: list[PartnerMessage]) -> dict[str, int]:
    latest: dict[str, int] = {}
    for message in messages:
        entry = _entry(message.body)
        if entry is not None:
            latest[entry] = max(latest.get(entry, 0), int(message.body["sequence"]))
    return latest


def _allowed_actions(stack: SubscriberStack, role: str) -> set[str]:
    policies = stack.resources[role].properties["Policies"]
    statements = [s for policy in policies for s in policy["PolicyDocument"]["Statement"]]
    return {
        action
        for s in statements
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }


def _applied_sequences(cloud: LocalCloud, stack: SubscriberStack) -> dict[str, int]:
    table = stack.outputs["AppliedSequencesTableName"]
    items = cloud.client("dynamodb").scan(TableName=table)["Items"]
    return {item["entry_id"]["S"]: int(item["sequence"]["N"]) for item in items}
