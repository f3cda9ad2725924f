"""Targeted poll requests on moto (docs/webhooks.md#targeted-polls): ``SqsPollRequests`` (what the webhook
processor calls for a Connect-session webhook), ``DynamoPollMarks`` held to the in-memory marks'
contract, and the poller handler's SQS path: a batch of requests answered with a partial batch
response, the deferrals set on the queue, the requeue, the metrics and the logs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from botocore.exceptions import ClientError

from devtools.leap_simulator import LeapSimulator
from devtools.local_runner.shapes import sqs_record
from functions.poller import app
from leap_tracker import table
from leap_tracker.adapters.aws import aws_client
from leap_tracker.adapters.poll_requests import DynamoPollMarks, SqsPollRequests
from leap_tracker.config import TargetedPollSettings, load_settings
from leap_tracker.webhooks.targeted import (
    REQUEUE_AT_RECEIVE,
    InvalidPollRequestMessage,
    PollRequestMessage,
    parse_request_body,
    request_body,
)
from tests.fakes.lambda_runtime import FakeLambdaContext, emf_metrics, logs_in_capture, printed
from tests.fakes.poller import MemoryPollMarks

NOW = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)
TIMING = TargetedPollSettings()
REF_ID = "Customer-42"


@pytest.fixture
def sqs(dynamodb: Any) -> Any:  # dynamodb: moto is on for the test
    return aws_client("sqs")


@pytest.fixture
def queue(sqs: Any) -> str:
    return sqs.create_queue(QueueName="poll-requests", Attributes={"VisibilityTimeout": "960"})["QueueUrl"]


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    """moto's message timers read this clock: a delay ends only when it moves."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def receive(sqs: Any, queue: str) -> list[dict[str, Any]]:
    answer = sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"], WaitTimeSeconds=0
    )
    return answer.get("Messages", [])


def counts(sqs: Any, queue: str) -> dict[str, int]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=names)["Attributes"]
    return {
        name.removeprefix("ApproximateNumberOfMessages") or "visible": int(attributes[name]) for name in names
    }


# --- SqsPollRequests -------------------------------------------------------------------------------


def test_a_request_is_one_message_delayed_until_its_soon_poll(
    sqs: Any, queue: str, clock: time_machine.Traveller
) -> None:
    received_at = NOW - timedelta(seconds=30)  # the processor runs a little after the receiver
    SqsPollRequests(sqs, queue).request(REF_ID, received_at)

    assert counts(sqs, queue) == {"visible": 0, "Delayed": 1}
    clock.shift(timedelta(seconds=89))
    assert receive(sqs, queue) == []
    clock.shift(timedelta(seconds=2))
    [message] = receive(sqs, queue)
    assert parse_request_body(message["Body"]) == PollRequestMessage(REF_ID, received_at)
    assert json.loads(message["Body"]) == {"ref_id": REF_ID, "requested_at": "2025-01-10T11:59:30.000000Z"}


def test_a_late_request_is_visible_at_once_and_each_request_is_its_own_message(
    sqs: Any, queue: str, clock: time_machine.Traveller
) -> None:
    requests = SqsPollRequests(sqs, queue)
    requests.request(REF_ID, NOW - timedelta(hours=2))  # the webhook queue was backed up
    requests.request(REF_ID, NOW - timedelta(hours=2))  # a duplicate webhook: the consumer dedupes

    assert len(receive(sqs, queue)) == 2


def test_a_request_sqs_refuses_raises_for_the_caller_to_retry(sqs: Any, queue: str) -> None:
    gone = queue.rsplit("/", 1)[0] + "/no-such-queue"
    with pytest.raises(ClientError):
        SqsPollRequests(sqs, gone).request(REF_ID, NOW)
    with pytest.raises(InvalidPollRequestMessage):
        SqsPollRequests(sqs, queue).request(" ", NOW)
    with pytest.raises(ValueError, match="POLL_REQUEST_QUEUE_URL"):
        SqsPollRequests(sqs, "")


def test_a_requeued_request_is_the_same_request_in_a_new_message(
    sqs: Any, queue: str, clock: time_machine.Traveller
) -> None:
    message = PollRequestMessage(REF_ID, NOW - timedelta(minutes=20))
    SqsPollRequests(sqs, queue).requeue(message, 30)
    assert counts(sqs, queue)["Delayed"] == 1
    clock.shift(timedelta(seconds=31))
    [received] = receive(sqs, queue)
    assert parse_request_body(received["Body"]) == message
    assert received["Attributes"]["ApproximateReceiveCount"] == "1"


# --- the marks: DynamoDB and the in-memory fake, one contract --------------------------------------


@pytest.fixture(params=["dynamodb", "memory"])
def marks(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return MemoryPollMarks()
    dynamodb, name = request.getfixturevalue("dynamodb"), request.getfixturevalue("connections_table")
    return DynamoPollMarks(dynamodb, name)


def test_a_mark_only_moves_forward(marks: Any) -> None:
    assert marks.polled_at(REF_ID) is None
    marks.record_poll(REF_ID, NOW, "run-1")
    marks.record_poll(REF_ID, NOW - timedelta(microseconds=1), "run-2")  # an earlier poll finishing later
    assert marks.polled_at(REF_ID) == NOW
    marks.record_poll(REF_ID, NOW + timedelta(microseconds=1), "run-3")
    assert marks.polled_at(REF_ID) == NOW + timedelta(microseconds=1)
    assert marks.polled_at("Customer-43") is None


def test_the_mark_item_format(dynamodb: Any, connections_table: str) -> None:
    DynamoPollMarks(dynamodb, connections_table).record_poll(REF_ID, NOW + timedelta(microseconds=5), "run-1")
    key = {name: {"S": value} for name, value in table.targeted_poll_key(REF_ID).items()}
    item = dynamodb.get_item(TableName=connections_table, Key=key)["Item"]
    assert item == {
        table.PK: {"S": "TARGETED#Customer-42"},
        table.SK: {"S": "POLLED"},
        table.ITEM_TYPE: {"S": "targeted_poll"},
        "polled_at": {"S": "2025-01-10T12:00:00.000005Z"},
        "polled_by": {"S": "run-1"},
        table.TTL_ATTRIBUTE: {"N": str(int((NOW + timedelta(days=14)).timestamp()))},
    }
    assert table.CONN_REF_ID not in item  # stays out of ref-index


def test_a_refused_mark_write_raises(dynamodb: Any) -> None:
    with pytest.raises(ClientError):
        DynamoPollMarks(dynamodb, "no-such-table").record_poll(REF_ID, NOW, "run-1")


# --- the poller handler's SQS path ---------------------------------------------------------------


@pytest.fixture
def sim() -> Iterator[LeapSimulator]:
    with LeapSimulator(seed=3, customers=30) as simulator:
        simulator.advance(days=20)
        yield simulator


@pytest.fixture
def deps(sim: LeapSimulator, connections_table: str, sqs: Any) -> app.Dependencies:
    settings = load_settings(
        {
            "CONNECTIONS_TABLE": connections_table,
            "LEAP_API_BASE_URL": sim.base_url,
            "LEAP_API_KEY": sim.api_key,
            "LEAP_BACKOFF_FACTOR": "0.001",
            "LEAP_MAX_RETRIES": "1",
            "LOG_HASH_KEY": "k" * 32,
        }
    )
    return app.build_dependencies(settings)


def batch(sqs: Any, queue: str, bodies: list[str]) -> dict[str, Any]:
    """The event Lambda's SQS poller would hand over: each body sent, then received."""
    for body in bodies:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    messages = receive(sqs, queue)
    assert len(messages) == len(bodies)
    by_body = {m["Body"]: m for m in messages}
    return {"Records": [sqs_record(by_body[body], arn, "us-east-1") for body in bodies]}


def test_a_batch_polls_what_is_due_defers_the_rest_and_fails_what_it_cannot_read(
    deps: app.Dependencies, sim: LeapSimulator, sqs: Any, queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ref_id = sim.ref_ids[0]
    now = datetime.now(UTC)
    due = request_body(ref_id, now - timedelta(minutes=3))
    not_due = request_body(sim.ref_ids[1], now)
    event = batch(sqs, queue, [due, not_due, '{"ref_id": "x"}'])
    ids = [record["messageId"] for record in event["Records"]]

    with logs_in_capture(app.logger):
        response = app.lambda_handler(event, FakeLambdaContext(), deps)

    # The due one polled and waits for its poll after the refresh; the others back on the queue.
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sorted(ids)
    assert deps.marks.polled_at(ref_id) is not None
    assert deps.marks.polled_at(sim.ref_ids[1]) is None
    assert receive(sqs, queue) == []  # deferred ones are invisible until due (the malformed one: 960 s)
    text, lines = printed(capsys)
    metrics = emf_metrics(lines)
    assert metrics["TargetedPolls"] == [1]
    assert metrics["TargetedPollsDeferred"] == [2]
    assert metrics["TargetedPollsFailed"] == [1]
    assert "TargetedPollsCovered" not in metrics
    assert "EntriesByStatus" not in text  # the funnel is the hourly run's
    outcomes = [line["outcome"] for line in lines if line.get("message") == "poll request"]
    assert outcomes == ["polled", "waiting"]
    assert ref_id not in text
    assert sim.ref_ids[1] not in text


def test_a_request_a_pass_keeps_out_too_long_goes_back_as_a_new_message(
    deps: app.Dependencies, sim: LeapSimulator, sqs: Any, queue: str
) -> None:
    now = datetime.now(UTC)
    deps.store.acquire_lease("run-hourly", now, now + timedelta(minutes=16))
    event = batch(sqs, queue, [request_body(sim.ref_ids[0], now - timedelta(minutes=3))])
    record = event["Records"][0]
    record["attributes"]["ApproximateReceiveCount"] = str(REQUEUE_AT_RECEIVE)

    response = app.lambda_handler(event, FakeLambdaContext(), deps)

    assert response == {"batchItemFailures": []}  # acknowledged: its copy carries it on
    assert counts(sqs, queue)["Delayed"] == 1
    assert deps.marks.polled_at(sim.ref_ids[0]) is None
