"""The emitter's in-order processor through Powertools' own ``process_partial_response``.

This is the contract with aws-lambda-powertools (pinned in pyproject.toml): the processor uses only its
documented hooks (``_prepare`` / ``_process_record`` / ``_clean``, ``success_handler`` and
``failure_handler``) and lets ``BasePartialBatchProcessor`` answer. If an upgrade changes how those are
called, or the DynamoDB stream response they build, these tests fail.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from leap_tracker.emitter.processor import InOrderStreamProcessor, RecordNotPublished, SkippedAfterFailure
from leap_tracker.events.publishing import OutgoingMessage, PublishOutcome


class Poison(ValueError):
    pass


def stream_event(*sequences: str, poison: Sequence[str] = ()) -> dict[str, Any]:
    """A DynamoDB stream event in Lambda's shape, one MODIFY record per sequence number."""
    records = [
        {
            "eventID": f"event-{sequence}",
            "eventName": "MODIFY",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "Keys": {"pk": {"S": f"CONN#{sequence}"}, "sk": {"S": "STATE"}},
                "NewImage": {"pk": {"S": f"CONN#{sequence}"}, "poison": {"BOOL": sequence in poison}},
                "SequenceNumber": sequence,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
        }
        for sequence in sequences
    ]
    return {"Records": records}


def messages_of(record: DynamoDBRecord) -> list[OutgoingMessage]:
    """The record handler: one message per record, or a failure for a poison record."""
    sequence = record.dynamodb.sequence_number
    if record.dynamodb.new_image["poison"]:
        raise Poison(f"record {sequence} cannot be read")
    return [OutgoingMessage(f"id-{sequence}", f"entry-{sequence}", json.dumps({"id": sequence}), {}, 10)]


@dataclass
class Topic:
    """The publish pass: takes the first ``accept`` records (all when None), refusing the next one."""

    accept: int | None = None
    passes: list[list[list[str]]] = field(default_factory=list)  # event ids per record, per pass

    def publish(self, records: Sequence[Sequence[OutgoingMessage]]) -> PublishOutcome:
        self.passes.append([[m.event_id for m in messages] for messages in records])
        taken = len(records) if self.accept is None else min(self.accept, len(records))
        refused = (
            {m.event_id: "InternalError: injected" for m in records[taken]} if taken < len(records) else {}
        )
        return PublishOutcome(taken, sum(len(r) for r in records[:taken]), calls=1, failures=refused)


def run(event: dict[str, Any], topic: Topic) -> tuple[dict[str, Any], InOrderStreamProcessor]:
    processor = InOrderStreamProcessor(topic.publish)
    return process_partial_response(event, messages_of, processor), processor


def failed(response: dict[str, Any]) -> list[str]:
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def test_a_failing_middle_record_fails_with_every_later_one_and_only_earlier_ones_publish() -> None:
    topic = Topic()

    response, processor = run(stream_event("100", "200", "300", poison=["200"]), topic)

    assert response == {"batchItemFailures": [{"itemIdentifier": "200"}, {"itemIdentifier": "300"}]}
    assert topic.passes == [[["id-100"]]]  # one publish pass, without the record after the failure
    assert [type(info[1]) for info in processor.exceptions] == [Poison, SkippedAfterFailure]
    assert [r.dynamodb.sequence_number for r in processor.success_messages] == ["100"]
    assert processor.outcome.published_records == 1


def test_a_record_the_topic_refused_fails_with_every_later_one() -> None:
    topic = Topic(accept=1)

    response, processor = run(stream_event("100", "200", "300"), topic)

    assert failed(response) == ["200", "300"]
    assert topic.passes == [[["id-100"], ["id-200"], ["id-300"]]]  # every record in one ordered pass
    assert [type(info[1]) for info in processor.exceptions] == [RecordNotPublished, SkippedAfterFailure]
    assert str(processor.exceptions[0][1]) == "id-200: InternalError: injected"


def test_a_batch_that_all_published_reports_no_failure() -> None:
    topic = Topic()

    response, processor = run(stream_event("100", "200"), topic)

    assert response == {"batchItemFailures": []}
    assert topic.passes == [[["id-100"], ["id-200"]]]
    assert processor.fail_messages == []


@pytest.mark.parametrize(("poison", "accept"), [(["100"], None), ([], 0)])
def test_a_batch_where_every_record_failed_is_a_function_error(poison: list[str], accept: int | None) -> None:
    with pytest.raises(BatchProcessingError):  # so the event source mapping bisects the batch
        run(stream_event("100", "200", poison=poison), Topic(accept=accept))


def test_each_invocation_starts_afresh() -> None:
    topic = Topic()
    processor = InOrderStreamProcessor(topic.publish)

    first = process_partial_response(stream_event("100", "200", poison=["200"]), messages_of, processor)
    second = process_partial_response(stream_event("300"), messages_of, processor)

    assert failed(first) == ["200"]
    assert second == {"batchItemFailures": []}
    assert topic.passes == [[["id-100"]], [["id-300"]]]
    assert processor.outcome.published_records == 1


def sequences_of(records: list[dict[str, Any]]) -> list[str]:
    return [record["dynamodb"]["SequenceNumber"] for record in records]


def test_it_tells_which_records_published_and_which_failed_and_why() -> None:
    response, processor = run(stream_event("100", "200", "300", "400"), Topic(accept=2))

    assert failed(response) == ["300", "400"]
    assert sequences_of(processor.published) == ["100", "200"]
    assert sequences_of([record for record, _ in processor.failed]) == ["300", "400"]
    assert [type(error) for _, error in processor.failed] == [RecordNotPublished, SkippedAfterFailure]
    assert processor.published[0]["dynamodb"]["Keys"]["pk"] == {"S": "CONN#100"}  # Lambda's JSON form


def test_when_every_record_failed_it_still_tells_them_after_the_function_error() -> None:
    processor = InOrderStreamProcessor(Topic().publish)

    with pytest.raises(BatchProcessingError):
        process_partial_response(stream_event("100", "200", poison=["100"]), messages_of, processor)

    assert processor.published == []
    assert [(r["dynamodb"]["SequenceNumber"], type(e)) for r, e in processor.failed] == [
        ("100", Poison),
        ("200", SkippedAfterFailure),
    ]
