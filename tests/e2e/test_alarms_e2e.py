"""The alarms as the local runner creates them in moto FROM template.yaml, against what really happens.

moto stores alarms but evaluates none, and turns no log line into a metric. So these tests check the
two things a deploy would otherwise find out at 3 a.m.:

- each alarm on a custom metric names a metric the handlers really emit: the same namespace, metric
  name and ``service`` dimension (name and value) as the Powertools EMF lines the functions print,
  run by the runner with the environment the template gives them, and the failure the alarm is for
  produces a value past its threshold;
- the emitter failure queue's alarm watches the queue the failed records land in, and the runbook's
  recovery (docs/operations.md#emitter-failure-queue: read the batch from the stream, hand it to the
  emitter) delivers the missing events, after which the queue the alarm counts is empty again.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from devtools.leap_simulator import LeapSimulator, http_error, server_error
from devtools.local_runner import LocalCloud
from devtools.webhook_receiver import WebhookReceiver
from leap_tracker import table
from leap_tracker.adapters.poller_store import snapshot_item
from leap_tracker.adapters.watch_store import item_from_watch
from leap_tracker.config import MeterWatchSettings
from leap_tracker.events.diff import change_events
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import validate_entry
from leap_tracker.meters import schedule
from leap_tracker.poller.ports import SnapshotWrite
from tests.builders import entry
from tests.e2e.support import EMITTER_TYPES, put_items
from tests.fakes.lambda_runtime import printed

FAST_LEAP = {"LEAP_BACKOFF_FACTOR": "0.001", "LEAP_MAX_RETRIES": "1"}


def alarms(cloud: LocalCloud) -> list[dict[str, Any]]:
    pages = cloud.client("cloudwatch").get_paginator("describe_alarms").paginate()
    return [alarm for page in pages for alarm in page["MetricAlarms"]]


def emitted(lines: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, str], float]]:
    """Every EMF data point printed: (namespace, metric, dimensions by name, value)."""
    points = []
    for line in lines:
        for definition in line.get("_aws", {}).get("CloudWatchMetrics", []):
            dimensions = {name: line[name] for names in definition["Dimensions"] for name in names}
            for metric in definition["Metrics"]:
                values = line[metric["Name"]]
                for value in values if isinstance(values, list) else [values]:
                    points.append((definition["Namespace"], metric["Name"], dimensions, float(value)))
    return points


def past_threshold(alarm: dict[str, Any], value: float) -> bool:
    threshold = alarm["Threshold"]
    return {
        "GreaterThanThreshold": value > threshold,
        "GreaterThanOrEqualToThreshold": value >= threshold,
        "LessThanThreshold": value < threshold,
        "LessThanOrEqualToThreshold": value <= threshold,
    }[alarm["ComparisonOperator"]]


def plant_stalled_customer(cloud: LocalCloud, now: datetime) -> None:
    """A customer who never started, two hours ago: outreach is due at once (the stream carries it)."""
    raw = entry(wire.CONNECTION_NOT_STARTED, [], ref_id="alarm-check", last=now - timedelta(hours=2))
    item = snapshot_item(SnapshotWrite(validate_entry(raw), 1), now)
    cloud.client("dynamodb").put_item(TableName=cloud.resources.table_name("ConnectionsTable"), Item=item)


def plant_due_watch(cloud: LocalCloud, leap: LeapSimulator, now: datetime) -> None:
    watch = schedule.new_watch(
        entry_id=f"CAISO_0001_{leap.ref_ids[0]}",
        ref_id=leap.ref_ids[0],
        transmission_region="CAISO",
        completed_at=now - timedelta(days=2),
        sequence=2,
        now=now - timedelta(days=2),
        settings=MeterWatchSettings(),
    )
    connection = {**table.connection_key(watch.entry_id), table.ITEM_TYPE: table.CONNECTION_ITEM_TYPE}
    put_items(cloud, [item_from_watch(watch), connection])


def test_the_runner_creates_every_alarm_on_the_stacks_own_queues_functions_and_topic(
    default_cloud: LocalCloud,
) -> None:
    cloud = default_cloud
    created = alarms(cloud)
    topic = cloud.resources.topic_arn("AlarmTopic")
    queues = {q.attributes["QueueName"] for q in cloud.resources.of_type("AWS::SQS::Queue")}
    functions = {f.ref for f in cloud.resources.of_type("AWS::Lambda::Function")}

    assert cloud.resources.not_emulated == {}
    assert sorted(a["AlarmName"] for a in created) == sorted(
        r.ref for r in cloud.resources.of_type("AWS::CloudWatch::Alarm")
    )
    for alarm in created:
        assert (alarm["AlarmActions"], alarm["OKActions"]) == ([topic], [topic]), alarm["AlarmName"]
        for dimension in alarm["Dimensions"]:  # the physical names the stack created
            known = {"QueueName": queues, "FunctionName": functions}.get(dimension["Name"])
            assert known is None or dimension["Value"] in known, alarm["AlarmName"]
    board = cloud.client("cloudwatch").get_dashboard(DashboardName=cloud.outputs["OperationsDashboardName"])
    (alarm_widget,) = [w for w in json.loads(board["DashboardBody"])["widgets"] if w["type"] == "alarm"]
    assert sorted(alarm_widget["properties"]["alarms"]) == sorted(a["AlarmArn"] for a in created)


def test_each_custom_metric_alarm_watches_what_its_handler_emits_when_that_failure_happens(
    cloud: LocalCloud, leap: LeapSimulator, webhook: WebhookReceiver, capsys: Any
) -> None:
    cloud.set_env(**FAST_LEAP)
    now = cloud.advance(days=1)
    cloud.fire_schedule("PollerFunction")  # a completed pass: the freshness metric
    cloud.drain()
    leap.inject(http_error(401), times=1)  # Leap refuses the key: the auth metric
    assert cloud.fire_schedule("PollerFunction").failed
    plant_due_watch(cloud, leap, now)
    leap.inject(server_error(), times=None, path=wire.METERS_SEARCH_PATH)  # the Meters API fails
    assert cloud.fire_schedule("MeterSweepFunction").failed
    webhook.fail_next(1000)  # the webhook refuses: the delivery metric
    plant_stalled_customer(cloud, now)
    cloud.drain()
    url = cloud.function_url("WebhookReceiverFunction")  # a call without the secret: the refusal metric
    assert cloud.call_function_url(url, "POST", {"x-api-key": "not-the-secret"}, b"{}")[0] == 401

    points = emitted(printed(capsys)[1])
    custom = [a for a in alarms(cloud) if not a["Namespace"].startswith("AWS/")]
    assert {a["MetricName"] for a in custom} == {
        "PollPassCompleted",
        "LeapAuthFailures",
        "MetersApiFailures",
        "OutreachDeliveryFailures",
        "WebhooksRefused",
    }
    for alarm in custom:
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        values = [
            value
            for namespace, metric, emitted_dimensions, value in points
            if (namespace, metric, emitted_dimensions)
            == (alarm["Namespace"], alarm["MetricName"], dimensions)
        ]
        assert values, f"{alarm['AlarmName']}: no handler emitted {alarm['MetricName']} with {dimensions}"
        if alarm["TreatMissingData"] == "breaching":  # freshness: a completed pass keeps it OK
            assert any(not past_threshold(alarm, v) for v in values), alarm["AlarmName"]
        else:
            assert any(past_threshold(alarm, v) for v in values), alarm["AlarmName"]


# --- the emitter failure queue: its alarm, and the runbook's recovery ----------------------------


def broken_while(broken: dict[str, bool]) -> Callable[[Any], Any]:
    """Wrap the emitter: every invocation fails while ``broken["now"]`` (a topic gone, a key policy...)."""

    def wrap(handler: Any) -> Any:
        def maybe_failing(event: Any, context: Any) -> Any:
            if broken["now"]:
                raise RuntimeError("SNS refused every publish")
            return handler(event, context)

        return maybe_failing

    return wrap


def as_cli_output(value: Any) -> Any:
    """A boto3 answer as the AWS CLI v2 prints it: binary as base64, instants as ISO 8601."""

    def text(item: Any) -> str:
        if isinstance(item, bytes):
            return base64.b64encode(item).decode()
        if isinstance(item, datetime):
            return item.isoformat()
        raise TypeError(type(item))

    return json.loads(json.dumps(value, default=text))


def up_to(sequence_number: str, end: str) -> bool:
    """The runbook's jq ``upto``: digit strings compared as numbers (by length, then by text)."""
    return len(sequence_number) < len(end) or (len(sequence_number) == len(end) and sequence_number <= end)


def runbook_payload(cloud: LocalCloud, batch: dict[str, Any]) -> dict[str, Any]:
    """docs/operations.md#emitter-failure-queue, step by step, with boto3 in place of the CLI."""
    streams = cloud.client("dynamodbstreams")
    iterator = streams.get_shard_iterator(
        StreamArn=batch["streamArn"],
        ShardId=batch["shardId"],
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        SequenceNumber=batch["startSequenceNumber"],
    )["ShardIterator"]
    records = as_cli_output(streams.get_records(ShardIterator=iterator, Limit=1000))["Records"]
    return {
        "Records": [
            r
            for r in records
            if up_to(r["dynamodb"]["SequenceNumber"], batch["endSequenceNumber"])
            and r["eventName"] != "REMOVE"
            and r["dynamodb"]["Keys"][table.PK]["S"].startswith(table.CONNECTION_PREFIX)
        ]
    }


def visible(cloud: LocalCloud, queue: str) -> int:
    """What AWS/SQS ApproximateNumberOfMessagesVisible reports for the queue."""
    attributes = cloud.client("sqs").get_queue_attributes(
        QueueUrl=cloud.resources.queue_url(queue), AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_failed_changes_set_off_the_failure_queue_alarm_and_the_runbook_recovers_their_events(
    cloud: LocalCloud, leap: LeapSimulator
) -> None:
    partner = cloud.subscribe_queue("EventsTopic")
    broken = {"now": True}
    cloud.wrap_handler("EmitterFunction", broken_while(broken))
    cloud.advance(days=1)
    cloud.fire_schedule("PollerFunction")
    entries = leap.entries_at(cloud.now())
    cloud.drain()  # the emitter fails every retry: each record ends in the failure queue

    queue = cloud.resources["EmitterFailureQueue"].attributes["QueueName"]
    (alarm,) = [
        a
        for a in alarms(cloud)
        if a["MetricName"] == "ApproximateNumberOfMessagesVisible"
        and a["Dimensions"] == [{"Name": "QueueName", "Value": queue}]
    ]
    assert entries
    assert past_threshold(alarm, visible(cloud, "EmitterFailureQueue"))
    assert cloud.drain_queue(partner) == []  # nothing reached the partner

    broken["now"] = False  # the cause is fixed
    sqs, failures = cloud.client("sqs"), cloud.resources.queue_url("EmitterFailureQueue")
    while messages := sqs.receive_message(QueueUrl=failures, MaxNumberOfMessages=1).get("Messages"):
        batch = json.loads(messages[0]["Body"])["DDBStreamBatchInfo"]
        payload = runbook_payload(cloud, batch)
        assert len(payload["Records"]) == batch["batchSize"]
        assert cloud.invoke("EmitterFunction", payload) == {"batchItemFailures": []}
        sqs.delete_message(QueueUrl=failures, ReceiptHandle=messages[0]["ReceiptHandle"])

    assert not past_threshold(alarm, visible(cloud, "EmitterFailureQueue"))  # back to OK
    events = [m.body for m in cloud.drain_queue(partner) if m.body["type"] in EMITTER_TYPES]
    expected = {e["id"] for raw in entries for e in change_events(None, raw, 1)}
    assert sorted(e["id"] for e in events) == sorted(expected)  # every missing event, once
