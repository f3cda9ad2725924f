"""Every SQS subscriber (meter_watch, outreach) on poison messages, in moto.

A poison record is reported alone in a partial batch response, even when every record of the batch is
poison (Powertools would raise by default), and leaves one log line naming its message id and why,
never its body. The poison record is ``events/sqs-receive-message.json``, exactly what
``sam local generate-event sqs receive-message`` prints (its body is not a CloudEvent). Each handler
gets its dependencies built from the test's environment, as its cold start builds them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import time_machine
from aws_lambda_powertools.utilities.parameters import base as parameters_base
from moto import mock_aws

from devtools.local_runner.aws_calls import CallCounter
from devtools.local_runner.shapes import sqs_record
from devtools.template_tables import create_connections_table
from functions.meter_watch import app as watch_app
from functions.outreach import app as outreach_app
from leap_tracker.adapters.poller_store import snapshot_item
from leap_tracker.config import load_settings
from leap_tracker.events.diff import change_events
from leap_tracker.leap.connect_model import validate_entry
from leap_tracker.poller.ports import SnapshotWrite
from leap_tracker.privacy import Pseudonyms
from tests.builders import LAST_INTERACTION, stalled_examples
from tests.fakes.lambda_runtime import FakeLambdaContext, emf_metrics, logs_in_capture, printed

EVENTS = Path(__file__).resolve().parents[2] / "events"
REGION = "us-east-1"
TABLE = "connections"
POISON_REF_ID = "PoisonRef42"


def sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


POISON = sample("sqs-receive-message.json")["Records"][0]
POISON_BODIES = [
    POISON["body"],  # "Hello from SQS!": not JSON
    "[1, 2]",  # JSON, not an event
    json.dumps({"type": "connection.completed", "subject": POISON_REF_ID, "data": {"connection": {}}}),
]


def poison(message_id: str, body: str) -> dict[str, Any]:
    return {**copy.deepcopy(POISON), "messageId": message_id, "body": body}


@dataclass(frozen=True)
class Subscriber:
    app: ModuleType
    failed_metric: str
    good_sample: str  # a sample record the subscriber handles without failing

    def invoke(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return self.handle({"Records": records})

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        """The handler on ``event``, with what a cold start in the test's environment builds."""
        deps = self.app.build_dependencies(load_settings())
        return self.app.lambda_handler(event, FakeLambdaContext(), deps)


METER_WATCH = Subscriber(watch_app, "MeterWatchRecordsFailed", "sqs-meter-watch-completed.json")
# No snapshot is stored for the sample's customer: outreach suppresses it, a success.
OUTREACH = Subscriber(outreach_app, "OutreachRecordsFailed", "sqs-outreach-agreement-pending.json")
SUBSCRIBERS = pytest.mark.parametrize("subscriber", [METER_WATCH, OUTREACH], ids=["meter_watch", "outreach"])


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with time_machine.travel(LAST_INTERACTION + timedelta(minutes=30), tick=False), mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_connections_table(dynamodb, TABLE)
        monkeypatch.setenv("CONNECTIONS_TABLE", TABLE)
        sns = boto3.client("sns", region_name=REGION)
        monkeypatch.setenv("EVENTS_TOPIC_ARN", sns.create_topic(Name="events")["TopicArn"])
        monkeypatch.setenv("OUTREACH_CHANNELS", "topic")
        monkeypatch.setenv("OUTREACH_TOPIC_ARN", sns.create_topic(Name="outreach")["TopicArn"])
        yield dynamodb


def rejections(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["message_id"]: line for line in lines if line.get("message") == "record rejected"}


def failed_ids(response: dict[str, Any]) -> list[str]:
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


@SUBSCRIBERS
def test_the_generated_sqs_event_is_reported_and_logged_without_its_body(
    aws: Any, subscriber: Subscriber, capsys: pytest.CaptureFixture[str]
) -> None:
    event = sample("sqs-receive-message.json")

    with logs_in_capture(subscriber.app.logger):
        response = subscriber.handle(event)

    assert response == {"batchItemFailures": [{"itemIdentifier": POISON["messageId"]}]}
    text, lines = printed(capsys)
    line = rejections(lines)[POISON["messageId"]]
    assert line["level"] == "WARNING"
    assert line["exception_type"] == "JSONDecodeError"
    assert line["reason"] == "Expecting value: line 1 column 1 (char 0)"
    assert line["receive_count"] == 1
    assert POISON["body"] not in text
    assert emf_metrics(lines)[subscriber.failed_metric] == [1]


@SUBSCRIBERS
def test_a_batch_of_poison_only_is_reported_record_by_record(
    aws: Any, subscriber: Subscriber, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [poison(f"poison-{n}", body) for n, body in enumerate(POISON_BODIES)]

    with logs_in_capture(subscriber.app.logger):
        response = subscriber.invoke(records)

    assert failed_ids(response) == ["poison-0", "poison-1", "poison-2"]
    text, lines = printed(capsys)
    assert sorted(rejections(lines)) == ["poison-0", "poison-1", "poison-2"]
    assert POISON["body"] not in text
    assert POISON_REF_ID not in text
    assert emf_metrics(lines)[subscriber.failed_metric] == [3]


@SUBSCRIBERS
def test_in_a_mixed_batch_only_the_poison_record_is_reported(
    aws: Any, subscriber: Subscriber, capsys: pytest.CaptureFixture[str]
) -> None:
    (good,) = sample(subscriber.good_sample)["Records"]

    with logs_in_capture(subscriber.app.logger):
        response = subscriber.invoke([good, POISON])

    assert failed_ids(response) == [POISON["messageId"]]
    _, lines = printed(capsys)
    assert list(rejections(lines)) == [POISON["messageId"]]
    assert emf_metrics(lines)[subscriber.failed_metric] == [1]


def test_meter_watch_opens_the_good_record_of_a_mixed_batch(aws: Any) -> None:
    (good,) = sample(METER_WATCH.good_sample)["Records"]
    entry_id = json.loads(good["body"])["data"]["connection"]["id"]

    METER_WATCH.invoke([POISON, good])

    assert watch_app.build_dependencies(load_settings()).store.get(entry_id) is not None


def test_an_outreach_deferral_is_a_reported_failure_but_not_a_rejection(
    aws: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = stalled_examples()["not_started"]  # last interaction 30 min ago: not actionable yet
    stored = snapshot_item(SnapshotWrite(validate_entry(raw), 1), datetime.now(UTC))
    aws.put_item(TableName=TABLE, Item=stored)
    deferred = enqueued_record(change_events(None, raw, 1)[0])

    with logs_in_capture(OUTREACH.app.logger):
        response = OUTREACH.invoke([deferred, POISON])

    assert failed_ids(response) == [deferred["messageId"], POISON["messageId"]]
    _, lines = printed(capsys)
    assert list(rejections(lines)) == [POISON["messageId"]]  # the deferral is no warning
    metrics = emf_metrics(lines)
    assert (metrics["OutreachDeferred"], metrics["OutreachRecordsFailed"]) == ([1], [1])


def enqueued_record(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` sent to and received from a real (moto) queue: deferring changes its visibility."""
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="outreach-queue")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))
    (message,) = sqs.receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"]
    return sqs_record(message, arn, REGION)


STACK_LOG_HASH_KEY = "R8vJq2LmX5cT9wZp1KbN7dYf3HsA6eGu0QiVoMxCzWlEtBrUjPkSnDgFhIaYyO4q"  # 64, as generated


@SUBSCRIBERS
def test_a_cold_start_reads_the_log_hash_key_once_and_lines_name_the_customer_by_its_pseudonym(
    aws: Any, subscriber: Subscriber, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = boto3.client("secretsmanager", region_name=REGION)
    arn = secrets.create_secret(Name="log-hash-key", SecretString=STACK_LOG_HASH_KEY)["ARN"]
    monkeypatch.setenv("LOG_HASH_KEY_SECRET_ARN", arn)  # wins over the tests' LOG_HASH_KEY
    # A new sandbox: Powertools' providers (cleared in place, as the local runner's cold start does)
    # and boto3's default session are made anew, with the call counter in them.
    parameters_base.DEFAULT_PROVIDERS.clear()
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    (good,) = sample(subscriber.good_sample)["Records"]
    connection = json.loads(good["body"])["data"]["connection"]
    calls = CallCounter()
    calls.install()
    calls.current_function = subscriber.app.__name__
    try:
        deps = subscriber.app.build_dependencies(load_settings())  # the cold start
        with logs_in_capture(subscriber.app.logger):
            for _ in range(2):  # warm invocations read nothing more
                subscriber.app.lambda_handler({"Records": [good]}, FakeLambdaContext(), deps)
    finally:
        calls.uninstall()

    assert calls.totals()[("secretsmanager", "GetSecretValue")] == 1
    text, lines = printed(capsys)
    assert connection["id"] not in text
    assert connection["ref_id"] not in text
    pseudonym = Pseudonyms.from_secret(STACK_LOG_HASH_KEY).entry(connection["id"])
    assert [line.get("entry") for line in lines if line.get("message") in DECISION_LINES] == [pseudonym] * 2


DECISION_LINES = {"meter watch", "outreach decision"}  # one per record, naming its customer
