"""Meter watches in moto: the store's items and index, the two handlers, and a sweep against the
Leap simulator (Meters API calls counted where they arrive).

The handlers get their dependencies built from the test's environment, as their cold start builds them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devtools.leap_simulator import LeapSimulator, http_error, server_error
from devtools.template_tables import create_connections_table as create_table_as_declared
from functions.meter_sweep import app as sweep_app
from functions.meter_watch import app as watch_app
from leap_tracker import table
from leap_tracker.adapters.watch_store import DUE_PAGE_SIZE, DynamoWatchStore, item_from_watch
from leap_tracker.config import MeterWatchSettings, load_settings
from leap_tracker.events import catalog
from leap_tracker.leap import wire
from leap_tracker.leap.api import LeapUnavailable
from leap_tracker.meters import schedule
from leap_tracker.meters.model import ClosedReason, MeterWatch, WatchStatus
from leap_tracker.meters.sweep import SweepIncomplete
from tests.fakes.lambda_runtime import FakeLambdaContext, emf_metrics, logs_in_capture

REPO = Path(__file__).resolve().parents[2]
TABLE = "connections"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
RULES = MeterWatchSettings()


# --- AWS in moto, created as template.yaml declares it ------------------------------------------------


def create_connections_table(client: Any) -> None:
    create_table_as_declared(client, TABLE)


@dataclass
class Aws:
    dynamodb: Any
    sqs: Any
    events_queue_url: str
    store: DynamoWatchStore
    watch_deps: watch_app.Dependencies
    sweep_deps: sweep_app.Dependencies | None = None  # built once Leap is configured (``leap``)

    def sweep_at(self, now: datetime, remaining_ms: int = 300_000) -> dict[str, Any]:
        return self.sweep({"mode": "scheduled", "scheduled_time": now.isoformat()}, remaining_ms)

    def sweep(self, event: dict[str, Any], remaining_ms: int = 300_000) -> dict[str, Any]:
        assert self.sweep_deps is not None, "the sweep tests use the leap fixture"
        return sweep_app.lambda_handler(event, FakeLambdaContext(remaining_ms), self.sweep_deps)

    def published(self) -> list[dict[str, Any]]:
        """Every event that reached the topic (via a raw-delivery queue subscription)."""
        events = []
        while True:
            # Received messages stay hidden for the rest of the test: no need to delete them.
            answer = self.sqs.receive_message(
                QueueUrl=self.events_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=43_200
            )
            messages = answer.get("Messages", [])
            if not messages:
                return events
            events.extend(json.loads(message["Body"]) for message in messages)

    def seed_connections(self, entry_ids: list[str]) -> None:
        items = [
            {**table.connection_key(e), table.ITEM_TYPE: table.CONNECTION_ITEM_TYPE, table.CONN_SEQUENCE: 3}
            for e in entry_ids
        ]
        self._batch_write(items)

    def seed_watches(self, watches: list[MeterWatch]) -> None:
        self._batch_write([item_from_watch(w) for w in watches])

    def raw_watch(self, entry_id: str) -> dict[str, Any]:
        item = self.dynamodb.get_item(TableName=TABLE, Key=_typed(table.watch_key(entry_id)))["Item"]
        return {name: next(iter(value.values())) for name, value in item.items()}

    def _batch_write(self, items: list[dict[str, Any]]) -> None:
        resource_table = boto3.resource("dynamodb", region_name="us-east-1").Table(TABLE)
        with resource_table.batch_writer() as writer:
            for item in items:
                writer.put_item(Item=item)


def _typed(key: dict[str, str]) -> dict[str, Any]:
    return {name: {"S": value} for name, value in key.items()}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_connections_table(dynamodb)
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        topic_arn = sns.create_topic(Name="events")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="partner")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(
            TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
        )
        monkeypatch.setenv("CONNECTIONS_TABLE", TABLE)
        monkeypatch.setenv("EVENTS_TOPIC_ARN", topic_arn)
        watch_deps = watch_app.build_dependencies(load_settings())
        yield Aws(dynamodb, sqs, queue_url, DynamoWatchStore(dynamodb, TABLE), watch_deps)


def a_watch(n: int, completed_at: datetime = T0, ref_id: str | None = None) -> MeterWatch:
    ref = ref_id or f"other-{n:04d}"
    return schedule.new_watch(
        entry_id=f"CAISO_u{n}_{ref}",
        ref_id=ref,
        transmission_region="CAISO",
        completed_at=completed_at,
        sequence=3,
        now=completed_at,
        settings=RULES,
    )


# --- the store ---------------------------------------------------------------------------------------


def test_an_open_watch_item_is_in_the_due_index_and_a_closed_one_is_not(aws: Aws) -> None:
    watch = a_watch(1)
    assert aws.store.create(watch)

    assert aws.raw_watch(watch.entry_id) == {
        table.PK: "WATCH#CAISO_u1_other-0001",
        table.SK: "METER",
        table.ITEM_TYPE: "meter_watch",
        "entry_id": "CAISO_u1_other-0001",
        "ref_id": "other-0001",
        "transmission_region": "CAISO",
        "completed_at": "2025-03-01T09:00:00Z",
        "sequence": "3",
        "opened_at": "2025-03-01T09:00:00Z",
        "checks": "0",
        "overdue_published": False,
        "status": "OPEN",
        "watch_due_bucket": "METER_WATCH#4",  # its shard of the due-index (table.due_bucket)
        "due_at": "2025-03-02T09:00:00Z",
    }
    assert [w.entry_id for w in aws.store.due_watches(T0 + 24 * HOUR)] == [watch.entry_id]

    closed = schedule.after_check(watch, ["m-1"], T0 + 24 * HOUR, RULES).watch
    assert aws.store.replace(watch, closed)

    raw = aws.raw_watch(watch.entry_id)
    assert table.DUE_BUCKET_ATTRIBUTE not in raw
    assert table.DUE_AT_ATTRIBUTE not in raw
    assert (raw["status"], raw["closed_reason"], raw["meter_ids"]) == ("CLOSED", "appeared", [{"S": "m-1"}])
    assert list(aws.store.due_watches(T0 + 1000 * HOUR)) == []
    assert aws.store.get(watch.entry_id) == closed


def test_create_and_replace_are_conditional(aws: Aws) -> None:
    watch = a_watch(1)
    assert aws.store.create(watch)
    assert not aws.store.create(replace(watch, sequence=9))
    checked = schedule.after_check(watch, [], T0 + 24 * HOUR, RULES).watch
    assert aws.store.replace(watch, checked)
    # A second sweep holding the old copy (checks 0) loses: its write is refused.
    assert not aws.store.replace(watch, checked)
    assert aws.store.get(watch.entry_id) == checked


def test_due_watches_come_earliest_first_up_to_now_across_pages(aws: Aws) -> None:
    watches = [a_watch(n, T0 + (n % 50) * HOUR) for n in range(2 * DUE_PAGE_SIZE + 30)]
    aws.seed_watches(watches)
    now = T0 + 24 * HOUR + 39 * HOUR  # completions at +0..+39 h are due

    due = list(aws.store.due_watches(now))

    assert len(due) == sum(1 for w in watches if w.due_at and w.due_at <= now)
    assert [w.due_at for w in due] == sorted(w.due_at for w in due if w.due_at)
    assert all(w.due_at is not None and w.due_at <= now for w in due)


def test_existing_connections_answers_for_any_number_of_ids(aws: Aws) -> None:
    present = [f"CAISO_u{n}_ref" for n in range(0, 240, 2)]
    aws.seed_connections(present)
    asked = [f"CAISO_u{n}_ref" for n in range(240)] + present[:5]  # duplicates too
    assert aws.store.existing_connections(asked) == set(present)


# --- meter_watch -------------------------------------------------------------------------------------


def sample_event(name: str) -> dict[str, Any]:
    return json.loads((REPO / "events" / name).read_text())


def test_meter_watch_opens_one_watch_per_completion_even_when_redelivered(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    event = sample_event("sqs-meter-watch-completed.json")

    def output() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]

    capsys.readouterr()
    with logs_in_capture(watch_app.logger):
        assert watch_app.lambda_handler(event, FakeLambdaContext(), aws.watch_deps) == {
            "batchItemFailures": []
        }
    opened = output()
    assert emf_metrics(opened)["WatchesOpened"] == [1]
    entry_id = "CAISO_62631455-9dfd-433b-9482-fd043f2336d4_Test1012"
    first = aws.raw_watch(entry_id)
    assert (first["completed_at"], first["due_at"], first["sequence"]) == (
        "2025-01-11T03:10:12Z",
        "2025-01-12T03:10:12Z",
        "4",
    )

    cold_start = watch_app.build_dependencies(load_settings())  # a cold start changes nothing either
    with logs_in_capture(watch_app.logger):
        assert watch_app.lambda_handler(event, FakeLambdaContext(), cold_start) == {"batchItemFailures": []}
    assert aws.raw_watch(entry_id) == first
    again = output()
    assert "WatchesOpened" not in emf_metrics(again)  # a redelivery opens nothing: no metric
    [line] = [line for line in again if line.get("message") == "meter watch"]
    assert line["result"] == "already_watched"  # the log line still tells it


def test_meter_watch_reports_only_the_malformed_record_as_failed(aws: Aws) -> None:
    event = sample_event("sqs-meter-watch-batch-with-malformed.json")
    result = watch_app.lambda_handler(event, FakeLambdaContext(), aws.watch_deps)
    assert result == {"batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]}
    assert aws.store.get("CAISO_62631455-9dfd-433b-9482-fd043f2336d4_Test1012") is not None


# --- meter_sweep against the Leap simulator ----------------------------------------------------------


@pytest.fixture
def leap(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[LeapSimulator]:
    with LeapSimulator(seed=7, customers=60) as sim:
        monkeypatch.setenv("LEAP_API_BASE_URL", sim.base_url)
        monkeypatch.setenv("LEAP_API_KEY", sim.api_key)
        monkeypatch.setenv("LEAP_MAX_RETRIES", "1")
        monkeypatch.setenv("LEAP_MAX_RETRY_SECONDS", "2")
        aws.sweep_deps = sweep_app.build_dependencies(load_settings())
        yield sim


def completed_customers(sim: LeapSimulator) -> list[tuple[str, datetime, datetime | None]]:
    """(ref id, completion, meters appear) for every simulated customer who completes."""
    found = []
    for ref_id in sim.ref_ids:
        completed = sim.completed_at(ref_id)
        if completed is not None:
            found.append((ref_id, completed, sim.meters_appear_at(ref_id)))
    return found


def test_250_due_watches_take_3_meters_api_calls_and_each_appearance_is_published_once(
    aws: Aws, leap: LeapSimulator
) -> None:
    customers = completed_customers(leap)
    now = max(completed for _, completed, _ in customers) + 24 * HOUR
    leap.set_time(now)
    real = [a_watch(n, completed, ref_id) for n, (ref_id, completed, _) in enumerate(customers)]
    fillers = [a_watch(1000 + n, now - 30 * HOUR) for n in range(250 - len(real))]  # Leap knows no meters
    aws.seed_watches(real + fillers)
    aws.seed_connections([w.entry_id for w in real + fillers])
    leap.reset_requests()

    summary = aws.sweep_at(now)

    assert leap.requests[wire.METERS_SEARCH_PATH] == 3
    assert (summary["due"], summary["checked"], summary["meters_api_calls"]) == (250, 250, 3)
    expected = {ref_id for ref_id, _, appear in customers if appear is not None and appear <= now}
    appeared = [e for e in aws.published() if e["type"] == catalog.METER_APPEARED]
    assert sorted(e["subject"] for e in appeared) == sorted(expected)
    assert summary["appeared"] == len(expected)
    for event in appeared:
        truth = {m[wire.METER_ID] for m in leap.meters_of(event["subject"])}
        assert {m["meter_id"] for m in event["data"]["meters"]} == truth
        assert "customer" not in json.dumps(event["data"])
        assert "street" not in json.dumps(event).lower()

    # Closed, they leave the due-index: no later sweep can publish a second meter.appeared.
    still_open = {w.ref_id for w in aws.store.due_watches(now + 1000 * HOUR)}
    assert len(still_open) == 250 - summary["appeared"] - summary["expired"]
    assert not still_open & expected


def test_a_sweep_out_of_time_checks_nothing_and_leaves_every_watch_due(aws: Aws, leap: LeapSimulator) -> None:
    aws.seed_watches([a_watch(n) for n in range(5)])
    aws.seed_connections([a_watch(n).entry_id for n in range(5)])
    leap.reset_requests()

    summary = aws.sweep_at(T0 + 24 * HOUR, remaining_ms=RULES.sweep_time_margin_seconds * 1000 - 1)

    assert summary["stopped_early"]
    assert summary["due"] == 0
    assert leap.requests[wire.METERS_SEARCH_PATH] == 0
    assert len(list(aws.store.due_watches(T0 + 24 * HOUR))) == 5


def test_a_watch_whose_connection_is_gone_is_closed_without_an_event(aws: Aws, leap: LeapSimulator) -> None:
    aws.seed_watches([a_watch(1)])
    summary = aws.sweep_at(T0 + 24 * HOUR)
    assert summary["connection_gone"] == 1
    assert aws.published() == []
    closed = aws.store.get(a_watch(1).entry_id)
    assert closed is not None
    assert (closed.status, closed.closed_reason) == (WatchStatus.CLOSED, ClosedReason.CONNECTION_GONE)


def test_the_sweep_falls_back_to_the_clock_without_a_scheduled_time(aws: Aws, leap: LeapSimulator) -> None:
    fresh = a_watch(1, datetime.now(UTC))  # first check due tomorrow
    aws.seed_watches([fresh])
    aws.seed_connections([fresh.entry_id])
    summary = aws.sweep({"mode": "scheduled", "scheduled_time": "<aws.scheduler.scheduled-time>"})
    assert summary["due"] == 0


def test_leap_answering_500_to_every_retry_fails_the_sweep_invocation_and_leaves_the_watches_due(
    aws: Aws, leap: LeapSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.seed_watches([a_watch(n) for n in range(3)])
    aws.seed_connections([a_watch(n).entry_id for n in range(3)])
    leap.inject(server_error(), times=None, path=wire.METERS_SEARCH_PATH)
    with (
        logs_in_capture(sweep_app.logger),
        pytest.raises(SweepIncomplete, match="Leap still answered 500") as failed,
    ):
        aws.sweep_at(T0 + 24 * HOUR)
    assert isinstance(failed.value.__cause__, LeapUnavailable)
    assert leap.requests[wire.METERS_SEARCH_PATH] == 2  # the request and its one retry (LEAP_MAX_RETRIES)
    assert len(list(aws.store.due_watches(T0 + 24 * HOUR))) == 3  # nothing lost: all still due
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    [error] = [line for line in lines if line.get("level") == "ERROR"]
    assert (error["leap_failures"], error["checked"], error["due"]) == (1, 0, 3)
    metrics = emf_metrics(lines)
    assert metrics["MetersApiFailures"] == [1]  # flushed although the handler raised
    assert "LeapAuthFailures" not in metrics  # Leap failed, but did not refuse the key (a zero: left out)


def test_leap_refusing_the_key_is_counted_for_the_auth_alarm(
    aws: Aws, leap: LeapSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.seed_watches([a_watch(n) for n in range(3)])
    aws.seed_connections([a_watch(n).entry_id for n in range(3)])
    leap.inject(http_error(401), times=None, path=wire.METERS_SEARCH_PATH)
    with logs_in_capture(sweep_app.logger), pytest.raises(SweepIncomplete, match=r"API key \(401\)"):
        aws.sweep_at(T0 + 24 * HOUR)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    metrics = emf_metrics(lines)
    assert metrics["LeapAuthFailures"] == [1]  # the LeapAuthFailures alarm's metric, flushed on the raise
    assert metrics["MetersApiFailures"] == [1]
    assert len(list(aws.store.due_watches(T0 + 24 * HOUR))) == 3  # all still due for the next sweep


def test_a_reference_id_the_meters_search_refuses_is_not_sent_to_it(
    aws: Aws, leap: LeapSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = a_watch(9, ref_id="order#17")  # a PartnerReference may not hold '#': Leap would refuse the batch
    aws.seed_watches([a_watch(1), odd])
    aws.seed_connections([a_watch(1).entry_id, odd.entry_id])
    leap.reset_requests()
    with logs_in_capture(sweep_app.logger):
        summary = aws.sweep_at(T0 + 24 * HOUR)
    assert (summary["checked"], summary["unsearchable"], summary["meters_api_calls"]) == (2, 1, 1)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    metrics = emf_metrics(lines)
    assert (metrics["WatchesUnsearchable"], metrics["MetersApiCalls"]) == ([1], [1])  # on the dashboard
    assert not {"WatchesChecked", "MetersApiFailures", "EventsNotPublished"} & set(metrics)  # 0: left out
    [line] = [line for line in lines if line.get("message") == "meter sweep"]
    assert line["checked"] == 2  # the log line's only: no dashboard or alarm reads it
    [search] = [r for r in leap.request_log if r.path == wire.METERS_SEARCH_PATH]
    assert "order#17" not in json.dumps(search.body)
