"""The webhook processor's handler on moto (the table as template.yaml declares it, the events topic,
WebhookQueue and PollRequestQueue) against the Leap simulator's Meters API, built from the
environment as a cold start builds it; and the meter watch function opening a watch satisfied from
what the processor remembered."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest

from devtools.leap_simulator import LeapSimulator
from devtools.leap_simulator.faults import server_error
from devtools.local_runner.shapes import sqs_record
from functions.meter_watch import app as watch_app
from functions.webhook_processor import app
from leap_tracker import table
from leap_tracker.adapters.dynamo import deserialize, string_key
from leap_tracker.adapters.poller_store import snapshot_item
from leap_tracker.adapters.watch_store import DynamoWatchStore
from leap_tracker.config import MeterWatchSettings, load_settings
from leap_tracker.events import catalog
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import validate_entry
from leap_tracker.meters import schedule
from leap_tracker.poller.ports import SnapshotWrite
from leap_tracker.webhooks import intake
from tests.builders import (
    connection_completed_event,
    guide_entry,
    webhook_delivery,
    webhook_queue_message,
    webhook_sqs_record,
)
from tests.fakes.lambda_runtime import FakeLambdaContext, emf_metrics, logs_in_capture, printed
from tests.fakes.log_key import PSEUDONYMS

REGION = "us-east-1"
EVENT_ID = "0b6f8a52-6f7e-4a43-9d59-3d5f0c6a1e11"


@dataclass
class Stack:
    dynamodb: Any
    sqs: Any
    table: str
    events_queue_url: str
    webhook_queue_url: str
    webhook_queue_arn: str
    poll_queue_url: str
    leap: LeapSimulator
    deps: app.Dependencies

    def invoke(self, records: list[dict[str, Any]]) -> list[str]:
        response = app.lambda_handler(
            {"Records": records}, FakeLambdaContext(function_name="webhook"), self.deps
        )
        return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]

    def published(self) -> list[dict[str, Any]]:
        events = []
        while messages := self.sqs.receive_message(
            QueueUrl=self.events_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=43_200
        ).get("Messages", []):
            events.extend(json.loads(m["Body"]) for m in messages)
        return events

    def item(self, key: dict[str, str]) -> dict[str, Any] | None:
        found = self.dynamodb.get_item(TableName=self.table, Key=string_key(key)).get("Item")
        return deserialize(found) if found else None

    def connection(self, ref_id: str, completed_at: datetime) -> str:
        """The snapshot the poller stored; its entry id."""
        entry = validate_entry(guide_entry(ref_id, status=wire.CONNECTION_COMPLETED, last=completed_at))
        self.dynamodb.put_item(
            TableName=self.table, Item=snapshot_item(SnapshotWrite(entry, 3), completed_at)
        )
        return entry.entry_id

    def open_watch(self, ref_id: str, completed_at: datetime) -> str:
        entry_id = self.connection(ref_id, completed_at)
        watch = schedule.new_watch(
            entry_id=entry_id,
            ref_id=ref_id,
            transmission_region="CAISO",
            completed_at=completed_at,
            sequence=3,
            now=completed_at,
            settings=MeterWatchSettings(),
        )
        assert DynamoWatchStore(self.dynamodb, self.table).create(watch)
        return entry_id


def _queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


@pytest.fixture
def stack(
    dynamodb: Any, connections_table: str, leap_simulator: LeapSimulator, monkeypatch: pytest.MonkeyPatch
) -> Stack:
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic_arn = sns.create_topic(Name="events")["TopicArn"]
    events_url, events_arn = _queue(sqs, "partner")
    sns.subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=events_arn, Attributes={"RawMessageDelivery": "true"}
    )
    webhook_url, webhook_arn = _queue(sqs, "WebhookQueue")
    poll_url, _ = _queue(sqs, "PollRequestQueue")
    for name, value in {
        "CONNECTIONS_TABLE": connections_table,
        "EVENTS_TOPIC_ARN": topic_arn,
        "POLL_REQUEST_QUEUE_URL": poll_url,
        "LEAP_API_BASE_URL": leap_simulator.base_url,
        "LEAP_API_KEY": leap_simulator.api_key,
        "LEAP_MAX_RETRIES": "1",
        "LEAP_MAX_RETRY_SECONDS": "2",
    }.items():
        monkeypatch.setenv(name, value)
    deps = app.build_dependencies(load_settings())
    return Stack(
        dynamodb, sqs, connections_table, events_url, webhook_url, webhook_arn, poll_url, leap_simulator, deps
    )


def a_customer_with_meters(sim: LeapSimulator) -> tuple[str, datetime, datetime]:
    """(ref id, completion, meters appear) of the first simulated customer whose meters come."""
    for ref_id in sim.ref_ids:
        completed, appear = sim.completed_at(ref_id), sim.meters_appear_at(ref_id)
        if completed is not None and appear is not None:
            return ref_id, completed, appear
    raise AssertionError("the simulated population has no customer with meters")


def meter_created(sim: LeapSimulator, ref_id: str, at: datetime, event_id: str = EVENT_ID) -> dict[str, Any]:
    (meter, *_) = sim.meters_of(ref_id, at)
    delivery = webhook_delivery(
        wire.WEBHOOK_METER_CREATED,
        event_id,
        **{wire.WEBHOOK_METER_ID: meter[wire.METER_ID], wire.WEBHOOK_PARTNER_REFERENCE: ref_id},
    )
    return delivery


def test_meter_created_for_an_open_watch_publishes_meter_appeared_and_closes_it(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    ref_id, completed, appear = a_customer_with_meters(stack.leap)
    stack.leap.set_time(appear + timedelta(minutes=1))
    entry_id = stack.open_watch(ref_id, completed)
    delivery = meter_created(stack.leap, ref_id, appear + timedelta(minutes=1))
    record = webhook_sqs_record(webhook_queue_message(delivery, appear + timedelta(seconds=30)))
    stack.leap.reset_requests()

    capsys.readouterr()
    with logs_in_capture(app.logger):
        assert stack.invoke([record]) == []
    text, lines = printed(capsys)

    (event,) = stack.published()
    assert (event["type"], event["subject"], event["data"]["entry_id"]) == (
        catalog.METER_APPEARED,
        ref_id,
        entry_id,
    )
    assert {m["meter_id"] for m in event["data"]["meters"]} == {
        m[wire.METER_ID] for m in stack.leap.meters_of(ref_id)
    }
    assert stack.leap.requests[wire.METERS_SEARCH_PATH] == 1
    watch = stack.item(table.watch_key(entry_id))
    assert watch is not None
    assert (watch[table.WATCH_STATUS], watch[table.WATCH_CLOSED_REASON]) == ("CLOSED", "appeared")
    assert table.DUE_AT_ATTRIBUTE not in watch  # out of the due-index: no sweep checks it again
    ledger = stack.item(table.webhook_key(EVENT_ID))
    assert ledger is not None
    assert ledger[table.WEBHOOK_OUTCOME] == "meter_appeared"
    metrics = emf_metrics(lines)
    assert (metrics["WebhookMetersAppeared"], metrics["MetersApiCalls"]) == ([1], [1])
    (line,) = [line for line in lines if line.get("message") == "webhook processed"]
    assert (line["result"], line["ref"]) == ("meter_appeared", PSEUDONYMS.ref(ref_id))
    assert ref_id not in text  # never in clear


def test_a_duplicate_delivery_is_counted_and_changes_nothing(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    ref_id, completed, appear = a_customer_with_meters(stack.leap)
    stack.leap.set_time(appear + timedelta(minutes=1))
    stack.open_watch(ref_id, completed)
    message = webhook_queue_message(meter_created(stack.leap, ref_id, appear + timedelta(minutes=1)), appear)
    assert stack.invoke([webhook_sqs_record(message)]) == []
    assert len(stack.published()) == 1
    stack.leap.reset_requests()

    capsys.readouterr()
    with logs_in_capture(app.logger):
        assert stack.invoke([webhook_sqs_record(message, message_id="m-2")]) == []
    _, lines = printed(capsys)

    assert stack.published() == []
    assert stack.leap.requests[wire.METERS_SEARCH_PATH] == 0
    metrics = emf_metrics(lines)
    assert metrics["WebhookDuplicates"] == [1]
    assert "MetersApiCalls" not in metrics


def test_an_unconfirmed_meter_is_put_back_on_its_queue_then_acknowledged_after_the_last_try(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    ref_id, completed, appear = a_customer_with_meters(stack.leap)
    stack.open_watch(ref_id, completed)
    delivery = meter_created(stack.leap, ref_id, appear + timedelta(minutes=1))
    stack.leap.set_time(appear - timedelta(minutes=5))  # Leap's webhook came before its Meters API has it
    message = webhook_queue_message(delivery, appear - timedelta(minutes=5))
    stack.sqs.send_message(
        QueueUrl=stack.webhook_queue_url,
        MessageBody=message.body,
        MessageAttributes={
            n: {"DataType": "String", "StringValue": v} for n, v in message.attributes.items()
        },
    )
    (received,) = stack.sqs.receive_message(
        QueueUrl=stack.webhook_queue_url,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
        VisibilityTimeout=30,
    )["Messages"]
    record = sqs_record(received, stack.webhook_queue_arn, REGION)

    capsys.readouterr()
    with logs_in_capture(app.logger):
        assert stack.invoke([record]) == [record["messageId"]]  # deferred on purpose
    _, lines = printed(capsys)
    assert emf_metrics(lines)["WebhookMetersDeferred"] == [1]
    assert "WebhookRecordsFailed" not in emf_metrics(lines)
    visible = stack.sqs.receive_message(QueueUrl=stack.webhook_queue_url, MaxNumberOfMessages=1)
    assert visible.get("Messages", []) == []  # hidden for the processor's wait (120 s), not 30
    assert stack.item(table.webhook_key(EVENT_ID)) is None
    assert stack.published() == []

    last = {**record, "attributes": {**record["attributes"], "ApproximateReceiveCount": "5"}}
    with logs_in_capture(app.logger):
        assert stack.invoke([last]) == []  # acknowledged: the sweep reconciles
    _, lines = printed(capsys)
    assert emf_metrics(lines)["WebhookMetersUnconfirmed"] == [1]
    ledger = stack.item(table.webhook_key(EVENT_ID))
    assert ledger is not None
    assert ledger[table.WEBHOOK_OUTCOME] == "meter_unconfirmed"


def test_a_connect_session_webhook_sends_one_poll_request(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery = webhook_delivery(wire.WEBHOOK_AUTHORIZATION_UPDATED, EVENT_ID)
    record = webhook_sqs_record(webhook_queue_message(delivery, stack.leap.now))

    capsys.readouterr()
    with logs_in_capture(app.logger):
        assert stack.invoke([record, {**record, "messageId": "m-2"}]) == []  # and its duplicate
    _, lines = printed(capsys)

    counts = stack.sqs.get_queue_attributes(
        QueueUrl=stack.poll_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    assert sum(int(value) for value in counts.values()) == 1
    assert emf_metrics(lines)["WebhookPollRequests"] == [1]
    assert emf_metrics(lines)["WebhookDuplicates"] == [1]
    assert stack.published() == []


def test_an_unknown_type_is_kept_and_a_malformed_record_fails_alone(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = webhook_sqs_record(
        webhook_queue_message(webhook_delivery("meter.archived", EVENT_ID), stack.leap.now), message_id="ok"
    )
    good = webhook_queue_message(webhook_delivery(wire.WEBHOOK_CONNECT_SESSION_UPDATED), stack.leap.now)
    wrong = intake.QueueMessage(good.body, {**good.attributes, intake.QUEUE_ATTR_EVENT_TYPE: "meter.created"})
    malformed = webhook_sqs_record(wrong, message_id="bad")

    capsys.readouterr()
    with logs_in_capture(app.logger):
        assert stack.invoke([unknown, malformed]) == ["bad"]
    text, lines = printed(capsys)

    kept = stack.item(table.webhook_key(EVENT_ID))
    assert kept is not None
    assert kept[table.WEBHOOK_OUTCOME] == "unknown_type"
    assert (
        json.loads(table.decode_stored_body(kept[table.WEBHOOK_BODY]))["payload"]["webhook_event_type"]
        == "meter.archived"
    )
    metrics = emf_metrics(lines)
    assert (metrics["WebhooksUnknownType"], metrics["WebhookRecordsFailed"]) == ([1], [1])
    (rejected,) = [line for line in lines if line.get("message") == "record rejected"]
    assert rejected["exception_type"] == "MalformedDelivery"
    assert "customer-0001" not in text


def test_a_meter_remembered_before_the_completion_satisfies_the_watch_it_opens(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    ref_id, completed, appear = a_customer_with_meters(stack.leap)
    stack.leap.set_time(appear + timedelta(minutes=1))
    message = webhook_queue_message(meter_created(stack.leap, ref_id, appear + timedelta(minutes=1)), appear)
    assert stack.invoke([webhook_sqs_record(message)]) == []  # no watch yet: remembered
    assert stack.published() == []
    entry_id = stack.connection(ref_id, completed)
    completion = connection_completed_event(entry_id, ref_id, completed)
    event = {
        "Records": [{**webhook_sqs_record(message), "body": json.dumps(completion), "messageAttributes": {}}]
    }

    capsys.readouterr()
    with logs_in_capture(watch_app.logger):
        result = watch_app.lambda_handler(
            event, FakeLambdaContext(), watch_app.build_dependencies(load_settings())
        )
    _, lines = printed(capsys)

    assert result == {"batchItemFailures": []}
    (appeared,) = stack.published()
    assert (appeared["type"], appeared["data"]["entry_id"]) == (catalog.METER_APPEARED, entry_id)
    assert emf_metrics(lines)["WatchesOpenedSatisfied"] == [1]
    watch = stack.item(table.watch_key(entry_id))
    assert watch is not None
    assert watch[table.WATCH_CLOSED_REASON] == "appeared"


def test_once_leap_fails_the_batchs_other_meter_created_are_not_sent_to_it(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    ref_id, completed, appear = a_customer_with_meters(stack.leap)
    stack.leap.set_time(appear + timedelta(minutes=1))
    stack.open_watch(ref_id, completed)
    records = [
        webhook_sqs_record(
            webhook_queue_message(meter_created(stack.leap, ref_id, stack.leap.now, event_id), appear),
            message_id=f"m-{n}",
        )
        for n, event_id in enumerate(
            ["0b6f8a52-6f7e-4a43-9d59-3d5f0c6a1e21", "0b6f8a52-6f7e-4a43-9d59-3d5f0c6a1e22"]
        )
    ]
    poll = webhook_sqs_record(
        webhook_queue_message(webhook_delivery(wire.WEBHOOK_CONNECT_SESSION_UPDATED), appear),
        message_id="poll",
    )
    stack.leap.inject(server_error(), times=None, path=wire.METERS_SEARCH_PATH)
    stack.leap.reset_requests()

    capsys.readouterr()
    with logs_in_capture(app.logger):
        assert stack.invoke([records[0], poll, records[1]]) == ["m-0", "m-1"]  # the poll request went
    _, lines = printed(capsys)

    assert stack.leap.requests[wire.METERS_SEARCH_PATH] == 2  # the first record's try and its one retry
    metrics = emf_metrics(lines)
    assert (metrics["MetersApiFailures"], metrics["WebhookRecordsFailed"]) == ([1], [2])
    assert metrics["WebhookPollRequests"] == [1]
    assert stack.published() == []

    stack.leap.clear_faults()
    assert (
        stack.invoke(records) == []
    )  # delivered again: the first closes the watch, the second finds it closed
    assert [e["type"] for e in stack.published()] == [catalog.METER_APPEARED]
