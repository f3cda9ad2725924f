"""Operating it end to end (docs/operations.md): the operator's command against the local runner.

The events a Reference ID should have had are computed from the simulator's ground truth (its
entries at each poll, diffed), never from the stack's own history, so a replay that derived the
wrong events, or none, fails here.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devtools.leap_simulator import LeapSimulator
from devtools.local_runner import LocalCloud, PartnerMessage
from functions.emitter import app as emitter_app
from leap_tracker import table
from leap_tracker.adapters.aws import aws_client
from leap_tracker.config import load_settings
from leap_tracker.leap import wire
from leap_tracker_cli import main as leap_tracker
from tests.e2e.support import EMITTER_TYPES, POLLS, Run, emitted, expected_events, run_polls


@dataclass
class Refusal:
    """While ``refusing``, the topic refuses every message about ``entry_id`` (as a topic whose key
    policy was broken for a while would, for everything)."""

    entry_id: str
    refusing: bool = True
    refused: int = 0


class RefusingOneEntry:
    """The emitter's SNS client under a :class:`Refusal`."""

    def __init__(self, client: Any, refusal: Refusal) -> None:
        self._client = client
        self._refusal = refusal

    def publish_batch(self, **request: Any) -> dict[str, Any]:
        refusal = self._refusal
        entries = request["PublishBatchRequestEntries"]
        refused = [e for e in entries if refusal.refusing and _entry_of(e["Message"]) == refusal.entry_id]
        passed = [e for e in entries if e not in refused]
        refusal.refused += len(refused)
        answer: dict[str, Any] = {"Successful": [], "Failed": []}
        if passed:
            answer = self._client.publish_batch(**{**request, "PublishBatchRequestEntries": passed})
        failed = [{"Id": e["Id"], "Code": "AuthorizationError", "SenderFault": True} for e in refused]
        return {"Successful": answer.get("Successful", []), "Failed": [*answer.get("Failed", []), *failed]}


def _entry_of(message: str) -> str:
    return json.loads(message)["data"]["connection"]["id"]


@pytest.fixture
def refusing_one(cloud: LocalCloud) -> Callable[[str], Refusal]:
    """Give the emitter's next cold start an SNS client refusing one entry's messages."""

    def install(entry_id: str) -> Refusal:
        refusal = Refusal(entry_id)
        cold_start: list[emitter_app.Dependencies] = []

        def client(service: str) -> Any:
            made = aws_client(service)  # as the function's cold start makes it
            return RefusingOneEntry(made, refusal) if service == "sns" else made

        def handler(event: dict[str, Any], context: Any) -> Any:
            if not cold_start:
                cold_start.append(emitter_app.build_dependencies(load_settings(), client=client))
            return emitter_app.lambda_handler(event, context, cold_start[0])

        cloud.override_handler("EmitterFunction", handler)
        return refusal

    return install


class GoneStream:
    """A DynamoDB Streams client for a stream that no longer has the records (past 24 hours)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        def refuse(**_: Any) -> Any:
            self.calls.append(operation)
            error = {"Code": "TrimmedDataAccessException", "Message": "the records are past the trim horizon"}
            raise ClientError({"Error": error}, operation)

        return refuse


class Recording:
    """A boto3 client that remembers the operations made through it."""

    def __init__(self, client: Any, seen: list[tuple[str, str]], service: str) -> None:
        self._client, self._seen, self._service = client, seen, service

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute) or name in ("meta", "exceptions", "can_paginate"):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            operation = (
                args[0] if name == "get_paginator" else name
            )  # a paginator's calls are its operation's
            self._seen.append((self._service, operation))
            return attribute(*args, **kwargs)

        return call


def operator(cloud: LocalCloud, *, streams: Any = None, seen: list[tuple[str, str]] | None = None) -> Any:
    """``leap-tracker`` on the operator's machine: explicit resources, the runner's clients."""
    environ = {
        "CONNECTIONS_TABLE": cloud.resources.table_name("ConnectionsTable"),
        "EVENTS_TOPIC_ARN": cloud.resources.topic_arn("EventsTopic"),
        "EMITTER_FAILURE_QUEUE_URL": cloud.resources.queue_url("EmitterFailureQueue"),
        "LOG_HASH_KEY_SECRET_ARN": cloud.resources["LogHashKeySecret"].ref,
        "EMITTER_FUNCTION_NAME": cloud.resources.function_name("EmitterFunction"),
        "OUTREACH_FUNCTION_NAME": cloud.resources.function_name("OutreachFunction"),
        "POLLER_FUNCTION_NAME": cloud.resources.function_name("PollerFunction"),
    }

    def client(service: str, region_name: str | None = None) -> Any:
        if service == "lambda":
            made = cloud.lambda_client()
        elif service == "dynamodbstreams" and streams is not None:
            made = streams
        else:
            made = cloud.client(service)
        return made if seen is None else Recording(made, seen, service)

    def run(*argv: str) -> tuple[int, dict[str, Any]]:
        out = io.StringIO()
        status = leap_tracker.main([*argv, "--json"], environ=environ, client=client, out=out)
        return status, json.loads(out.getvalue())

    return run


def merged(*runs: Run) -> dict[str, list[dict[str, Any]]]:
    """The stored-snapshot histories of consecutive runs (a run's first entry may repeat the last)."""
    histories: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        for ref_id, history in run.histories.items():
            kept = histories.setdefault(ref_id, [])
            kept += [entry for entry in history if not kept or entry != kept[-1]]
    return histories


def queue_depth(cloud: LocalCloud, logical_id: str) -> int:
    attributes = cloud.client("sqs").get_queue_attributes(
        QueueUrl=cloud.resources.queue_url(logical_id),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def markers(cloud: LocalCloud) -> list[dict[str, Any]]:
    return cloud.client("dynamodb").query(
        TableName=cloud.resources.table_name("ConnectionsTable"),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": table.EMITTER_FAILURE_PK}},
    )["Items"]


def ids(messages: list[PartnerMessage]) -> Counter[str]:
    return Counter(event["id"] for event in emitted(messages))


@pytest.fixture
def planted_failure(
    cloud: LocalCloud, leap: LeapSimulator, refusing_one: Callable[[str], Refusal]
) -> tuple[str, str, list[Run]]:
    """One entry's first change never published (the emitter gave up on it: a failure message and a
    marker), then the topic accepting again while polling goes on. Returns the entry id, the partner
    queue and the runs."""
    partner = cloud.subscribe_queue("EventsTopic")
    runs = []
    while not leap.entries_at(cloud.now()):  # the campaign's first clicks
        runs.append(run_polls(cloud, leap, {"partner": partner}, polls=1))
    entry_id = sorted(entry[wire.ENTRY_ID] for entry in leap.entries_at(cloud.now()))[0]
    refusal = refusing_one(entry_id)
    runs.append(run_polls(cloud, leap, {"partner": partner}, polls=1))
    assert refusal.refused > 0
    assert queue_depth(cloud, "EmitterFailureQueue") == 1, "the planted failure did not reach the queue"
    refusal.refusing = False
    runs.append(run_polls(cloud, leap, {"partner": partner}, polls=POLLS - len(runs)))
    return entry_id, partner, runs


def test_replay_failures_delivers_exactly_the_missing_events_once(
    cloud: LocalCloud, planted_failure: tuple[str, str, list[Run]]
) -> None:
    entry_id, partner, runs = planted_failure
    expected = expected_events(merged(*runs))
    before = ids([message for run in runs for message in run.received["partner"]])
    missing = set(expected) - set(before)
    assert missing, "nothing was lost: the planted failure did not take"
    assert {expected[i]["data"]["connection"]["id"] for i in missing} == {entry_id}
    assert len(markers(cloud)) == 1
    streams = GoneStream()

    dry_status, dry = operator(cloud, streams=streams)("replay-failures", "--dry-run")
    assert dry_status == 0, dry
    assert cloud.drain_queue(partner) == []
    assert queue_depth(cloud, "EmitterFailureQueue") == 1
    status, answer = operator(cloud, streams=streams)("replay-failures")

    assert status == 0, answer
    replayed = ids(cloud.drain_queue(partner))
    assert set(replayed) == missing  # the missing events, with their original ids
    assert max(replayed.values()) == 1  # each once
    for message in emitted(cloud.drain_queue(partner)):
        raise AssertionError(f"more came: {message['id']}")
    assert queue_depth(cloud, "EmitterFailureQueue") == 0
    assert markers(cloud) == []
    assert streams.calls == []  # the markers sufficed: the gone stream was not needed


def test_replay_since_backfills_a_new_queue_with_every_event_once_in_order(
    cloud: LocalCloud, leap: LeapSimulator
) -> None:
    start = cloud.now()
    run = run_polls(cloud, leap, {"partner": cloud.subscribe_queue("EventsTopic")})
    expected = expected_events(run.histories)
    fresh = cloud.client("sqs").create_queue(QueueName="new-subscriber")["QueueUrl"]

    status, answer = operator(cloud)("replay", "--since", start.isoformat(), "--to-queue", fresh)

    assert status == 0, answer
    events = emitted(cloud.drain_queue(fresh))
    assert Counter(e["id"] for e in events) == Counter(set(expected))  # each event of the window, once
    assert all(event == expected[event["id"]] for event in events)  # same ids, same bodies
    latest: dict[str, int] = {}
    for event in events:  # in sequence order per entry
        entry, sequence = event["data"]["connection"]["id"], int(event["sequence"])
        assert sequence >= latest.get(entry, 0), f"{event['subject']}: {sequence} came late"
        latest[entry] = sequence

    typed_queue = cloud.client("sqs").create_queue(QueueName="completions-only")["QueueUrl"]
    status, _ = operator(cloud)(
        "replay", "--since", start.isoformat(), "--type", "connection.completed", "--to-queue", typed_queue
    )
    assert status == 0
    completed = {i for i, e in expected.items() if e["type"] == "connection.completed"}
    assert completed
    assert {e["id"] for e in emitted(cloud.drain_queue(typed_queue))} == completed
    assert {e["type"] for e in events} <= EMITTER_TYPES


def test_status_finds_a_reference_id_through_the_index_with_its_outreach(
    cloud: LocalCloud, leap: LeapSimulator, webhook: Any
) -> None:
    run_polls(cloud, leap, {})
    by_ref = Counter(delivery.event["subject"] for delivery in webhook.accepted())
    assert by_ref, "no customer was messaged: the run is too short to show outreach"
    ref_id, _ = by_ref.most_common(1)[0]
    webhook_ids = {d.webhook_id for d in webhook.accepted() if d.event["subject"] == ref_id}
    truth = next(e for e in leap.entries_at(cloud.now()) if e[wire.ENTRY_REF_ID] == ref_id)
    seen: list[tuple[str, str]] = []

    status, answer = operator(cloud, seen=seen)("status", ref_id)

    assert status == 0, answer
    assert ("dynamodb", "scan") not in seen
    assert ("dynamodb", "query") in seen
    [entry] = answer["entries"]
    assert entry["snapshot"]["connection_status"] == truth[wire.ENTRY_CONNECTION_STATUS]
    sent = entry["outreach"]["messages"]
    assert {message["webhook_id"] for message in sent} == webhook_ids
    assert entry["last_events"], "no last events shown"
    missing_status, missing = operator(cloud)("status", "no-such-reference-id")
    assert missing_status == 2
    assert "no entry for Reference ID" in missing["error"]


def test_redrive_empties_a_dead_letter_queue_into_its_source(cloud: LocalCloud) -> None:
    sqs = cloud.client("sqs")
    dead = cloud.resources.queue_url("MeterWatchDeadLetterQueue")
    for n in range(13):
        sqs.send_message(QueueUrl=dead, MessageBody=json.dumps({"n": n}))

    status, answer = operator(cloud)("redrive", dead)

    assert status == 0, answer
    assert queue_depth(cloud, "MeterWatchDeadLetterQueue") == 0
    moved = cloud.drain_queue("MeterWatchQueue")
    assert sorted(m.body["n"] for m in moved) == list(range(13))
