"""The SNS subscriptions and SQS mappings of template.yaml, played by the local runner against moto.

Messages are published to the events topic exactly as the emitter will (raw JSON body, filterable
message attributes), so the template's filter policies decide who receives what.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.local_runner import LocalCloud

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
FAKE_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:leap-api-key"
SQS_SAMPLE = Path(__file__).resolve().parents[2] / "events" / "sqs-receive-message.json"
OUTREACH = "OutreachFunction"
METER_WATCH = "MeterWatchFunction"


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(TEMPLATE, parameters={"LeapApiKeySecretArn": FAKE_SECRET_ARN}) as local:
        yield local


def visibility_timeout(cloud: LocalCloud, queue: str) -> int:
    return int(cloud.resources[queue].properties["VisibilityTimeout"])


def publish(cloud: LocalCloud, event_type: str, name: str, **attributes: str) -> None:
    values = {"type": event_type, **attributes}
    cloud.client("sns").publish(
        TopicArn=cloud.resources.topic_arn("EventsTopic"),
        Message=json.dumps({"type": event_type, "name": name}),
        MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in values.items()},
    )


class Recorder:
    """Remembers every batch (by the body's name) and fails the names it is told to."""

    def __init__(self, failing: set[str] | None = None, raise_error: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.events: list[dict[str, Any]] = []
        self.failing = failing or set()
        self.raise_error = raise_error

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        names = [json.loads(record["body"])["name"] for record in event["Records"]]
        self.batches.append(names)
        if self.raise_error:
            raise RuntimeError("whole batch fails")
        failed = [r["messageId"] for r in event["Records"] if json.loads(r["body"])["name"] in self.failing]
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


def test_subscriber_records_have_the_exact_lambda_sqs_shape(cloud: LocalCloud) -> None:
    recorder = Recorder()
    cloud.override_handler(OUTREACH, recorder)
    publish(cloud, "connection.partial", "p1", connection_status="PARTIAL")

    cloud.drain()

    (record,) = recorder.events[0]["Records"]
    sample = json.loads(SQS_SAMPLE.read_text())["Records"][0]
    assert set(record) == set(sample)
    assert set(sample["attributes"]) <= set(record["attributes"])
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == cloud.resources.queue_arn("OutreachQueue")
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert json.loads(record["body"]) == {"type": "connection.partial", "name": "p1"}  # raw delivery
    assert record["messageAttributes"]["connection_status"] == {
        "stringValue": "PARTIAL",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }


def test_template_filter_policies_route_each_type_to_its_subscribers(cloud: LocalCloud) -> None:
    outreach, meter_watch = Recorder(), Recorder()
    cloud.override_handler(OUTREACH, outreach)
    cloud.override_handler(METER_WATCH, meter_watch)
    outreach_types = cloud.resources["OutreachSubscription"].properties["FilterPolicy"]["type"]
    meter_types = cloud.resources["MeterWatchSubscription"].properties["FilterPolicy"]["type"]
    unwanted = "meter.appeared"  # goes to neither subscriber
    assert unwanted not in outreach_types + meter_types
    for event_type in {*outreach_types, *meter_types, unwanted}:
        publish(cloud, event_type, event_type)

    cloud.drain()

    assert sorted(n for batch in outreach.batches for n in batch) == sorted(outreach_types)
    assert sorted(n for batch in meter_watch.batches for n in batch) == sorted(meter_types)


def test_partial_failure_redelivers_only_the_failed_message_after_the_visibility_timeout(
    cloud: LocalCloud,
) -> None:
    recorder = Recorder(failing={"b"})
    cloud.override_handler(OUTREACH, recorder)
    for name in ("a", "b", "c"):
        publish(cloud, "connection.started", name)

    timeout = visibility_timeout(cloud, "OutreachQueue")
    cloud.drain()
    assert sorted(recorder.batches[0]) == ["a", "b", "c"]
    assert len(recorder.batches) == 1  # b is in flight: invisible until the timeout

    cloud.advance(seconds=timeout - 1)
    cloud.drain()
    assert len(recorder.batches) == 1

    recorder.failing = set()
    cloud.advance(seconds=2)  # moto makes a message visible strictly after the timeout
    cloud.drain()
    assert recorder.batches[1:] == [["b"]]
    assert recorder.events[1]["Records"][0]["attributes"]["ApproximateReceiveCount"] == "2"

    cloud.advance(hours=1)
    assert cloud.drain() == 0  # a and c were deleted, b succeeded


def test_an_exception_fails_the_whole_batch(cloud: LocalCloud) -> None:
    recorder = Recorder(raise_error=True)
    cloud.override_handler(OUTREACH, recorder)
    publish(cloud, "connection.started", "a")
    publish(cloud, "connection.started", "b")

    cloud.drain()
    recorder.raise_error = False
    cloud.advance(seconds=visibility_timeout(cloud, "OutreachQueue") + 1)
    cloud.drain()

    assert sorted(recorder.batches[0]) == sorted(recorder.batches[1]) == ["a", "b"]


def test_a_message_that_keeps_failing_moves_to_the_dead_letter_queue_after_max_receive_count(
    cloud: LocalCloud,
) -> None:
    recorder = Recorder(failing={"doomed"})
    cloud.override_handler(METER_WATCH, recorder)
    publish(cloud, "connection.completed", "doomed")
    max_receives = cloud.resources["MeterWatchQueue"].properties["RedrivePolicy"]["maxReceiveCount"]

    for _ in range(max_receives + 3):
        cloud.drain()
        cloud.advance(seconds=visibility_timeout(cloud, "MeterWatchQueue") + 1)

    assert recorder.batches == [["doomed"]] * max_receives
    (dead,) = cloud.drain_queue("MeterWatchDeadLetterQueue")
    assert dead.body == {"type": "connection.completed", "name": "doomed"}
    assert dead.attributes["type"] == "connection.completed"


def test_a_visibility_change_by_the_handler_decides_when_the_message_returns(cloud: LocalCloud) -> None:
    calls: list[str] = []

    def retry_in_30_seconds(event: dict[str, Any], context: Any) -> dict[str, Any]:
        record = event["Records"][0]
        calls.append(record["attributes"]["ApproximateReceiveCount"])
        cloud.client("sqs").change_message_visibility(
            QueueUrl=cloud.resources.queue_url("OutreachQueue"),
            ReceiptHandle=record["receiptHandle"],
            VisibilityTimeout=30,
        )
        return {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}

    cloud.override_handler(OUTREACH, retry_in_30_seconds)
    publish(cloud, "connection.started", "x")
    cloud.drain()
    cloud.advance(seconds=30)
    cloud.drain()
    assert calls == ["1"]
    cloud.advance(seconds=1)  # well before the queue's own visibility timeout
    cloud.drain()
    assert calls == ["1", "2"]


def test_an_unknown_item_identifier_fails_the_whole_batch(cloud: LocalCloud) -> None:
    deliveries: list[int] = []

    def bad_report(event: dict[str, Any], context: Any) -> dict[str, Any]:
        deliveries.append(len(event["Records"]))
        return {"batchItemFailures": [{"itemIdentifier": "not-a-message-id"}]}

    cloud.override_handler(OUTREACH, bad_report)
    publish(cloud, "connection.started", "a")
    cloud.drain()
    cloud.advance(seconds=visibility_timeout(cloud, "OutreachQueue") + 1)
    cloud.drain()

    assert deliveries == [1, 1]


def test_partner_queues_get_what_their_filter_policy_asks_for(cloud: LocalCloud) -> None:
    errors_only = cloud.subscribe_queue(
        "EventsTopic", {"type": [{"prefix": "utility."}], "error_code": [{"exists": True}]}
    )
    everything_enveloped = cloud.subscribe_queue("EventsTopic", raw=False)
    by_body = cloud.subscribe_queue("EventsTopic", {"name": ["wanted"]}, scope="MessageBody")
    publish(cloud, "utility.error", "wanted", error_code="E42")
    publish(cloud, "utility.connected", "other")
    publish(cloud, "connection.completed", "other")

    assert [(m.body["name"], m.attributes) for m in cloud.drain_queue(errors_only)] == [
        ("wanted", {"type": "utility.error", "error_code": "E42"})
    ]
    enveloped = cloud.drain_queue(everything_enveloped)
    assert [m.body["type"] for m in enveloped] == [
        "utility.error",
        "utility.connected",
        "connection.completed",
    ]
    assert enveloped[0].envelope is not None
    assert enveloped[0].envelope["Type"] == "Notification"
    assert enveloped[0].attributes["error_code"] == "E42"
    assert [m.body["name"] for m in cloud.drain_queue(by_body)] == ["wanted"]


def test_sqs_filter_criteria_deliver_matches_and_delete_the_rest(cloud: LocalCloud) -> None:
    recorder = Recorder()
    cloud.override_handler(OUTREACH, recorder)
    mapping = cloud.sqs_mappings["OutreachFunctionOutreachQueue"]
    mapping.patterns = [{"body": {"name": [{"prefix": "keep"}]}}]  # Lambda filters on the parsed body
    publish(cloud, "connection.started", "keep-1")
    publish(cloud, "connection.started", "drop-1")

    cloud.drain()
    cloud.advance(seconds=visibility_timeout(cloud, "OutreachQueue") + 1)
    cloud.drain()

    assert recorder.batches == [["keep-1"]]
    assert mapping.filtered_out == 1
    assert cloud.drain_queue("OutreachQueue") == []  # the filtered message was deleted, not left in flight
