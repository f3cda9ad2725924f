"""The outreach function in moto, with a real queue, topics, table and a verifying webhook receiver.

Time is moved with time-machine (never slept): moto's SQS visibility, the handler's clock and the
receiver's timestamp check all follow it. The handler gets its dependencies built from the test's
environment, as its cold start builds them; a change of configuration builds them again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import time_machine
from moto import mock_aws

from devtools.local_runner.shapes import sqs_record
from devtools.template_tables import create_connections_table
from devtools.webhook_receiver import WebhookReceiver
from functions.outreach import app
from leap_tracker import table
from leap_tracker.adapters.outreach_store import DynamoOutreachStore
from leap_tracker.adapters.poller_store import snapshot_item
from leap_tracker.config import ConfigError, load_settings
from leap_tracker.events import catalog
from leap_tracker.events.diff import change_events
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import validate_entry
from leap_tracker.poller.ports import SnapshotWrite
from leap_tracker.table import decode_stored_entry
from leap_tracker.timeutil import format_instant
from tests.builders import LAST_INTERACTION, entry, stalled_examples, utility
from tests.fakes.lambda_runtime import FakeLambdaContext, emf_metrics, logs_in_capture, printed

REPO = Path(__file__).resolve().parents[2]
TABLE = "connections"
REGION = "us-east-1"
ACTIONABLE = LAST_INTERACTION + timedelta(hours=1)


@dataclass
class Env:
    dynamodb: Any
    sqs: Any
    queue_url: str
    queue_arn: str
    audit_queue_url: str
    outreach_queue_url: str
    receiver: WebhookReceiver
    traveller: Any
    monkeypatch: pytest.MonkeyPatch
    sequences: dict[str, int]
    deps: app.Dependencies  # what the handler's cold start built from the environment

    # --- time -------------------------------------------------------------------------------------
    def at(self, moment: datetime) -> None:
        self.traveller.move_to(moment)

    # --- data -------------------------------------------------------------------------------------
    def store(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        """Write the snapshot as the poller would; return the events the emitter would publish."""
        previous = self.sequences.get(raw["id"])
        sequence = (previous or 0) + 1
        self.sequences[raw["id"]] = sequence
        item = snapshot_item(SnapshotWrite(validate_entry(raw), sequence), datetime.now(UTC))
        old = self.dynamodb.get_item(TableName=TABLE, Key=_typed(table.connection_key(raw["id"]))).get("Item")
        self.dynamodb.put_item(TableName=TABLE, Item=item)
        return change_events(decode_stored_entry(old["entry"]["B"]) if old else None, raw, sequence)

    def enqueue(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(event))

    def receive(self) -> list[dict[str, Any]]:
        """The queue's visible messages as Lambda SQS records (receiving hides them, as Lambda does)."""
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=720
        )
        return [sqs_record(m, self.queue_arn, REGION) for m in answer.get("Messages", [])]

    def invoke(self, records: list[dict[str, Any]]) -> list[str]:
        """Run the handler on ``records``; delete what succeeded (as Lambda does); the failed ids."""
        response = app.lambda_handler(
            {"Records": records}, FakeLambdaContext(function_name="outreach"), self.deps
        )
        failed = [failure["itemIdentifier"] for failure in response["batchItemFailures"]]
        for record in records:
            if record["messageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"])
        return failed

    def follow_up(self) -> dict[str, Any]:
        return app.lambda_handler(
            {"mode": "follow_up"}, FakeLambdaContext(function_name="outreach"), self.deps
        )

    def audit(self) -> list[dict[str, Any]]:
        return _drain(self.sqs, self.audit_queue_url)

    def requested(self) -> list[dict[str, Any]]:
        return _drain(self.sqs, self.outreach_queue_url)

    def state(self, entry_id: str) -> dict[str, Any]:
        item = self.dynamodb.get_item(TableName=TABLE, Key=_typed(table.outreach_state_key(entry_id)))
        return {name: next(iter(value.values())) for name, value in item.get("Item", {}).items()}

    def set_env(self, **values: str) -> None:
        for name, value in values.items():
            self.monkeypatch.setenv(name, value)
        self.deps = app.build_dependencies(load_settings())  # a cold start with the new configuration


def _typed(key: dict[str, str]) -> dict[str, Any]:
    return {name: {"S": value} for name, value in key.items()}


def _drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    events = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            events.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return events


def _subscribed_queue(sns: Any, sqs: Any, topic_arn: str, name: str) -> str:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return url


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    with (
        time_machine.travel(LAST_INTERACTION + timedelta(minutes=30), tick=False) as traveller,
        mock_aws(),
        WebhookReceiver() as receiver,
    ):
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_connections_table(dynamodb)
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        events_topic = sns.create_topic(Name="events")["TopicArn"]
        outreach_topic = sns.create_topic(Name="outreach")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="outreach-queue", Attributes={"VisibilityTimeout": "720"})[
            "QueueUrl"
        ]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        for name, value in {
            "CONNECTIONS_TABLE": TABLE,
            "EVENTS_TOPIC_ARN": events_topic,
            "OUTREACH_TOPIC_ARN": outreach_topic,
            "OUTREACH_WEBHOOK_URL": receiver.url,
            "OUTREACH_WEBHOOK_SECRET": receiver.secret,
            "OUTREACH_WEBHOOK_TIMEOUT_SECONDS": "2",
            "OUTREACH_CHANNELS": "webhook",
        }.items():
            monkeypatch.setenv(name, value)
        yield Env(
            dynamodb,
            sqs,
            queue_url,
            queue_arn,
            _subscribed_queue(sns, sqs, events_topic, "audit"),
            _subscribed_queue(sns, sqs, outreach_topic, "partner-outreach"),
            receiver,
            traveller,
            monkeypatch,
            {},
            app.build_dependencies(load_settings()),
        )


def only(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == event_type]


# --- timing and exactly once -----------------------------------------------------------------------


def test_a_stalled_customer_gets_one_verified_message_once_actionable_and_never_again(env: Env) -> None:
    raw = stalled_examples()["utility_error.USER_CANCELED"]
    events = env.store(raw)
    assert len(events) == 3  # connection.started, connection.error, utility.error: one change
    env.enqueue(events)

    early = env.receive()
    assert len(env.invoke(early)) == 3  # deferred, all of them
    assert env.receiver.deliveries == []
    assert env.receive() == []  # invisible until actionable, not dropped

    env.at(ACTIONABLE + timedelta(seconds=1))
    due = env.receive()
    assert len(due) == 3
    assert {r["attributes"]["ApproximateReceiveCount"] for r in due} == {"2"}
    assert env.invoke(due) == []

    (delivery,) = env.receiver.deliveries
    assert delivery.verified
    assert delivery.status == 204
    data = delivery.event["data"]
    assert (data["reason"], data["ref_id"], data["attempt"]) == (
        "utility_error.USER_CANCELED",
        "Canceled1",
        1,
    )
    assert delivery.event["type"] == catalog.OUTREACH_REQUESTED
    (sent,) = env.audit()
    assert sent["type"] == catalog.OUTREACH_SENT
    assert sent["data"]["webhook_id"] == delivery.webhook_id

    env.enqueue(events)  # replayed (or redelivered) later: nothing more
    env.at(ACTIONABLE + timedelta(days=3))
    assert env.invoke(env.receive()) == []
    assert len(env.receiver.deliveries) == 1
    assert env.audit() == []


def test_decided_on_the_current_snapshot_not_the_event(env: Env) -> None:
    raw = stalled_examples()["not_started"]
    env.enqueue(env.store(raw))
    env.invoke(env.receive())  # deferred
    completed = entry(
        wire.CONNECTION_COMPLETED, [utility(status=wire.UTILITY_CONNECTED)], ref_id="NotStarted1"
    )
    env.store({**completed, "last_interaction_date_time_utc": "2025-03-05T08:20:00Z"})

    env.at(ACTIONABLE + timedelta(minutes=30))
    assert env.invoke(env.receive()) == []

    assert env.receiver.deliveries == []
    (suppressed,) = env.audit()
    assert suppressed["data"]["suppressed_because"] == "completed"
    assert "completed_at" in env.state(raw["id"])


def test_a_completed_customer_gets_nothing_and_one_audit(env: Env) -> None:
    done = entry(wire.CONNECTION_COMPLETED, [utility(status=wire.UTILITY_CONNECTED)], ref_id="Done1")
    events = env.store(done)
    env.enqueue(events + events)

    env.at(ACTIONABLE)
    assert env.invoke(env.receive()) == []

    assert env.receiver.deliveries == []
    assert [e["data"]["suppressed_because"] for e in env.audit()] == ["completed"]


def test_after_several_deferrals_the_customer_is_handed_to_the_sweep(env: Env) -> None:
    raw = stalled_examples()["not_started"]
    env.enqueue(env.store(raw)[:1])
    (record,) = env.receive()
    record["attributes"]["ApproximateReceiveCount"] = "6"

    assert env.invoke([record]) == []  # acknowledged, not dead-lettered
    assert env.state(raw["id"])["due_at"] == "2025-03-05T09:00:00Z"

    env.at(ACTIONABLE)
    assert env.follow_up()["sent"] == 1
    assert [d.event["data"]["reason"] for d in env.receiver.deliveries] == ["not_started"]


# --- failures and retries --------------------------------------------------------------------------


def test_a_failed_webhook_is_retried_through_the_queue(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.at(ACTIONABLE)
    env.enqueue(env.store(stalled_examples()["utility_not_connected"])[:1])
    env.receiver.fail_next(1)

    records = env.receive()
    assert env.invoke(records) == [records[0]["messageId"]]
    assert emf_metrics(printed(capsys)[1])["OutreachDeliveryFailures"] == [1]  # the delivery alarm's
    assert env.audit() == []  # nothing sent, nothing audited
    assert "pending_key" not in env.state(stalled_examples()["utility_not_connected"]["id"])

    env.at(ACTIONABLE + timedelta(minutes=13))  # the visibility timeout
    assert env.invoke(env.receive()) == []
    assert [d.status for d in env.receiver.deliveries] == [503, 204]
    assert len(env.receiver.accepted()) == 1
    assert len(only(env.audit(), catalog.OUTREACH_SENT)) == 1


def test_a_hung_endpoint_times_out_and_is_retried(env: Env) -> None:
    env.set_env(OUTREACH_WEBHOOK_TIMEOUT_SECONDS="0.3")
    env.at(ACTIONABLE)
    env.enqueue(env.store(stalled_examples()["not_started"])[:1])
    env.receiver.hang_next(1)

    assert len(env.invoke(env.receive())) == 1

    env.at(ACTIONABLE + timedelta(minutes=13))
    assert env.invoke(env.receive()) == []
    assert len(env.receiver.accepted()) == 1


def test_a_crash_after_delivery_resumes_with_the_same_webhook_id(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = stalled_examples()["agreement_pending"]
    env.at(ACTIONABLE)
    env.enqueue(env.store(raw)[:1])

    def die(*_: Any, **__: Any) -> None:
        raise RuntimeError("the sandbox died")

    with monkeypatch.context() as crash:  # delivered, then neither marked nor released
        crash.setattr(DynamoOutreachStore, "mark_sent", die)
        crash.setattr(DynamoOutreachStore, "release", die)
        assert len(env.invoke(env.receive())) == 1

    env.at(ACTIONABLE + timedelta(minutes=1))  # the claim's lease still runs: someone may be sending
    store = DynamoOutreachStore(env.dynamodb, TABLE)
    assert store.load(raw["id"])[1].attempts == 0
    env.sqs.send_message(QueueUrl=env.queue_url, MessageBody=json.dumps(env_event(raw)))
    assert len(env.invoke(env.receive())) == 1  # in flight: retried later

    env.at(ACTIONABLE + timedelta(minutes=15))  # the lease is over: the holder is gone
    assert env.invoke(env.receive()) == []

    first, second = env.receiver.deliveries
    assert first.webhook_id == second.webhook_id
    assert first.event["id"] == second.event["id"]
    assert len(env.receiver.accepted()) == 1  # a receiver that deduplicates on webhook-id sees one
    assert store.load(raw["id"])[1].attempts == 1
    assert store.ledger_entry(raw["id"], first.event["data"]["dedupe_key"])["status"] == "SENT"


def env_event(raw: dict[str, Any]) -> dict[str, Any]:
    return change_events(None, raw, 1)[0]


def test_a_malformed_message_fails_alone(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.at(ACTIONABLE)
    env.enqueue(env.store(stalled_examples()["not_started"])[:1])
    env.sqs.send_message(QueueUrl=env.queue_url, MessageBody="not json")
    env.sqs.send_message(
        QueueUrl=env.queue_url, MessageBody=json.dumps({"type": "meter.appeared", "data": {}})
    )

    records = env.receive()
    failed = env.invoke(records)

    assert len(records) == 3
    assert len(failed) == 2
    assert len(env.receiver.accepted()) == 1
    metrics = emf_metrics(printed(capsys)[1])
    assert metrics["OutreachRecordsFailed"] == [2]
    assert "OutreachDeliveryFailures" not in metrics  # no channel refused anything


# --- follow-ups ------------------------------------------------------------------------------------


def test_a_customer_who_stays_stuck_gets_reminders_after_each_cooldown_up_to_the_max(env: Env) -> None:
    env.set_env(OUTREACH_COOLDOWN_HOURS="48", OUTREACH_MAX_ATTEMPTS="3")
    raw = stalled_examples()["utility_not_connected"]
    env.at(ACTIONABLE)
    env.enqueue(env.store(raw))
    env.invoke(env.receive())
    assert len(env.receiver.accepted()) == 1

    audit = env.audit()
    schedule = [(47, 0), (1, 1), (24, 0), (24, 1), (48, 0), (500, 0)]
    for hours, expected in schedule:
        env.at(datetime.now(UTC) + timedelta(hours=hours))
        assert env.follow_up()["sent"] == expected, hours
        audit += env.audit()  # drained as it comes: SQS keeps messages 4 days

    attempts = [d.event["data"]["attempt"] for d in env.receiver.accepted()]
    reminders = [d.event["data"]["reminder"] for d in env.receiver.accepted()]
    assert (attempts, reminders) == ([1, 2, 3], [False, True, True])
    assert "due_at" not in env.state(raw["id"])  # the max is reached: out of the sweep
    assert len(only(audit, catalog.OUTREACH_SENT)) == 3


def test_a_new_stall_inside_the_cooldown_is_sent_when_it_ends(env: Env) -> None:
    raw = stalled_examples()["not_started"]
    env.at(ACTIONABLE)
    env.enqueue(env.store(raw))
    env.invoke(env.receive())
    moved_on = entry(
        wire.CONNECTION_ERROR,
        [utility(status=wire.UTILITY_ERROR, error_code=wire.ERROR_MFA_FAILED)],
        ref_id="NotStarted1",
        last=ACTIONABLE + timedelta(hours=1),
    )
    env.enqueue(env.store(moved_on))

    env.at(ACTIONABLE + timedelta(hours=3))
    assert env.invoke(env.receive()) == []
    assert [e["data"]["suppressed_because"] for e in only(env.audit(), catalog.OUTREACH_SUPPRESSED)] == [
        "cooldown"
    ]

    env.at(ACTIONABLE + timedelta(hours=48))
    assert env.follow_up()["sent"] == 1
    assert [d.event["data"]["reason"] for d in env.receiver.accepted()] == [
        "not_started",
        "utility_error.MFA_FAILED",
    ]


# --- channels and configuration --------------------------------------------------------------------


def test_the_topic_channel_carries_the_same_message(env: Env) -> None:
    env.set_env(OUTREACH_CHANNELS="webhook,topic")
    env.at(ACTIONABLE)
    env.enqueue(env.store(stalled_examples()["agreement_pending"])[:1])

    assert env.invoke(env.receive()) == []

    (requested,) = env.requested()
    (delivery,) = env.receiver.accepted()
    assert requested == delivery.event
    assert only(env.audit(), catalog.OUTREACH_SENT)[0]["data"]["channels"] == ["webhook", "topic"]


def test_without_a_channel_the_customer_is_decided_again_and_messaged_once_a_channel_exists(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    output: list[dict[str, Any]] = []  # the handler's log and EMF lines so far

    def no_channel_warnings() -> int:
        output.extend(printed(capsys)[1])
        return sum(
            1
            for line in output
            if line.get("level") == "WARNING" and line["message"].startswith("no outreach channel")
        )

    env.set_env(OUTREACH_WEBHOOK_URL="")  # OUTREACH_CHANNELS=webhook without a URL: no channel at all
    raw = stalled_examples()["not_started"]
    env.at(ACTIONABLE)
    env.enqueue(env.store(raw))

    with logs_in_capture(app.logger):
        records = env.receive()
        assert env.invoke(records) == []

        assert [e["data"]["suppressed_because"] for e in env.audit()] == ["no_channel"]
        assert env.receiver.deliveries == []
        state = env.state(raw["id"])
        assert state["due_at"] == format_instant(ACTIONABLE + timedelta(hours=1))  # not forgotten
        assert "attempts" not in state  # no attempt used
        assert no_channel_warnings() == 1  # once for the invocation, not once per record
        assert sum(emf_metrics(output)["OutreachNoChannel"]) == len(records)

        env.at(ACTIONABLE + timedelta(hours=1))  # still no channel: decided again, not audited again
        assert env.follow_up()["suppressed"] == 1
        assert env.audit() == []
        assert env.state(raw["id"])["due_at"] == format_instant(ACTIONABLE + timedelta(hours=2))
        assert no_channel_warnings() == 2

        env.set_env(OUTREACH_WEBHOOK_URL=env.receiver.url)  # a channel now (a redeploy: a cold start)
        env.at(ACTIONABLE + timedelta(hours=2))
        assert env.follow_up()["sent"] == 1
        env.at(ACTIONABLE + timedelta(hours=3))
        assert env.follow_up()["due"] == 0

    (delivery,) = env.receiver.accepted()
    assert (delivery.event["data"]["reason"], delivery.event["data"]["attempt"]) == ("not_started", 1)
    assert len(only(env.audit(), catalog.OUTREACH_SENT)) == 1
    assert no_channel_warnings() == 2


def test_a_failed_topic_publish_fails_the_record_and_uses_no_attempt(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    topic_arn = os.environ["OUTREACH_TOPIC_ARN"]
    env.set_env(OUTREACH_CHANNELS="topic", OUTREACH_TOPIC_ARN=topic_arn + "-gone")  # SNS refuses
    raw = stalled_examples()["utility_not_connected"]
    env.at(ACTIONABLE)
    env.enqueue(env.store(raw)[:1])

    records = env.receive()
    assert env.invoke(records) == [records[0]["messageId"]]  # retried through the queue
    assert emf_metrics(printed(capsys)[1])["OutreachDeliveryFailures"] == [1]  # the topic channel too
    assert env.audit() == []
    assert {"attempts", "pending_key"}.isdisjoint(env.state(raw["id"]))

    env.set_env(OUTREACH_TOPIC_ARN=topic_arn)
    env.at(ACTIONABLE + timedelta(minutes=13))  # the visibility timeout
    assert env.invoke(env.receive()) == []
    (requested,) = env.requested()
    assert (requested["type"], requested["data"]["attempt"]) == (catalog.OUTREACH_REQUESTED, 1)
    assert only(env.audit(), catalog.OUTREACH_SENT)[0]["data"]["channels"] == ["topic"]
    assert env.state(raw["id"])["attempts"] == "1"


# --- the follow-up sweep ---------------------------------------------------------------------------


def _due_now(env: Env, *names: str) -> list[str]:
    """Stalled customers stored and due in the sweep at ACTIONABLE (as a handed-over deferral is)."""
    store = DynamoOutreachStore(env.dynamodb, TABLE)
    raws = [stalled_examples()[name] for name in names]
    for raw in raws:
        env.store(raw)
        store.set_follow_up(raw["id"], ACTIONABLE, create=True)
    env.at(ACTIONABLE)
    return [raw["id"] for raw in raws]


def test_a_sweep_with_a_failed_customer_fails_after_finishing_the_others(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    _due_now(env, "not_started", "agreement_pending")
    env.receiver.fail_next(1)

    with logs_in_capture(app.logger), pytest.raises(app.FollowUpsFailed, match="1 of 2"):
        env.follow_up()

    assert len(env.receiver.accepted()) == 1  # the other customer was done
    lines = printed(capsys)[1]
    (summary,) = [line for line in lines if line.get("message") == "follow-up sweep"]
    assert (summary["due"], summary["sent"], summary["failed"]) == (2, 1, 1)
    assert emf_metrics(lines)["OutreachDeliveryFailures"] == [1]  # the delivery alarm's metric
    assert env.follow_up()["sent"] == 1  # the failed one stayed due: Lambda's retry sends it
    assert len(env.receiver.accepted()) == 2


class _RunningOut(FakeLambdaContext):
    """Plenty of time for the first customer, then nearly none."""

    def __init__(self, answers: list[int]) -> None:
        super().__init__(function_name="outreach")
        self._answers = iter(answers)

    def get_remaining_time_in_millis(self) -> int:
        return next(self._answers, 1_000)


def test_a_sweep_cut_short_by_the_time_limit_is_not_a_failure(env: Env) -> None:
    _due_now(env, "not_started", "agreement_pending")

    # the claim's lease, then the first customer's check; the second finds too little time left
    result = app.lambda_handler({"mode": "follow_up"}, _RunningOut([300_000, 300_000]), env.deps)

    assert (result["due"], result["sent"], result["failed"], result["stopped_early"]) == (1, 1, 0, True)
    assert env.follow_up()["sent"] == 1  # the rest stayed due for the next sweep


def test_the_signing_secret_comes_from_secrets_manager(env: Env) -> None:
    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="outreach-webhook", SecretString=env.receiver.secret
    )["ARN"]
    env.monkeypatch.delenv("OUTREACH_WEBHOOK_SECRET")
    env.set_env(OUTREACH_WEBHOOK_SECRET_ARN=arn)
    env.at(ACTIONABLE)
    env.enqueue(env.store(stalled_examples()["not_started"])[:1])

    assert env.invoke(env.receive()) == []
    assert len(env.receiver.accepted()) == 1
    assert env.receiver.rejected() == []


@pytest.mark.parametrize(
    ("configured", "max_age"), [({}, 300), ({"OUTREACH_WEBHOOK_SECRET_CACHE_SECONDS": "42"}, 42)]
)
def test_the_signing_secret_is_reused_as_long_as_configured(
    monkeypatch: pytest.MonkeyPatch, configured: dict[str, str], max_age: int
) -> None:
    asked: list[tuple[str, int]] = []

    def fake_get_secret(name: str, max_age: int) -> str:
        asked.append((name, max_age))
        return "whsec_c2VjcmV0\n"

    monkeypatch.setattr("aws_lambda_powertools.utilities.parameters.get_secret", fake_get_secret)
    settings = load_settings({"OUTREACH_WEBHOOK_SECRET_ARN": "arn:outreach-secret", **configured})

    assert app.webhook_secret(settings.outreach)() == "whsec_c2VjcmV0"
    assert asked == [("arn:outreach-secret", max_age)]


def test_a_webhook_url_without_a_secret_fails_the_cold_start(env: Env) -> None:
    env.monkeypatch.delenv("OUTREACH_WEBHOOK_SECRET")

    with pytest.raises(ConfigError, match="OUTREACH_WEBHOOK_SECRET_ARN"):
        app.build_dependencies(load_settings())


# --- the sample events -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((REPO / "events").glob("sqs-outreach-*.json")), ids=lambda p: p.name)
def test_the_sample_events_are_handled(env: Env, path: Path) -> None:
    sample = json.loads(path.read_text())
    for record in sample["Records"]:
        event = json.loads(record["body"])
        raw = event["data"]["connection"]
        if raw["id"] not in env.sequences:
            env.store(raw)
    env.at(ACTIONABLE + timedelta(days=1))
    # The samples' receipt handles are not real: a deferral would fail, so run them when actionable.
    response = app.lambda_handler(sample, FakeLambdaContext(function_name="outreach"), env.deps)
    assert response["batchItemFailures"] == []
    assert len(env.receiver.accepted()) == 1
