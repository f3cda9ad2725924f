"""Events end to end: Leap simulator -> poller -> table -> stream -> emitter -> SNS -> partner queues.

The expected events are computed independently of the stream: the simulator's entries at each poll
time, kept when they changed (what the poller stores, sequence 1, 2, ...), diffed. Partner queues
subscribe with the ready filter policies (docs/events.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from devtools.leap_simulator import LeapSimulator
from devtools.local_runner import LocalCloud, PartnerMessage
from functions.emitter import app as emitter_app
from leap_tracker import table
from leap_tracker.adapters.aws import aws_client
from leap_tracker.config import load_settings
from leap_tracker.events import catalog
from tests.builders import CLAIMS, ready_policies
from tests.e2e.support import POLLS, emitted, expected_events, run_polls


def assert_valid(messages: list[PartnerMessage]) -> None:
    for message in messages:
        event = message.body
        schema = catalog.json_schema(event["type"])
        Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(event)
        assert message.attributes == catalog.message_attributes(event)


def assert_in_order_per_entry(events: list[dict[str, Any]]) -> None:
    """In arrival order (first arrival of each id), no entry's change comes before an earlier one."""
    seen: set[str] = set()
    latest: dict[str, int] = {}
    for event in events:
        if event["id"] in seen:
            continue
        seen.add(event["id"])
        sequence, entry = int(event["sequence"]), event["data"]["connection"]["id"]  # counted per entry
        assert sequence >= latest.get(entry, 0), f"{event['subject']}: {sequence} came late"
        latest[entry] = sequence


def test_partner_queues_receive_exactly_the_expected_events(cloud: LocalCloud, leap: LeapSimulator) -> None:
    queues = {"everything": cloud.subscribe_queue("EventsTopic")}
    for name, (scope, policy) in ready_policies().items():
        queues[name] = cloud.subscribe_queue("EventsTopic", policy, scope=scope)

    run = run_polls(cloud, leap, queues)

    expected = expected_events(run.histories)
    assert len(expected) > 50, len(expected)
    assert_valid(run.received["everything"])
    events = emitted(run.received["everything"])
    assert len({e["id"] for e in events}) == len(events)  # no duplicate without a failure
    assert {e["id"] for e in events} == set(expected)
    assert events == [expected[e["id"]] for e in events]  # byte-for-byte what the diff says
    assert_in_order_per_entry(events)
    for name, claim in CLAIMS.items():
        got = {e["id"] for e in emitted(run.received[name])}
        assert got == {i for i, e in expected.items() if claim(e)}, name
    assert not [r for r in cloud.errors if r.function == "EmitterFunction"]


class RefusingSns:
    """The emitter's SNS client, refusing every entry of chosen PublishBatch calls (1-based)."""

    def __init__(self, client: Any, refuse_calls: set[int]) -> None:
        self._client = client
        self.refuse_calls = refuse_calls
        self.calls = 0

    def publish_batch(self, **request: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls in self.refuse_calls:
            entries = request["PublishBatchRequestEntries"]
            failed = [{"Id": e["Id"], "Code": "InternalError", "SenderFault": False} for e in entries]
            return {"Successful": [], "Failed": failed}
        return self._client.publish_batch(**request)


@pytest.fixture
def refusing_sns(cloud: LocalCloud) -> Callable[[set[int]], list[RefusingSns]]:
    """Give the emitter's next cold start a refusing client; returns the clients it gets."""

    def install(refuse_calls: set[int]) -> list[RefusingSns]:
        made: list[RefusingSns] = []
        cold_start: list[emitter_app.Dependencies] = []

        def refusing_client(service: str) -> Any:
            if service != "sns":  # the table (failure markers) as the function's cold start makes it
                return aws_client(service)
            made.append(RefusingSns(aws_client(service), refuse_calls))
            return made[-1]

        def handler(event: Any, context: Any) -> Any:
            if not cold_start:  # built once, in the function's environment, as its cold start does
                cold_start.append(emitter_app.build_dependencies(load_settings(), client=refusing_client))
            return emitter_app.lambda_handler(event, context, cold_start[0])

        cloud.override_handler("EmitterFunction", handler)
        return made

    return install


def test_a_failed_publish_is_retried_without_losing_or_reordering(
    cloud: LocalCloud, leap: LeapSimulator, refusing_sns: Callable[[set[int]], list[RefusingSns]]
) -> None:
    clients = refusing_sns({2, 3, 7})  # every entry of these PublishBatch calls is refused
    queues = {"partner": cloud.subscribe_queue("EventsTopic")}

    run = run_polls(cloud, leap, queues)

    events = emitted(run.received["partner"])
    assert {e["id"] for e in events} == set(expected_events(run.histories))
    assert_in_order_per_entry(events)
    [client] = clients
    assert client.calls > 7
    emitter = [r for r in cloud.invocations if r.function == "EmitterFunction"]
    assert len([r for r in emitter if r.error or r.result["batchItemFailures"]]) == 3  # retried by the stream
    assert cloud.drain_queue("EmitterFailureQueue") == []
    assert failure_markers(cloud) == {}  # each failed record's marker went when its retry published


def test_a_record_that_always_fails_goes_to_the_failure_queue_without_blocking(
    cloud: LocalCloud, leap: LeapSimulator
) -> None:
    queues = {"partner": cloud.subscribe_queue("EventsTopic")}
    before = run_polls(cloud, leap, queues, polls=POLLS // 2)
    poison = {
        table.PK: {"S": table.CONNECTION_PREFIX + "CAISO_poison_ref-poison"},
        table.SK: {"S": table.CONNECTION_SK},
        table.ITEM_TYPE: {"S": table.CONNECTION_ITEM_TYPE},
        table.CONN_ENTRY: {"S": "{this is not JSON"},
        table.CONN_SEQUENCE: {"N": "1"},
    }
    cloud.client("dynamodb").put_item(TableName=cloud.resources.table_name("ConnectionsTable"), Item=poison)

    after = run_polls(cloud, leap, queues, polls=POLLS // 2)

    histories = before.histories
    for ref_id, history in after.histories.items():
        histories[ref_id] += [e for e in history if not histories[ref_id] or e != histories[ref_id][-1]]
    events = emitted(before.received["partner"] + after.received["partner"])
    assert {e["id"] for e in events} == set(expected_events(histories))
    [failure] = cloud.drain_queue("EmitterFailureQueue")
    info = failure.body["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1
    assert info["startSequenceNumber"] == info["endSequenceNumber"]
    assert failure.body["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert "this is not JSON" not in json.dumps(failure.body)  # the stream location only, no data
    # ... and the table names what it was: the poison record's marker, under that sequence number
    [marker] = failure_markers(cloud).values()
    assert marker[table.FAILURE_STREAM_SEQUENCE]["S"] == info["startSequenceNumber"]
    assert marker[table.FAILURE_ENTRY_ID]["S"] == "CAISO_poison_ref-poison"
    assert marker[table.FAILURE_SEQUENCE]["N"] == "1"
    assert marker[table.FAILURE_REASON]["S"].startswith("NotASnapshot: 'entry'")
    assert "poison" not in marker[table.FAILURE_REASON]["S"]


def failure_markers(cloud: LocalCloud) -> dict[str, dict[str, Any]]:
    """The emitter's failure markers in the table (AttributeValues), by sort key."""
    answer = cloud.client("dynamodb").query(
        TableName=cloud.resources.table_name("ConnectionsTable"),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": table.EMITTER_FAILURE_PK}},
        ConsistentRead=True,
    )
    return {item[table.SK]["S"]: item for item in answer["Items"]}
