"""The emitter handler, invoked directly with stream events in Lambda's shape, publishing to moto SNS.

A partner-style SQS queue (raw delivery) is subscribed to the topic and read back. The handler gets
its dependencies built from the test's environment, on a moto SNS client the test can make refuse and
a moto DynamoDB client (the connections table, for the failure markers) the test can make fail.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError
from jsonschema import Draft202012Validator
from moto import mock_aws

from devtools import event_samples as samples
from devtools.generate_schemas import SAMPLE_STREAM_EVENT
from devtools.template_tables import create_connections_table
from functions.emitter import app
from leap_tracker import table
from leap_tracker.adapters.aws import aws_client
from leap_tracker.adapters.dynamo import deserialize
from leap_tracker.adapters.failure_markers import DynamoFailureMarkers, item_from_marker, marker_from_item
from leap_tracker.config import ConfigError, load_settings
from leap_tracker.emitter.markers import FailureMarker
from leap_tracker.events import catalog
from leap_tracker.table import decode_stored_entry
from tests.fakes.dynamodb import scan_items
from tests.fakes.lambda_runtime import FakeLambdaContext, emf_metrics, logs_in_capture, printed
from tests.fakes.log_key import PSEUDONYMS


class FlakySns:
    """A real (moto) SNS client whose PublishBatch refuses chosen events, or fails whole calls."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.refuse: set[str] = set()  # event ids to report as Failed
        self.fail_calls = 0  # the next N calls raise a ClientError
        self.calls: list[int] = []  # entries per call

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[dict[str, Any]]) -> dict:
        self.calls.append(len(PublishBatchRequestEntries))
        if self.fail_calls:
            self.fail_calls -= 1
            raise ClientError({"Error": {"Code": "Throttling", "Message": "slow down"}}, "PublishBatch")
        refused = [e for e in PublishBatchRequestEntries if json.loads(e["Message"])["id"] in self.refuse]
        accepted = [e for e in PublishBatchRequestEntries if e not in refused]
        response = (
            self._client.publish_batch(TopicArn=TopicArn, PublishBatchRequestEntries=accepted)
            if accepted
            else {"Successful": [], "Failed": []}
        )
        injected = {"Code": "InternalError", "Message": "injected", "SenderFault": False}
        response["Failed"] = response.get("Failed", []) + [{"Id": e["Id"], **injected} for e in refused]
        return response


class FlakyDynamo:
    """A real (moto) DynamoDB client whose BatchWriteItem or Query can be made to fail."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.fail: set[str] = set()  # of "batch_write_item", "query"

    def batch_write_item(self, **request: Any) -> dict[str, Any]:
        self._maybe_fail("batch_write_item", "BatchWriteItem")
        return self._client.batch_write_item(**request)

    def get_paginator(self, operation: str) -> Any:
        self._maybe_fail(operation, "Query")
        return self._client.get_paginator(operation)

    def _maybe_fail(self, method: str, operation: str) -> None:
        if method in self.fail:
            error = {"Error": {"Code": "InternalServerError", "Message": "injected"}}
            raise ClientError(error, operation)  # type: ignore[arg-type]


@dataclass
class Topic:
    sns: FlakySns
    queue_url: str
    sqs: Any
    dynamodb: FlakyDynamo
    table_name: str
    deps: app.Dependencies  # what the handler's cold start builds, publishing through ``sns``

    def invoke(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return app.lambda_handler(
            samples.stream_event(records), FakeLambdaContext(function_name="EmitterFunction"), self.deps
        )

    def markers(self) -> dict[str, FailureMarker]:
        """The failure markers in the table, by stream sequence number."""
        items = [deserialize(i) for i in scan_items(aws_client("dynamodb"), self.table_name)]
        found = [marker_from_item(i) for i in items if i[table.PK] == table.EMITTER_FAILURE_PK]
        return {marker.stream_sequence: marker for marker in found}

    def received(self) -> list[dict[str, Any]]:
        """Every message on the partner queue, in arrival order (body parsed, attributes flattened)."""
        out = []
        while batch := self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", []):
            for message in batch:
                attributes = {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}
                out.append({"event": json.loads(message["Body"]), "attributes": attributes, "raw": message})
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return out


def make_topic(monkeypatch: pytest.MonkeyPatch, fifo: bool) -> Topic:
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    suffix = ".fifo" if fifo else ""
    topic_attributes = {"FifoTopic": "true", "ContentBasedDeduplication": "false"} if fifo else {}
    topic_arn = sns.create_topic(Name=f"events{suffix}", Attributes=topic_attributes)["TopicArn"]
    queue_attributes = {"FifoQueue": "true"} if fifo else {}
    queue_url = sqs.create_queue(QueueName=f"partner{suffix}", Attributes=queue_attributes)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    raw = {"RawMessageDelivery": "true"}
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=attributes["QueueArn"], Attributes=raw)
    flaky = FlakySns(sns)
    dynamodb = FlakyDynamo(aws_client("dynamodb"))
    table_name = create_connections_table(aws_client("dynamodb"))
    monkeypatch.setenv("EVENTS_TOPIC_ARN", topic_arn)
    monkeypatch.setenv("EVENTS_TOPIC_FIFO", "true" if fifo else "false")
    monkeypatch.setenv("CONNECTIONS_TABLE", table_name)
    clients = {"sns": flaky, "dynamodb": dynamodb}
    deps = app.build_dependencies(load_settings(), client=lambda service: clients[service])
    return Topic(flaky, queue_url, sqs, dynamodb, table_name, deps)


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> Iterator[Topic]:
    with mock_aws():
        yield make_topic(monkeypatch, fifo=False)


@pytest.fixture
def fifo_topic(monkeypatch: pytest.MonkeyPatch) -> Iterator[Topic]:
    with mock_aws():
        yield make_topic(monkeypatch, fifo=True)


def sequence_numbers(records: list[dict[str, Any]]) -> list[str]:
    return [r["dynamodb"]["SequenceNumber"] for r in records]


def failed_items(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def test_sample_event_publishes_every_event_valid_with_its_attributes(topic: Topic) -> None:
    event = json.loads(SAMPLE_STREAM_EVENT.read_text())

    response = app.lambda_handler(event, FakeLambdaContext(function_name="EmitterFunction"), topic.deps)

    assert response == {"batchItemFailures": []}
    received = topic.received()
    commercial = [m["event"]["type"] for m in received if m["event"]["subject"] == "Test1012"]
    assert commercial == [
        "connection.started",
        "connection.not_started",
        "connection.partial",
        "utility.not_connected",
        "connection.error",
        "utility.error",
        "connection.partial",
        "utility.connected",
        "agreement.pending",
        "connection.completed",
        "agreement.completed",
    ]
    for message in received:
        event_type = message["event"]["type"]
        Draft202012Validator(
            catalog.json_schema(event_type), format_checker=Draft202012Validator.FORMAT_CHECKER
        ).validate(message["event"])
        assert message["attributes"] == catalog.message_attributes(message["event"])
    # two changes of one entry never share a call (a failed earlier one could be overtaken)
    assert all(size <= 10 for size in topic.sns.calls)
    assert sum(topic.sns.calls) == len(received)


def test_redelivered_records_give_the_same_ids(topic: Topic) -> None:
    records = samples.history_records(samples.commercial_history())

    topic.invoke(records)
    first = [m["event"]["id"] for m in topic.received()]
    topic.invoke(copy.deepcopy(records))
    again = [m["event"]["id"] for m in topic.received()]

    assert first == again
    assert len(set(first)) == len(first)


def test_a_write_that_changed_nothing_publishes_nothing(topic: Topic) -> None:
    [record] = samples.history_records(samples.commercial_history()[:1])
    image = record["dynamodb"]["NewImage"]
    rewrite = samples.stream_record(image, {**image, "written_at": {"S": "2025-03-03T19:00:00Z"}}, 9)

    assert topic.invoke([rewrite]) == {"batchItemFailures": []}
    assert topic.received() == []
    assert topic.sns.calls == []


def test_a_failed_publish_fails_that_record_and_every_later_one(topic: Topic) -> None:
    records = list(samples.interleave(samples.commercial_history(), samples.unusual_history()))
    third = samples.history_records(samples.commercial_history())[2]  # commercial's change 3 (ERROR)
    new = third["dynamodb"]["NewImage"]
    entry = decode_stored_entry(new["entry"]["B"])
    error_event = catalog.event_id(entry["id"], 3, catalog.CONNECTION_ERROR)
    topic.sns.refuse = {error_event}
    position = next(i for i, r in enumerate(records) if r["dynamodb"]["NewImage"] == new)

    response = topic.invoke(records)

    assert failed_items(response) == sequence_numbers(records[position:])
    delivered = topic.received()
    assert error_event not in {m["event"]["id"] for m in delivered}

    # Lambda retries from the failed record; this time SNS takes everything
    topic.sns.refuse = set()
    assert topic.invoke(records[position:]) == {"batchItemFailures": []}
    delivered += topic.received()

    # nothing lost, and per entry no change delivered before an earlier one
    expected = {e["id"] for r in records for e in events_of(r)}
    assert expected <= {m["event"]["id"] for m in delivered}
    for subject in ("Test1012", "crm-88231"):
        first_seen: dict[str, int] = {}
        for position_in_queue, m in enumerate(delivered):
            if m["event"]["subject"] == subject:
                first_seen.setdefault(m["event"]["id"], position_in_queue)
        mine = [m for m in delivered if m["event"]["subject"] == subject]
        order = [
            int(m["event"]["sequence"]) for m in sorted(mine, key=lambda m: first_seen[m["event"]["id"]])
        ]
        assert order == sorted(order)


def events_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

    from leap_tracker.emitter.stream import record_messages

    parsed = DynamoDBRecord(record)
    return [json.loads(m.body) for m in record_messages(parsed.dynamodb.old_image, parsed.dynamodb.new_image)]


def entry_id_of(record: dict[str, Any]) -> str:
    return table.entry_id_from_pk(record["dynamodb"]["Keys"]["pk"]["S"])


def refuse_commercial_error(topic: Topic, records: list[dict[str, Any]]) -> tuple[int, str]:
    """Make SNS refuse commercial's change 3 (ERROR); its position in ``records`` and its event id."""
    third = samples.history_records(samples.commercial_history())[2]
    new = third["dynamodb"]["NewImage"]
    error_event = catalog.event_id(decode_stored_entry(new["entry"]["B"])["id"], 3, catalog.CONNECTION_ERROR)
    topic.sns.refuse = {error_event}
    return next(i for i, r in enumerate(records) if r["dynamodb"]["NewImage"] == new), error_event


def batch_line(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The invocation's ``emitter batch`` line: its numbers that are no metric."""
    [line] = [line for line in lines if line.get("message") == "emitter batch"]
    return line


def test_a_refused_record_leaves_markers_for_it_and_every_later_one_until_the_retry_publishes(
    topic: Topic, capsys: pytest.CaptureFixture[str]
) -> None:
    records = list(samples.interleave(samples.commercial_history(), samples.unusual_history()))
    position, error_event = refuse_commercial_error(topic, records)
    printed(capsys)

    with logs_in_capture(app.logger):
        response = topic.invoke(records)

    failed = sequence_numbers(records[position:])
    assert failed_items(response) == failed
    markers = topic.markers()
    assert list(markers) == failed  # the published ones before it have none
    for record in records[position:]:
        marker = markers[record["dynamodb"]["SequenceNumber"]]
        assert marker.entry_id == entry_id_of(record)
        assert marker.sequence == int(record["dynamodb"]["NewImage"]["sequence"]["N"])
        assert marker.entry_id not in marker.reason
        # kept as long as the history it is replayed from (HISTORY_RETENTION_DAYS, 35 by default)
        assert marker.expires_at == int((marker.failed_at + timedelta(days=35)).timestamp())
    first, *later = (markers[number] for number in failed)
    assert first.reason == f"RecordNotPublished: {error_event}: InternalError: injected"
    assert {m.reason for m in later} == {"SkippedAfterFailure: an earlier record of this batch failed"}
    lines = printed(capsys)[1]
    assert batch_line(lines)["failure_markers_written"] == len(failed)
    assert (batch_line(lines)["records"], batch_line(lines)["records_failed"]) == (len(records), len(failed))
    assert emf_metrics(lines)["RecordsFailed"] == [len(failed)]
    assert not {"FailureMarkersWritten", "RecordsReceived", "PublishBatchCalls"} & set(emf_metrics(lines))

    topic.sns.refuse = set()
    with logs_in_capture(app.logger):
        assert topic.invoke(records[position:]) == {"batchItemFailures": []}

    assert topic.markers() == {}
    lines = printed(capsys)[1]
    assert (batch_line(lines)["failure_markers_written"], batch_line(lines)["records_failed"]) == (0, 0)
    assert emf_metrics(lines)["EventsPublished"][0] > 0
    assert "RecordsFailed" not in emf_metrics(lines)  # a zero is left out


def test_publishing_deletes_only_the_markers_of_the_records_published_now(topic: Topic) -> None:
    records = samples.history_records(samples.commercial_history())
    numbers = [int(n) for n in sequence_numbers(records)]
    planted = {str(numbers[0]), str(numbers[1]), str(numbers[2]), str(numbers[-1] + 100)}
    writer = DynamoFailureMarkers(aws_client("dynamodb"), topic.table_name)
    writer.write([replace(MARKER, stream_sequence=number) for number in sorted(planted)])

    # records 0 and 2: record 1's marker is inside the range looked up, but not one of the batch's
    assert topic.invoke([records[0], records[2]]) == {"batchItemFailures": []}

    assert set(topic.markers()) == planted - {str(numbers[0]), str(numbers[2])}


MARKER = FailureMarker(
    stream_sequence="1",
    entry_id=None,
    sequence=None,
    reason="NotASnapshot: planted",
    failed_at=datetime(2025, 3, 4, 12, 0, tzinfo=UTC),
    expires_at=1_800_000_000,
)


def test_a_marker_reads_back_as_written_with_what_was_left_out_absent() -> None:
    item = item_from_marker(MARKER)

    assert item[table.PK] == table.EMITTER_FAILURE_PK
    assert item[table.SK] == "1".zfill(table.STREAM_SEQUENCE_DIGITS)
    assert item[table.ITEM_TYPE] == table.FAILURE_ITEM_TYPE
    assert table.FAILURE_ENTRY_ID not in item
    assert table.FAILURE_SEQUENCE not in item
    assert marker_from_item(item) == MARKER
    full = replace(MARKER, entry_id="CAISO_x_ref-1", sequence=4)
    assert marker_from_item(item_from_marker(full)) == full


def test_a_marker_that_cannot_be_written_fails_the_invocation(
    topic: Topic, capsys: pytest.CaptureFixture[str]
) -> None:
    records = list(samples.interleave(samples.commercial_history(), samples.unusual_history()))
    refuse_commercial_error(topic, records)
    topic.dynamodb.fail = {"batch_write_item"}
    printed(capsys)

    # not a partial response: the stream retries the whole batch (the published records again, with
    # the same event ids), so the markers are not silently missing
    with logs_in_capture(app.logger), pytest.raises(ClientError, match="BatchWriteItem"):
        topic.invoke(records)

    assert topic.markers() == {}
    assert batch_line(printed(capsys)[1])["failure_markers_written"] == 0


@pytest.mark.parametrize(
    ("failing", "operation"), [("query", "Query"), ("batch_write_item", "BatchWriteItem")]
)
def test_a_marker_that_cannot_be_found_or_deleted_fails_a_published_batch(
    topic: Topic, failing: str, operation: str
) -> None:
    records = samples.history_records(samples.commercial_history())
    writer = DynamoFailureMarkers(aws_client("dynamodb"), topic.table_name)
    writer.write([replace(MARKER, stream_sequence=records[1]["dynamodb"]["SequenceNumber"])])
    topic.dynamodb.fail = {failing}

    with pytest.raises(ClientError, match=operation):
        topic.invoke(records)

    assert len(topic.received()) == 11  # published: the retry publishes them again, same ids
    assert list(topic.markers()) == [records[1]["dynamodb"]["SequenceNumber"]]

    topic.dynamodb.fail = set()
    assert topic.invoke(records) == {"batchItemFailures": []}
    assert topic.markers() == {}


def test_an_sns_error_fails_the_records_of_that_call(topic: Topic) -> None:
    records = samples.history_records(samples.commercial_history())
    topic.sns.fail_calls = 1

    with pytest.raises(BatchProcessingError):  # every record failed: a function error, the batch is bisected
        topic.invoke(records)

    assert topic.received() == []


def test_a_poison_record_fails_with_the_records_behind_it(topic: Topic) -> None:
    records = samples.history_records(samples.commercial_history())
    records[2]["dynamodb"]["NewImage"]["entry"] = {"S": "{not json"}

    response = topic.invoke(records)

    assert failed_items(response) == sequence_numbers(records[2:])
    assert {m["event"]["sequence"] for m in topic.received()} == {"000000000001", "000000000002"}
    markers = topic.markers()
    assert list(markers) == sequence_numbers(records[2:])
    poisoned = markers[records[2]["dynamodb"]["SequenceNumber"]]
    assert (poisoned.entry_id, poisoned.sequence) == (entry_id_of(records[2]), 3)
    assert poisoned.reason.startswith("NotASnapshot: 'entry': stored entry cannot be read")


def test_a_poison_record_alone_is_a_function_error(topic: Topic) -> None:
    [record] = samples.history_records(samples.commercial_history()[:1])
    del record["dynamodb"]["NewImage"]["sequence"]

    with pytest.raises(BatchProcessingError):
        topic.invoke([record])

    # Its marker is written before the function error (the stream retries it, bisected)
    [marker] = topic.markers().values()
    assert (marker.stream_sequence, marker.sequence) == (record["dynamodb"]["SequenceNumber"], None)
    assert marker.entry_id == entry_id_of(record)


def test_removals_and_other_items_publish_nothing(topic: Topic) -> None:
    [insert] = samples.history_records(samples.commercial_history()[:1])
    removal = samples.stream_record(insert["dynamodb"]["NewImage"], None, 5)
    watch = {"pk": {"S": "WATCH#x"}, "sk": {"S": "METER"}, "status": {"S": "OPEN"}}
    other = samples.stream_record(None, watch, 6)

    assert topic.invoke([removal, other]) == {"batchItemFailures": []}
    assert topic.received() == []


def test_fifo_topic_groups_by_entry_pseudonym_and_deduplicates_on_the_event_id(fifo_topic: Topic) -> None:
    records = samples.history_records(samples.commercial_history())

    fifo_topic.invoke(records)
    fifo_topic.invoke(records)  # a replay within the deduplication window

    received = fifo_topic.received()
    assert len(received) == 11
    entry_id = decode_stored_entry(records[0]["dynamodb"]["NewImage"]["entry"]["B"])["id"]
    # One group for the entry, named by its keyed pseudonym (LOG_HASH_KEY): SNS metadata is not
    # encrypted, and the entry id embeds the Reference ID.
    assert {m["raw"]["Attributes"]["MessageGroupId"] for m in received} == {PSEUDONYMS.entry(entry_id)}
    assert [m["event"]["sequence"] for m in received] == sorted(m["event"]["sequence"] for m in received)


def test_several_changes_per_entry_share_calls_and_a_refusal_keeps_each_group_in_order(
    fifo_topic: Topic,
) -> None:
    # Each entry's changes in a row (commercial's five, then unusual's two): the calls interleave the
    # entries, one change per entry a call. Commercial's change 3 is refused in the third call.
    records = samples.history_records(samples.commercial_history())
    records += samples.history_records(samples.unusual_history(), first_sequence_number=100)
    position, _ = refuse_commercial_error(fifo_topic, records)

    response = fifo_topic.invoke(records)

    assert position == 2
    assert failed_items(response) == sequence_numbers(records[2:])  # unusual's too: after it on the stream
    assert fifo_topic.sns.calls == [7, 6, 2]  # 2+5, 2+4, then change 3: change 4 never went out

    fifo_topic.sns.refuse = set()
    assert fifo_topic.invoke(records[2:]) == {"batchItemFailures": []}
    # Read once both ran: moto's FIFO queue forgets a deduplication id once its message is deleted
    # (SQS keeps it for 5 minutes).
    delivered = fifo_topic.received()

    # every event once (what the first invocation published, deduplicated on the event id when the
    # retry published it again), and in each message group the changes in order
    expected = [e["id"] for r in records for e in events_of(r)]
    assert sorted(m["event"]["id"] for m in delivered) == sorted(expected)
    groups: dict[str, list[str]] = {}
    for m in delivered:
        groups.setdefault(m["raw"]["Attributes"]["MessageGroupId"], []).append(m["event"]["sequence"])
    assert len(groups) == 2
    for sequences in groups.values():
        assert sequences == sorted(sequences)


def test_cold_start_without_a_topic_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTS_TOPIC_ARN", raising=False)

    with pytest.raises(ConfigError, match="EVENTS_TOPIC_ARN"):
        app.build_dependencies(load_settings())
