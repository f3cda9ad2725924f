"""The DynamoDB stream mapping of template.yaml, played by the local runner against moto.

Small test handlers stand in for the emitter so these tests prove the runner, not the emitter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamLambdaOnFailureDestinationModel

from devtools.local_runner import LocalCloud, RunnerLoopError
from leap_tracker import table

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
FAKE_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:leap-api-key"
EMITTER = "EmitterFunction"


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(TEMPLATE, parameters={"LeapApiKeySecretArn": FAKE_SECRET_ARN}) as local:
        yield local


def put_connections(cloud: LocalCloud, *entry_ids: str) -> None:
    ddb = cloud.client("dynamodb")
    name = cloud.resources.table_name("ConnectionsTable")
    with_keys = [{**table.connection_key(entry_id), "marker": entry_id} for entry_id in entry_ids]
    for start in range(0, len(with_keys), 25):
        chunk = with_keys[start : start + 25]
        requests = [{"PutRequest": {"Item": {k: {"S": v} for k, v in item.items()}}} for item in chunk]
        ddb.batch_write_item(RequestItems={name: requests})


def markers(event: dict[str, Any]) -> list[str]:
    return [record["dynamodb"]["NewImage"]["marker"]["S"] for record in event["Records"]]


class Recorder:
    """A handler that remembers every batch and fails as told."""

    def __init__(self, fail: Any = None) -> None:
        self.batches: list[list[str]] = []
        self.fail = fail  # callable(markers, call number) -> "raise" | list of failed markers | None

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        names = markers(event)
        self.batches.append(names)
        verdict = self.fail(names, len(self.batches)) if self.fail else None
        if verdict == "raise":
            raise RuntimeError(f"cannot process {names}")
        by_marker = {markers({"Records": [r]})[0]: r for r in event["Records"]}
        failures = [{"itemIdentifier": by_marker[m]["dynamodb"]["SequenceNumber"]} for m in verdict or []]
        return {"batchItemFailures": failures}

    @property
    def delivered(self) -> list[str]:
        return [name for batch in self.batches for name in batch]


def on_failure_messages(cloud: LocalCloud) -> list[dict[str, Any]]:
    return [message.body for message in cloud.drain_queue("EmitterFailureQueue")]


def test_records_arrive_in_the_exact_lambda_shape(cloud: LocalCloud) -> None:
    seen: list[dict[str, Any]] = []
    cloud.override_handler(EMITTER, lambda event, context: seen.append(event))
    put_connections(cloud, "a")
    cloud.drain()

    (record,) = seen[0]["Records"]
    # The keys `sam local generate-event dynamodb update` prints, in the same nesting.
    assert set(record) == {
        "eventID",
        "eventName",
        "eventVersion",
        "eventSource",
        "awsRegion",
        "dynamodb",
        "eventSourceARN",
    }
    assert set(record["dynamodb"]) == {
        "ApproximateCreationDateTime",
        "Keys",
        "NewImage",
        "SequenceNumber",
        "SizeBytes",
        "StreamViewType",
    }
    assert record["eventName"] == "INSERT"
    assert record["eventVersion"] == "1.1"
    assert record["eventSource"] == "aws:dynamodb"
    assert record["eventSourceARN"] == cloud.resources.stream_arn("ConnectionsTable")
    assert record["dynamodb"]["Keys"] == {"pk": {"S": "CONN#a"}, "sk": {"S": "STATE"}}
    assert record["dynamodb"]["ApproximateCreationDateTime"] == int(cloud.now().timestamp())
    assert record["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    json.dumps(seen[0])  # a real event is JSON: no bytes or datetimes may leak through


def test_filter_criteria_let_only_connection_inserts_and_modifies_through(cloud: LocalCloud) -> None:
    recorder = Recorder()
    cloud.override_handler(EMITTER, recorder)
    ddb = cloud.client("dynamodb")
    name = cloud.resources.table_name("ConnectionsTable")
    put_connections(cloud, "kept")
    ddb.put_item(TableName=name, Item={"pk": {"S": table.POLLER_PK}, "sk": {"S": table.CHECKPOINT_SK}})
    put_connections(cloud, "kept")  # MODIFY of the same item: passes
    ddb.delete_item(TableName=name, Key={k: {"S": v} for k, v in table.connection_key("kept").items()})

    cloud.drain()

    assert recorder.delivered == ["kept", "kept"]
    assert cloud.stream_mappings["EmitterFunctionTableStream"].filtered_out == 2  # checkpoint + REMOVE


def test_batches_hold_at_most_batch_size_records_in_stream_order(cloud: LocalCloud) -> None:
    recorder = Recorder()
    cloud.override_handler(EMITTER, recorder)
    names = [f"e{i:03d}" for i in range(230)]
    put_connections(cloud, *names)

    cloud.drain()

    assert [len(batch) for batch in recorder.batches] == [100, 100, 30]
    assert recorder.delivered == names


def test_partial_failure_retries_from_the_lowest_failed_record(cloud: LocalCloud) -> None:
    # First call: c and e fail. Lambda checkpoints before c and sends c, d, e again.
    recorder = Recorder(fail=lambda names, call: ["e", "c"] if call == 1 else None)
    cloud.override_handler(EMITTER, recorder)
    put_connections(cloud, "a", "b", "c", "d", "e")

    cloud.drain()

    assert recorder.batches == [["a", "b", "c", "d", "e"], ["c", "d", "e"]]
    assert on_failure_messages(cloud) == []


def test_bisect_isolates_a_poison_record_and_the_rest_go_through(cloud: LocalCloud) -> None:
    recorder = Recorder(fail=lambda names, call: "raise" if "poison" in names else None)
    cloud.override_handler(EMITTER, recorder)
    names = ["a", "b", "c", "poison", "d", "e", "f"]
    put_connections(cloud, *names)

    cloud.drain()

    succeeded = [n for batch in recorder.batches if "poison" not in batch for n in batch]
    assert sorted(succeeded) == ["a", "b", "c", "d", "e", "f"]
    # Halves of halves until the poison record is alone; then it uses up its 5 retries.
    assert recorder.batches[0] == names
    assert recorder.batches.count(["poison"]) == 1 + 5
    (message,) = on_failure_messages(cloud)
    info = message["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["responseContext"]["functionError"] == "Unhandled"


def test_a_record_that_always_fails_goes_to_the_on_failure_queue_without_blocking(
    cloud: LocalCloud,
) -> None:
    sequence_of: dict[str, str] = {}

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        for record in event["Records"]:
            sequence_of[record["dynamodb"]["NewImage"]["marker"]["S"]] = record["dynamodb"]["SequenceNumber"]
        failed = [r for r in event["Records"] if r["dynamodb"]["NewImage"]["marker"]["S"] == "bad"]
        return {"batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in failed]}

    recorder = Recorder()
    cloud.override_handler(
        EMITTER, lambda event, context: (recorder(event, context), handler(event, context))[1]
    )
    put_connections(cloud, "ok1", "bad", "ok2")
    cloud.drain()
    put_connections(cloud, "later")
    cloud.drain()

    # 1 first try + MaximumRetryAttempts (5) retries of the failing suffix [bad, ok2].
    assert recorder.batches == [["ok1", "bad", "ok2"]] + [["bad", "ok2"]] * 5 + [["later"]]
    (message,) = on_failure_messages(cloud)
    parsed = DynamoDBStreamLambdaOnFailureDestinationModel.model_validate(message)
    assert parsed.request_context.condition == "RetryAttemptsExhausted"
    assert parsed.request_context.approximate_invoke_count == 6
    assert parsed.request_context.function_arn == cloud.functions[EMITTER].arn
    info = message["DDBStreamBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (
        sequence_of["bad"],
        sequence_of["ok2"],
    )
    assert info["batchSize"] == 2
    assert info["streamArn"] == cloud.resources.stream_arn("ConnectionsTable")
    assert "functionError" not in message["responseContext"]  # the function returned; records failed


def test_records_older_than_the_maximum_age_are_sent_to_on_failure_unprocessed(cloud: LocalCloud) -> None:
    recorder = Recorder()
    cloud.override_handler(EMITTER, recorder)
    put_connections(cloud, "stale")
    cloud.advance(hours=24, seconds=1)  # MaximumRecordAgeInSeconds: 86400
    put_connections(cloud, "fresh")

    cloud.drain()

    assert recorder.delivered == ["fresh"]
    (message,) = on_failure_messages(cloud)
    assert message["requestContext"]["condition"] == "RecordAgeExceeded"
    assert message["requestContext"]["approximateInvokeCount"] == 0


def test_drain_stops_a_runaway_loop(cloud: LocalCloud) -> None:
    counter = iter(range(10**6))

    def writes_for_every_record(event: dict[str, Any], context: Any) -> None:
        put_connections(cloud, f"loop{next(counter)}")

    cloud.override_handler(EMITTER, writes_for_every_record)
    put_connections(cloud, "seed")

    with pytest.raises(RunnerLoopError):
        cloud.drain(max_rounds=20)
