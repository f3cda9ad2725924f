"""The operator's subcommands of ``leap-tracker`` against moto, through main([...]): ``status``, ``replay``,
``replay-failures``, ``redrive`` and ``poll``.

The table is made here with the template's key schema and the indexes these commands use (``ref-index``
KEYS_ONLY on ``ref_id``, the stream); its items are written with leap_tracker.table's codec and the
project's own stores, as the poller, the emitter, outreach and the meter watch write them. Expected
events are always ``change_events`` of the stored pair, so ids and bodies are compared exactly.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from devtools.local_runner import LocalCloud
from devtools.local_runner.shapes import stream_on_failure_record, stream_record
from leap_tracker import table
from leap_tracker.adapters.dynamo import deserialize, serialize
from leap_tracker.adapters.outreach_store import DynamoOutreachStore, history_from_item
from leap_tracker.adapters.watch_store import DynamoWatchStore
from leap_tracker.events.diff import DEFAULT_RULES, DiffRules, change_events
from leap_tracker.events.publishing import message_group_id, to_message
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import canonical_json, content_hash
from leap_tracker.meters.model import MeterWatch
from leap_tracker.outreach import ledger
from leap_tracker.outreach.decision import OutreachPolicy, Trigger, decide, utility_error_reason
from leap_tracker.timeutil import format_instant, utc_now
from leap_tracker_cli import main as cli
from tests.builders import SDGE, entry, utility
from tests.fakes.log_key import LOG_HASH_KEY, PSEUDONYMS

REGION = "us-east-1"
TABLE = "connections"
TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
FAKE_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:leap-api-key"
T0 = datetime(2025, 3, 5, 8, 0, tzinfo=UTC)
REF = "Test1012"


# --- the world: table, topic, queues --------------------------------------------------------------------


@dataclass
class World:
    topic: str
    failures: str  # the emitter failure queue
    calls: list[tuple[str, str | None]] = field(default_factory=list)  # (DynamoDB operation, index)
    lambda_client: Any = None

    def environ(self, **extra: str) -> dict[str, str]:
        return {
            "CONNECTIONS_TABLE": TABLE,
            "EVENTS_TOPIC_ARN": self.topic,
            "EMITTER_FAILURE_QUEUE_URL": self.failures,
            "LOG_HASH_KEY": LOG_HASH_KEY,
            **extra,
        }

    def client(self, service: str, region_name: str | None = None) -> Any:
        if service == "lambda":
            return self.lambda_client
        made = boto3.client(service, region_name=region_name or REGION)
        if service == "dynamodb":
            made.meta.events.register("before-parameter-build.dynamodb", self._record)
        return made

    def _record(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, params.get("IndexName")))


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": name, "AttributeType": "S"}
                for name in (
                    table.PK,
                    table.SK,
                    table.CONN_REF_ID,
                    table.DUE_BUCKET_ATTRIBUTE,
                    table.DUE_AT_ATTRIBUTE,
                )
            ],
            KeySchema=[
                {"AttributeName": table.PK, "KeyType": "HASH"},
                {"AttributeName": table.SK, "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": table.REF_INDEX,
                    "KeySchema": [{"AttributeName": table.CONN_REF_ID, "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                },
                {
                    "IndexName": table.DUE_INDEX,
                    "KeySchema": [
                        {"AttributeName": table.DUE_BUCKET_ATTRIBUTE, "KeyType": "HASH"},
                        {"AttributeName": table.DUE_AT_ATTRIBUTE, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
            ],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        topic = boto3.client("sns", region_name=REGION).create_topic(Name="events")["TopicArn"]
        failures = boto3.client("sqs", region_name=REGION).create_queue(QueueName="emitter-failures")[
            "QueueUrl"
        ]
        yield World(topic, failures)


def run(world: World, capsys: pytest.CaptureFixture[str], *argv: str, **environ: str) -> tuple[int, Any, str]:
    """(exit status, the --json document or the text, stderr)."""
    status = cli.main(list(argv), environ=world.environ(**environ), client=world.client)
    out = capsys.readouterr()
    return status, json.loads(out.out) if "--json" in argv and out.out else out.out, out.err


def queue(name: str, *, fifo: bool = False, topic: str | None = None) -> str:
    """A fresh queue; subscribed to ``topic`` with raw delivery when given (a partner's queue)."""
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"} if fifo else {})["QueueUrl"]
    if topic:
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        boto3.client("sns", region_name=REGION).subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
        )
    return url


def drain(url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    messages: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            return messages
        messages += got
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
        )


def delivered(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    """(body, attributes) of each message, as a raw subscription's queue holds them."""
    return [
        (m["Body"], {name: value["StringValue"] for name, value in m.get("MessageAttributes", {}).items()})
        for m in messages
    ]


# --- stored items, written as the project writes them ---------------------------------------------------


def versions(ref_id: str = REF, region: str = "CAISO") -> list[dict[str, Any]]:
    """Four stored states of one entry: not started, partial, a utility error, completed."""
    return [
        entry(wire.CONNECTION_NOT_STARTED, ref_id=ref_id, region=region, last=T0),
        entry(
            wire.CONNECTION_PARTIAL,
            [utility(SDGE)],
            ref_id=ref_id,
            region=region,
            last=T0 + timedelta(hours=1),
        ),
        entry(
            wire.CONNECTION_ERROR,
            [utility(SDGE, wire.UTILITY_ERROR, error_code=wire.ERROR_INVALID_CREDENTIALS)],
            ref_id=ref_id,
            region=region,
            last=T0 + timedelta(hours=2),
        ),
        entry(
            wire.CONNECTION_COMPLETED,
            [utility(SDGE, wire.UTILITY_CONNECTED)],
            ref_id=ref_id,
            region=region,
            last=T0 + timedelta(hours=3),
        ),
    ]


def put(item: Mapping[str, Any]) -> None:
    boto3.client("dynamodb", region_name=REGION).put_item(TableName=TABLE, Item=serialize(item))


def store(states: Sequence[dict[str, Any]], written: Sequence[datetime]) -> str:
    """History items for each state (sequence 1, 2, ...) and the snapshot of the last; the entry id."""
    previous: str | None = None
    for sequence, (state, at) in enumerate(zip(states, written, strict=True), start=1):
        canonical = canonical_json(state)
        put(
            {
                **table.history_key(state[wire.ENTRY_ID], sequence),
                table.ITEM_TYPE: table.HISTORY_ITEM_TYPE,
                table.HISTORY_CHANGE: table.encode_stored_change(previous, canonical),
                table.HISTORY_SEQUENCE: sequence,
                table.HISTORY_WRITTEN_AT: format_instant(at),
                table.HISTORY_STATUS: state[wire.ENTRY_CONNECTION_STATUS],
            }
        )
        previous = canonical
    last, sequence = states[-1], len(states)
    put(snapshot_item(last, sequence, written[-1]))
    return str(last[wire.ENTRY_ID])


def snapshot_item(state: dict[str, Any], sequence: int, at: datetime) -> dict[str, Any]:
    canonical = canonical_json(state)
    return {
        **table.connection_key(state[wire.ENTRY_ID]),
        table.ITEM_TYPE: table.CONNECTION_ITEM_TYPE,
        table.CONN_ENTRY: table.encode_stored_entry(canonical),
        table.CONN_CONTENT_HASH: content_hash(canonical),
        table.CONN_SEQUENCE: sequence,
        table.CONN_LAST_INTERACTION: state[wire.ENTRY_LAST_INTERACTION],
        table.CONN_REF_ID: state[wire.ENTRY_REF_ID],
        table.CONN_WRITTEN_AT: format_instant(at),
        table.CONN_STATUS: state[wire.ENTRY_CONNECTION_STATUS],
        table.CONN_TRANSMISSION_REGION: state[wire.ENTRY_TRANSMISSION_REGION],
    }


def expected(
    states: Sequence[dict[str, Any]], sequences: Sequence[int], rules: DiffRules = DEFAULT_RULES
) -> list[Any]:
    """The messages of the changes ``sequences`` of ``states`` (1-based), as the emitter makes them
    (from the stored, canonical form of each state: its keys sorted)."""
    states = [json.loads(canonical_json(state)) for state in states]
    found = []
    for sequence in sequences:
        previous = states[sequence - 2] if sequence > 1 else None
        events = change_events(previous, states[sequence - 1], sequence, rules)
        found += [to_message(event, states[0][wire.ENTRY_ID]) for event in events]
    return found


def hours(*offsets: int) -> list[datetime]:
    return [T0 + timedelta(hours=h) for h in offsets]


def marker(stream_sequence: str, entry_id: str, sequence: int) -> None:
    put(
        {
            **table.emitter_failure_key(stream_sequence),
            table.ITEM_TYPE: table.FAILURE_ITEM_TYPE,
            table.FAILURE_ENTRY_ID: entry_id,
            table.FAILURE_SEQUENCE: sequence,
            table.FAILURE_STREAM_SEQUENCE: stream_sequence,
            table.FAILURE_REASON: "SNS: InternalError",
            table.FAILURE_FAILED_AT: format_instant(T0),
        }
    )


def markers() -> list[str]:
    answer = boto3.client("dynamodb", region_name=REGION).query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": table.EMITTER_FAILURE_PK}},
    )
    return [item[table.SK]["S"] for item in answer["Items"]]


def failure_message(world: World, first: str, last: str, size: int) -> None:
    body = {
        "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 6},
        "version": "1.0",
        "DDBStreamBatchInfo": {
            "shardId": "shardId-1",
            "startSequenceNumber": first,
            "endSequenceNumber": last,
            "approximateArrivalOfFirstRecord": "2025-03-05T08:00:00Z",
            "approximateArrivalOfLastRecord": "2025-03-05T09:30:00Z",
            "batchSize": size,
            "streamArn": f"arn:aws:dynamodb:{REGION}:123456789012:table/{TABLE}/stream/2025-03-05T00:00:00",
        },
    }
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=world.failures, MessageBody=json.dumps(body)
    )


# --- status ---------------------------------------------------------------------------------------------


def test_status_finds_the_reference_id_through_its_index_and_shows_what_is_known_and_what_comes_next(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    states = versions()[:3]  # stuck with a utility error
    entry_id = store(states, hours(0, 1, 2))
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    outreach = DynamoOutreachStore(dynamodb, TABLE)
    snapshot, _ = outreach.load(entry_id)
    assert snapshot is not None
    reason = utility_error_reason(wire.ERROR_INVALID_CREDENTIALS)
    reservation = ledger.Reservation(
        entry_id=entry_id,
        ref_id=REF,
        dedupe_key=ledger.dedupe_key(reason, snapshot.content_hash, 1),
        reason=reason,
        content_hash=snapshot.content_hash,
        sequence=3,
        attempt=1,
        state_sends=1,
        channels=("topic",),
        connect_url=f"https://connect.leap.energy/?refId={REF}",
    )
    sent_at, lease = T0 + timedelta(hours=4), T0 + timedelta(hours=5)
    outreach.claim(reservation, 0, sent_at, lease)
    outreach.mark_sent(reservation, sent_at, sent_at + timedelta(hours=48), lease)

    status, document, _ = run(world, capsys, "status", REF, "--events", "3", "--json")

    assert status == 0
    assert [e["entry_id"] for e in document["entries"]] == [entry_id]
    shown = document["entries"][0]
    assert shown["pseudonym"] == PSEUDONYMS.entry(entry_id)
    assert {k: shown["snapshot"][k] for k in ("connection_status", "transmission_region", "sequence")} == {
        "connection_status": wire.CONNECTION_ERROR,
        "transmission_region": "CAISO",
        "sequence": 3,
    }
    assert shown["snapshot"]["error_codes"] == [wire.ERROR_INVALID_CREDENTIALS]
    assert shown["snapshot"]["utilities"][0]["status"] == wire.UTILITY_ERROR
    # What outreach does next is the service's own decision on the stored state, with its settings.
    state = dynamodb.get_item(
        TableName=TABLE, Key={"pk": {"S": f"OUTREACH#{entry_id}"}, "sk": {"S": "STATE"}}
    )
    history = history_from_item(deserialize(state["Item"]))
    policy = OutreachPolicy()
    now = utc_now()
    on_event = decide(snapshot, history, policy, now, Trigger.EVENT)
    at_follow_up = decide(snapshot, history, policy, now, Trigger.FOLLOW_UP)
    assert (shown["next"]["on_event_now"]["action"], shown["next"]["on_event_now"]["because"]) == (
        on_event.action.value,
        "already_sent",
    )
    reminder = shown["next"]["at_follow_up"]
    assert (reminder["action"], reminder["attempt"], reminder["dedupe_key"]) == (
        "send",
        at_follow_up.attempt,
        at_follow_up.dedupe_key,
    )
    assert reminder["webhook_id"] == ledger.webhook_id(entry_id, str(at_follow_up.dedupe_key))
    assert document["outreach_settings"]["source"].startswith("the defaults")
    assert (
        document["outreach_settings"]["holdout_percent"],
        document["outreach_settings"]["holdout_hours"],
    ) == (
        10,
        168,
    )
    assert shown["outreach"]["attempts"] == 1
    [message] = shown["outreach"]["messages"]
    assert (message["reason"], message["status"], message["channels"], message["webhook_id"]) == (
        reason,
        "SENT",
        ["topic"],
        reservation.webhook_id,
    )
    assert shown["meter_watch"] is None
    # The last 3 events, oldest first, are those the emitter published for the newest changes.
    assert [e["id"] for e in shown["last_events"]] == [m.event_id for m in expected(states, [1, 2, 3])][-3:]
    # Found through the index, read by key: no Scan.
    assert ("Query", table.REF_INDEX) in world.calls
    assert "Scan" not in {operation for operation, _ in world.calls}


def test_status_shows_each_entry_of_a_reference_id_with_its_meter_watch_as_text(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    caiso = store(versions(region="CAISO")[:2], hours(0, 1))
    pjm_states = versions(region="PJM")
    pjm = store(pjm_states, hours(0, 1, 2, 3))
    DynamoWatchStore(boto3.client("dynamodb", region_name=REGION), TABLE).create(
        MeterWatch(
            pjm, REF, "PJM", T0 + timedelta(hours=3), 4, T0 + timedelta(hours=3), T0 + timedelta(hours=27), 2
        )
    )

    status, text, _ = run(world, capsys, "status", REF)

    assert status == 0
    assert text.startswith(f"Reference ID {REF}: 2 entries")
    assert f"entry {caiso} ({PSEUDONYMS.entry(caiso)} in the logs)" in text
    assert f"entry {pjm} ({PSEUDONYMS.entry(pjm)} in the logs)" in text
    assert "COMPLETED in PJM, sequence 4" in text
    assert "meter watch: OPEN since 2025-03-05T11:00:00Z, 2 check(s), next 2025-03-06T11:00:00Z" in text
    last = expected(pjm_states, [4])[-1]
    assert f"id {last.event_id}" in text
    assert "next, on a change event now: nothing: completed" in text


def test_status_of_an_unknown_reference_id_is_exit_status_2(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    store(versions()[:1], hours(0))

    status, document, _ = run(world, capsys, "status", "NoSuchRef", "--json")

    assert status == 2
    assert document["error"].startswith("no entry for Reference ID 'NoSuchRef' in table connections")


# --- replay ---------------------------------------------------------------------------------------------


def two_entries() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Entry A: four changes at 0, 1, 2, 3 h; entry B: two changes at 1, 2 h (another Reference ID)."""
    a, b = versions(), versions(ref_id="Other7", region="PJM")[1::2]
    store(a, hours(0, 1, 2, 3))
    store(b, hours(1, 2))
    return a, b


def window(since: int, until: int) -> list[str]:
    return [
        "--since",
        format_instant(T0 + timedelta(hours=since)),
        "--until",
        format_instant(T0 + timedelta(hours=until)),
    ]


def test_replay_sends_every_event_of_the_window_once_in_sequence_order_as_the_emitter_made_them(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_entries()
    fresh = queue("fresh")

    status, document, _ = run(world, capsys, "replay", *window(1, 3), "--to-queue", fresh, "--json")

    # Changes written at 1 h and 2 h: A's 2nd and 3rd, B's both; the 3 h change is outside (exclusive).
    want = expected(a, [2, 3]) + expected(b, [1, 2])
    assert status == 0
    assert (document["entries"], document["changes_read"], document["sent"], document["not_sent"]) == (
        2,
        4,
        len(want),
        0,
    )
    got = drain(fresh)
    assert sorted(delivered(got)) == sorted((m.body, dict(m.attributes)) for m in want)  # exactly once
    for entry_id in {a[0]["id"], b[0]["id"]}:
        order = [
            json.loads(m["Body"])
            for m in got
            if json.loads(m["Body"])["data"]["connection"]["id"] == entry_id
        ]
        assert [e["sequence"] for e in order] == sorted(e["sequence"] for e in order)
    assert document["rules"]["source"].startswith("the defaults")


def test_replay_by_reference_id_type_and_the_environments_rules_into_a_fifo_queue(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = two_entries()
    fifo = queue("partner.fifo", fifo=True)
    rules = DiffRules(actionable_delay=timedelta(minutes=30))

    status, document, _ = run(
        world,
        capsys,
        "replay",
        *window(0, 4),
        "--ref-id",
        REF,
        "--type",
        "utility.error",
        "--type",
        "connection.completed",
        "--to-queue",
        fifo,
        "--json",
        ACTIONABLE_DELAY_MINUTES="30",
    )

    want = [
        m
        for m in expected(a, [1, 2, 3, 4], rules)
        if m.attributes["type"] in {"utility.error", "connection.completed"}
    ]
    assert status == 0
    assert document["events_by_type"] == {"connection.completed": 1, "utility.error": 1}
    assert document["rules"] == {
        "source": "this machine's environment (ACTIONABLE_DELAY_MINUTES; the rest default)",
        "actionable_delay_minutes": 30,
        "agreement_done_statuses": sorted(DEFAULT_RULES.agreement_done_statuses),
    }
    got = drain(fifo)
    assert delivered(got) == [(m.body, dict(m.attributes)) for m in want]
    assert {m["Attributes"]["MessageGroupId"] for m in got} == {message_group_id(a[0]["id"], PSEUDONYMS)}
    assert [m["Attributes"]["MessageDeduplicationId"] for m in got] == [m.event_id for m in want]


def test_replay_dry_run_counts_and_sends_nothing(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_entries()
    partner = queue("partner", topic=world.topic)

    status, text, _ = run(world, capsys, "replay", *window(0, 4), "--to-topic", "--dry-run")

    want = expected(a, [1, 2, 3, 4]) + expected(b, [1, 2])
    assert status == 0
    window_line = "window 2025-03-05T08:00:00Z .. 2025-03-05T12:00:00Z: 6 stored change(s) of 2 entries"
    assert text.startswith(f"{window_line}, {len(want)} event(s)")
    assert "  connection.completed: 2" in text
    assert "dry run: nothing sent" in text
    assert drain(partner) == []


def test_replay_to_the_topic_reaches_a_raw_subscription_as_the_queue_replay_does_with_the_emitters_rules(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = two_entries()
    partner, direct = queue("partner", topic=world.topic), queue("direct")
    world.lambda_client = FakeLambda(
        env={"ACTIONABLE_DELAY_MINUTES": "15", "AGREEMENT_DONE_STATUSES": "SIGNED"}
    )
    rules = DiffRules(actionable_delay=timedelta(minutes=15), agreement_done_statuses=frozenset({"SIGNED"}))

    by_topic, document, _ = run(
        world, capsys, "replay", *window(0, 1), "--to-topic", "--emitter-function", "emitter", "--json"
    )
    by_queue, _, _ = run(
        world, capsys, "replay", *window(0, 1), "--to-queue", direct, "--emitter-function", "emitter"
    )

    want = [(m.body, dict(m.attributes)) for m in expected(a, [1], rules)]
    assert (by_topic, by_queue) == (0, 0)
    assert document["rules"]["source"] == "the environment of function emitter (--emitter-function)"
    assert delivered(drain(partner)) == want
    assert delivered(drain(direct)) == want


def test_an_unreadable_history_item_is_reported_pseudonymised_and_the_rest_is_sent(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_entries()
    put(
        {
            **table.history_key(a[0]["id"], 2),
            table.ITEM_TYPE: table.HISTORY_ITEM_TYPE,
            table.HISTORY_CHANGE: b"not zlib",
            table.HISTORY_SEQUENCE: 2,
            table.HISTORY_WRITTEN_AT: format_instant(T0 + timedelta(hours=1)),
        }
    )
    fresh = queue("fresh")

    status, text, _ = run(world, capsys, "replay", *window(1, 2), "--to-queue", fresh)

    assert status == 1
    assert f"unreadable: {PSEUDONYMS.entry(a[0]['id'])} change 2: stored change cannot be read" in text
    assert a[0]["id"] not in text
    assert delivered(drain(fresh)) == [(m.body, dict(m.attributes)) for m in expected(b, [1])]


def test_replay_refuses_a_window_that_ends_before_it_starts(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    status, document, _ = run(world, capsys, "replay", *window(3, 1), "--to-topic", "--json")

    assert status == 2
    assert "is not before --until" in document["error"]


# --- replay-failures ------------------------------------------------------------------------------------


class FailingSns:
    """An SNS client whose PublishBatch refuses every message (the topic's key policy broke, say)."""

    def __init__(self) -> None:
        self._sns = boto3.client("sns", region_name=REGION)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sns, name)

    def publish_batch(self, **request: Any) -> dict[str, Any]:
        entries = request["PublishBatchRequestEntries"]
        return {
            "Successful": [],
            "Failed": [{"Id": e["Id"], "Code": "KMSAccessDenied", "SenderFault": True} for e in entries],
        }


def test_replay_failures_republishes_the_marked_changes_then_deletes_the_markers_and_the_message(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_entries()
    marker("110", a[0]["id"], 2)
    marker("150", b[0]["id"], 1)
    marker("151", a[0]["id"], 3)
    marker("900", a[0]["id"], 4)  # another batch's record
    failure_message(world, "100", "200", 3)
    partner = queue("partner", topic=world.topic)
    real = world.client
    world.client = lambda service, region_name=None: (
        FailingSns() if service == "sns" else real(service, region_name)
    )  # type: ignore[method-assign]

    refused, document, _ = run(world, capsys, "replay-failures", "--json")

    assert refused == 1  # nothing accepted: markers and message stay
    assert document["outcomes"][0]["published"] == 0
    assert len(markers()) == 4
    world.client = real  # type: ignore[method-assign]

    status, document, _ = run(world, capsys, "replay-failures", "--json")

    want = expected(a, [2, 3]) + expected(b, [1])
    assert status == 0
    [outcome] = document["outcomes"]
    assert (outcome["source"], outcome["changes"], outcome["published"], outcome["markers_deleted"]) == (
        "markers",
        3,
        len(want),
        3,
    )
    assert sorted(delivered(drain(partner))) == sorted((m.body, dict(m.attributes)) for m in want)
    assert markers() == [table.stream_sequence_sort_key("900")]
    assert (
        boto3.client("sqs", region_name=REGION).receive_message(QueueUrl=world.failures).get("Messages", [])
        == []
    )


def test_replay_failures_keeps_the_message_when_a_history_item_is_missing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = two_entries()
    marker("120", a[0]["id"], 2)
    marker("130", "CAISO_gone_entry", 7)  # its history expired
    failure_message(world, "100", "200", 2)
    partner = queue("partner", topic=world.topic)

    status, text, _ = run(world, capsys, "replay-failures")

    assert status == 1
    assert f"problem: {PSEUDONYMS.entry('CAISO_gone_entry')} change 7: its history item is missing" in text
    assert "CAISO_gone_entry" not in text
    assert "message kept" in text
    # The readable entry is out (its marker went); the missing one's marker and the message stay.
    assert sorted(delivered(drain(partner))) == sorted((m.body, dict(m.attributes)) for m in expected(a, [2]))
    assert markers() == [table.stream_sequence_sort_key("130")]
    kept = boto3.client("sqs", region_name=REGION).receive_message(QueueUrl=world.failures)["Messages"]
    assert len(kept) == 1  # and visible again at once


def test_replay_failures_dry_run_changes_nothing(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = two_entries()
    marker("120", a[0]["id"], 2)
    failure_message(world, "100", "200", 1)
    partner = queue("partner", topic=world.topic)

    status, document, _ = run(world, capsys, "replay-failures", "--dry-run", "--json")

    assert status == 0
    assert (document["outcomes"][0]["events"], document["outcomes"][0]["complete"], document["deleted"]) == (
        len(expected(a, [2])),
        True,
        0,
    )
    assert drain(partner) == []
    assert len(markers()) == 1
    assert (
        len(boto3.client("sqs", region_name=REGION).receive_message(QueueUrl=world.failures)["Messages"]) == 1
    )


def stream_batch(world: World) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Snapshot writes on the table's stream, and the on-failure record Lambda would write for them."""
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    stream_arn = dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams", region_name=REGION)
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )
    raw = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    snapshots = [
        stream_record(r, stream_arn, REGION)
        for r in raw
        if r["dynamodb"]["Keys"]["pk"]["S"].startswith("CONN#")
    ]
    record = stream_on_failure_record(
        records=snapshots,
        shard_id=shard,
        stream_arn=stream_arn,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:emitter",
        condition="RecordAgeExceeded",
        invoke_count=6,
        function_error=False,
        now=T0,
    )
    return record, snapshots


def test_replay_failures_without_markers_reads_the_batch_from_the_stream(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_entries()  # each entry's snapshot is written once: two records (and the history's)
    record, snapshots = stream_batch(world)
    assert len(snapshots) == 2
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=world.failures, MessageBody=json.dumps(record)
    )
    partner = queue("partner", topic=world.topic)

    status, document, _ = run(world, capsys, "replay-failures", "--json")

    assert status == 0
    assert document["outcomes"][0]["source"] == "stream"
    want = expected(a, [4]) + expected(b, [2])  # the snapshots' sequences, from their new images
    assert sorted(delivered(drain(partner))) == sorted((m.body, dict(m.attributes)) for m in want)
    assert document["deleted"] == 1


def test_replay_failures_says_which_replay_to_run_when_the_stream_no_longer_has_the_batch(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    two_entries()
    record, _ = stream_batch(world)
    info = record["DDBStreamBatchInfo"]
    beyond = str(int(info["endSequenceNumber"]) + 1000)  # records the stream has dropped
    info |= {"startSequenceNumber": beyond, "endSequenceNumber": beyond}
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=world.failures, MessageBody=json.dumps(record)
    )

    status, document, _ = run(world, capsys, "replay-failures", "--json")

    assert status == 1
    since = datetime.fromisoformat(info["approximateArrivalOfFirstRecord"]) - timedelta(minutes=1)
    until = datetime.fromisoformat(info["approximateArrivalOfLastRecord"]) + timedelta(minutes=1)
    assert (
        f"leap-tracker replay --since {format_instant(since)} --until {format_instant(until)} --to-topic"
        in (document["outcomes"][0]["todo"])
    )
    assert (
        len(boto3.client("sqs", region_name=REGION).receive_message(QueueUrl=world.failures)["Messages"]) == 1
    )


# --- redrive --------------------------------------------------------------------------------------------


def dead_letter_pair(messages: int) -> tuple[str, str]:
    """(source URL, dead-letter URL) with ``messages`` messages in the dead-letter queue."""
    sqs = boto3.client("sqs", region_name=REGION)
    dead = sqs.create_queue(QueueName="outreach-dead-letter")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": 8})
    source = sqs.create_queue(QueueName="outreach", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    for n in range(messages):
        sqs.send_message(
            QueueUrl=dead,
            MessageBody=json.dumps({"id": f"e-{n}"}),
            MessageAttributes={"type": {"DataType": "String", "StringValue": "connection.error"}},
        )
    return source, dead


def test_redrive_moves_a_dead_letter_queues_messages_back_to_its_source(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    source, dead = dead_letter_pair(12)

    status, document, _ = run(world, capsys, "redrive", dead, "--json")

    assert status == 0
    assert (document["method"], document["moved"], document["destination"]) == (
        "receive, send, delete",
        12,
        source,
    )
    back = drain(source)
    assert sorted(json.loads(m["Body"])["id"] for m in back) == sorted(f"e-{n}" for n in range(12))
    assert {m["MessageAttributes"]["type"]["StringValue"] for m in back} == {"connection.error"}
    assert drain(dead) == []


class MoveTaskSqs:
    """SQS with its message move task (moto has none): records the task started, reports it done."""

    def __init__(self) -> None:
        self._sqs = boto3.client("sqs", region_name=REGION)
        self.started: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def start_message_move_task(self, **request: Any) -> dict[str, Any]:
        self.started.append(request)
        return {"TaskHandle": "task-1"}

    def list_message_move_tasks(self, **request: Any) -> dict[str, Any]:
        return {
            "Results": [
                {"TaskHandle": "task-1", "Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 3}
            ]
        }


def test_redrive_uses_sqs_message_move_task_where_sqs_has_it(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    source, dead = dead_letter_pair(3)
    sqs = MoveTaskSqs()
    real = world.client
    world.client = lambda service, region_name=None: sqs if service == "sqs" else real(service, region_name)  # type: ignore[method-assign]

    status, text, _ = run(
        world, capsys, "redrive", "OutreachDeadLetterQueue", OUTREACH_DEAD_LETTER_QUEUE_URL=dead
    )

    def arn(url: str) -> str:
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    assert status == 0
    assert sqs.started == [{"SourceArn": arn(dead), "DestinationArn": arn(source)}]
    assert text == f"moved 3 message(s) to {source} (SQS message move task, COMPLETED)\n"


@pytest.mark.parametrize(
    ("queue_argument", "says"),
    [
        ("EmitterFailureQueue", "`leap-tracker replay-failures` republishes those events"),
        ("PollScheduleDeadLetterQueueUrl", "docs/operations.md#a-schedules-dead-letter-queue"),
        ("plain", "is not a dead-letter queue: no queue's RedrivePolicy names it"),
    ],
    ids=["emitter-failure-queue", "schedule-dead-letter-queue", "no-source"],
)
def test_redrive_refuses_what_is_not_a_redrive_dead_letter_queue(
    world: World, capsys: pytest.CaptureFixture[str], queue_argument: str, says: str
) -> None:
    plain = queue("plain")

    status, document, _ = run(
        world, capsys, "redrive", plain if queue_argument == "plain" else queue_argument, "--json"
    )

    assert status == 2
    assert says in document["error"]


# --- poll -----------------------------------------------------------------------------------------------


class FakeLambda:
    """Lambda's Invoke and GetFunctionConfiguration: ``on_invoke`` plays the function."""

    def __init__(
        self, on_invoke: Callable[[dict[str, Any]], Any] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.on_invoke, self.env = on_invoke, env or {}
        self.invocations: list[dict[str, Any]] = []

    def invoke(self, **request: Any) -> dict[str, Any]:
        self.invocations.append(request)
        assert self.on_invoke is not None
        try:
            answer = self.on_invoke(json.loads(request["Payload"]))
        except RuntimeError as exc:
            error = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
            return {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "Payload": io.BytesIO(json.dumps(error).encode()),
            }
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}

    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:
        return {"FunctionName": FunctionName, "Environment": {"Variables": self.env}}


def test_poll_invokes_the_poller_for_the_reference_id_and_shows_the_changes_it_stored(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    states = versions()
    entry_id = store(states[:2], hours(0, 1))

    def poller(event: dict[str, Any]) -> dict[str, Any]:  # Leap says: completed (two changes seen)
        store(states, hours(0, 1, 2, 3))
        return {
            "status": "completed",
            "run_id": "r-1",
            "mode": "ref_id",
            "entries_seen": 1,
            "changed": 1,
            "entries": [{"id": entry_id, "outcome": "changed", "sequence": 4}],
        }

    world.lambda_client = FakeLambda(poller)

    status, document, _ = run(world, capsys, "poll", REF, "--poller-function", "poller", "--json")

    assert status == 0
    [invocation] = world.lambda_client.invocations
    assert (invocation["FunctionName"], invocation["InvocationType"]) == ("poller", "RequestResponse")
    assert json.loads(invocation["Payload"]) == {"mode": "ref_id", "ref_id": REF}
    assert document["summary"]["status"] == "completed"
    [shown] = document["entries"]
    assert (shown["sequence_before"], shown["sequence_after"], shown["outcome"]) == (2, 4, "changed")
    assert [e["id"] for e in shown["events"]] == [m.event_id for m in expected(states, [3, 4])]


def test_a_failed_poll_is_exit_status_1_with_the_functions_error(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    def poller(event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("poll failed: Leap unavailable")

    world.lambda_client = FakeLambda(poller)

    status, text, _ = run(world, capsys, "poll", REF, "--poller-function", "poller")

    assert status == 1
    assert text == "the poll failed in poller: RuntimeError: poll failed: Leap unavailable\n"


# --- the local runner's Lambda client (what `poll` gets on a LocalCloud) ----------------------------------


def test_the_local_runners_lambda_client_runs_the_function_in_process_and_answers_as_lambda() -> None:
    with LocalCloud(TEMPLATE, parameters={"LeapApiKeySecretArn": FAKE_SECRET_ARN}) as cloud:
        cloud.override_handler(
            "PollerFunction", lambda event, context: {"status": "completed", "input": event}
        )
        client = cloud.lambda_client()
        name = cloud.resources.function_name("PollerFunction")
        payload = json.dumps({"mode": "ref_id", "ref_id": REF}).encode()

        answer = client.invoke(FunctionName=name, InvocationType="RequestResponse", Payload=payload)
        cloud.fail_next("PollerFunction")
        failed = client.invoke(FunctionName=name, InvocationType="RequestResponse", Payload=payload)
        configuration = client.get_function_configuration(FunctionName=cloud.functions["EmitterFunction"].arn)

        assert (answer["StatusCode"], "FunctionError" in answer) == (200, False)
        assert json.loads(answer["Payload"].read()) == {"status": "completed", "input": json.loads(payload)}
        assert failed["FunctionError"] == "Unhandled"
        assert json.loads(failed["Payload"].read())["errorType"] == "InjectedFailure"
        assert [record.source for record in cloud.invocations] == ["direct", "direct"]
        variables = configuration["Environment"]["Variables"]
        assert variables["CONNECTIONS_TABLE"] == cloud.resources.table_name("ConnectionsTable")
        assert "AWS_SECRET_ACCESS_KEY" not in variables  # Lambda lists only the function's own variables
        with pytest.raises(ClientError, match="ResourceNotFoundException"):
            client.invoke(FunctionName="no-such-function", Payload=b"{}")
