"""Bringing template.yaml up, invoking functions, schedules, the clock and the counters."""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from devtools.local_runner import InjectedFailure, LocalCloud, TemplateError

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
FAKE_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:leap-api-key"
POLLER = "PollerFunction"
START = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(TEMPLATE, parameters={"LeapApiKeySecretArn": FAKE_SECRET_ARN}, start=START) as local:
        yield local


def test_the_table_is_created_as_the_template_declares_it(cloud: LocalCloud) -> None:
    ddb = cloud.client("dynamodb")
    name = cloud.resources.table_name("ConnectionsTable")
    described = ddb.describe_table(TableName=name)["Table"]
    declared = cloud.resources["ConnectionsTable"].properties

    assert described["KeySchema"] == declared["KeySchema"]
    assert [index["IndexName"] for index in described["GlobalSecondaryIndexes"]] == [
        index["IndexName"] for index in declared["GlobalSecondaryIndexes"]
    ]
    assert described["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": declared["TimeToLiveSpecification"]["AttributeName"],
    }


def test_queues_topics_and_outputs_come_from_the_template(cloud: LocalCloud) -> None:
    sqs = cloud.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=cloud.resources.queue_url("OutreachQueue"), AttributeNames=["All"]
    )["Attributes"]
    declared = cloud.resources["OutreachQueue"].properties
    assert attributes["VisibilityTimeout"] == str(declared["VisibilityTimeout"])
    assert attributes["RedrivePolicy"].replace(" ", "") == (
        f'{{"deadLetterTargetArn":"{cloud.resources.queue_arn("OutreachDeadLetterQueue")}",'
        f'"maxReceiveCount":{declared["RedrivePolicy"]["maxReceiveCount"]}}}'
    )
    assert cloud.outputs["EventsTopicArn"] == cloud.resources.topic_arn("EventsTopic")
    assert cloud.outputs["OutreachDeadLetterQueueUrl"] == cloud.resources.queue_url("OutreachDeadLetterQueue")
    # The schedule's own dead-letter queue (declared in the template, named as SAM would) is wired.
    assert cloud.schedules["PollerFunctionHourly"].dead_letter_arn == cloud.resources.queue_arn(
        "PollerFunctionHourlyQueue"
    )
    assert cloud.resources.not_emulated == {}


def test_functions_get_the_resolved_template_environment(cloud: LocalCloud) -> None:
    seen: dict[str, str] = {}
    cloud.override_handler(POLLER, lambda event, context: seen.update(os.environ))
    before = dict(os.environ)

    cloud.invoke(POLLER, {"mode": "ref_id", "ref_id": "r1"})

    assert seen["CONNECTIONS_TABLE"] == cloud.resources.table_name("ConnectionsTable")
    assert seen["EVENTS_TOPIC_ARN"] == cloud.resources.topic_arn("EventsTopic")
    assert seen["LEAP_API_KEY_SECRET_ARN"] == FAKE_SECRET_ARN
    assert seen["POWERTOOLS_SERVICE_NAME"] == "leap-connect-tracker"  # from Globals
    assert seen["AWS_LAMBDA_FUNCTION_NAME"] == cloud.resources.function_name(POLLER)
    assert dict(os.environ) == before  # restored after the call


def test_parameters_and_conditions_shape_the_resources() -> None:
    with LocalCloud(
        TEMPLATE,
        parameters={"LeapApiKeySecretArn": FAKE_SECRET_ARN, "EventsTopicFifo": "true", "LogLevel": "DEBUG"},
        stack_name="fifo-stack",
    ) as cloud:
        topic = cloud.resources.topic_arn("EventsTopic")
        assert topic.endswith(":fifo-stack-events.fifo")
        attributes = cloud.client("sns").get_topic_attributes(TopicArn=topic)["Attributes"]
        assert attributes["FifoTopic"] == "true"
        assert cloud.functions[POLLER].environment["POWERTOOLS_LOG_LEVEL"] == "DEBUG"
        assert cloud.functions[POLLER].environment["EVENTS_TOPIC_FIFO"] == "true"


def test_a_parameter_outside_its_constraints_is_refused() -> None:
    with pytest.raises(TemplateError, match="LogLevel"):
        LocalCloud(
            TEMPLATE, parameters={"LeapApiKeySecretArn": FAKE_SECRET_ARN, "LogLevel": "LOUD"}
        ).__enter__()


def test_parameters_the_template_rules_refuse_are_refused_before_anything_is_created() -> None:
    with pytest.raises(TemplateError, match=r"WebhookChannelNeedsUrlAndSecret: .*OutreachWebhookUrl must"):
        LocalCloud(
            TEMPLATE, parameters={"LeapApiKeySecretArn": FAKE_SECRET_ARN, "OutreachChannels": "webhook"}
        ).__enter__()


def test_secrets_become_real_secrets_behind_their_parameter() -> None:
    with LocalCloud(TEMPLATE, secrets={"LeapApiKeySecretArn": "leap-key-123"}) as cloud:
        arn = cloud.parameters["LeapApiKeySecretArn"]
        assert cloud.functions[POLLER].environment["LEAP_API_KEY_SECRET_ARN"] == arn
        assert cloud.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"] == "leap-key-123"


def test_a_secret_the_template_generates_is_made_as_its_generate_secret_string_says() -> None:
    with LocalCloud(TEMPLATE, secrets={"LeapApiKeySecretArn": "leap-key-123"}) as cloud:
        arn = cloud.resources["LogHashKeySecret"].ref
        value = cloud.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
        environments = {name: f.environment["LOG_HASH_KEY_SECRET_ARN"] for name, f in cloud.functions.items()}

    assert re.fullmatch(r"[A-Za-z0-9]{64}", value)  # PasswordLength 64, ExcludePunctuation
    assert set(environments.values()) == {arn}  # every function reads the one key


def test_the_schedule_invokes_its_function_with_the_template_input(cloud: LocalCloud) -> None:
    events: list[Any] = []
    cloud.override_handler(POLLER, lambda event, context: events.append(event))
    cloud.override_handler("MeterSweepFunction", lambda event, context: events.append(event))

    cloud.fire_schedule(POLLER)
    cloud.fire_schedule("MeterSweepFunction")

    assert events[0] == {"mode": "scheduled"}
    # Scheduler context attributes in the Input are filled in.
    assert "<aws.scheduler" not in str(events[1])
    assert events[1].get("scheduled_time", "2025-03-03T08:00:00Z") == "2025-03-03T08:00:00Z"


def test_a_failed_scheduled_run_is_retried_like_an_async_invocation(cloud: LocalCloud) -> None:
    calls: list[datetime] = []

    def flaky(event: Any, context: Any) -> None:
        calls.append(cloud.now())
        raise RuntimeError("Leap is down")

    cloud.override_handler(POLLER, flaky)
    record = cloud.fire_schedule(POLLER)
    assert record.failed
    cloud.drain()
    assert calls == [START]  # the retry waits a minute
    cloud.advance(minutes=1)
    cloud.drain()
    cloud.advance(minutes=2)
    cloud.drain()
    cloud.advance(hours=1)
    cloud.drain()

    assert calls == [START, START + timedelta(minutes=1), START + timedelta(minutes=3)]
    # The template's EventInvokeConfig sends the spent event to the failure queue: nothing is dropped.
    assert cloud.dropped_async_events == []
    [failure] = cloud.drain_queue("ScheduledRunFailureQueue")
    assert failure.body["requestPayload"] == {"mode": "scheduled"}
    assert failure.body["requestContext"]["condition"] == "RetriesExhausted"
    assert failure.body["requestContext"]["approximateInvokeCount"] == 3


def test_injected_failures_and_direct_invocation_errors(cloud: LocalCloud) -> None:
    cloud.override_handler(POLLER, lambda event, context: {"polled": event["ref_id"]})
    cloud.fail_next(POLLER, times=1)

    with pytest.raises(InjectedFailure):
        cloud.invoke(POLLER, {"ref_id": "r1"})
    assert cloud.invoke(POLLER, {"ref_id": "r1"}) == {"polled": "r1"}
    assert cloud.invocation_counts[POLLER] == 2
    assert len(cloud.errors) == 1


def test_the_context_counts_down_from_the_timeout_unless_overridden(cloud: LocalCloud) -> None:
    seen: list[tuple[str, int, str]] = []

    def handler(event: Any, context: Any) -> None:
        seen.append(
            (context.function_name, context.get_remaining_time_in_millis(), context.memory_limit_in_mb)
        )

    cloud.override_handler(POLLER, handler)
    cloud.invoke(POLLER)
    ticks = iter([120_000, 50_000])
    cloud.set_remaining_time(POLLER, lambda: next(ticks))
    cloud.invoke(POLLER)

    name, remaining, memory = seen[0]
    assert name == cloud.resources.function_name(POLLER)
    assert 899_000 < remaining <= 900_000  # Timeout: 900
    assert memory == "512"
    assert seen[1][1] == 120_000


def test_a_cold_start_rebuilds_dependencies_after_an_env_change(
    cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The handler module's own cache of what its cold start builds (``dependencies``) is what is reset.
    module = importlib.import_module(cloud.functions[POLLER].module_name)
    monkeypatch.setenv("CONNECTIONS_TABLE", "from-an-earlier-life")
    monkeypatch.setenv("LEAP_API_KEY", "from-an-earlier-life")
    stale = module.dependencies()  # warm from an earlier life: the first invocation is still a cold start
    seen: list[Any] = []
    cloud.override_handler(POLLER, lambda event, context: seen.append(module.dependencies()))

    cloud.invoke(POLLER)
    cloud.invoke(POLLER)
    cloud.set_env(POLLER, LEAP_API_BASE_URL="http://127.0.0.1:9")
    cloud.invoke(POLLER)

    template_url = cloud.functions[POLLER].environment["LEAP_API_BASE_URL"]
    assert all(deps is not stale for deps in seen)
    assert seen[0] is seen[1]  # warm: built once
    assert [deps.settings.leap.base_url for deps in seen] == [
        template_url,
        template_url,
        "http://127.0.0.1:9",
    ]


def test_aws_calls_of_handlers_are_counted_by_function_and_operation(cloud: LocalCloud) -> None:
    def handler(event: Any, context: Any) -> None:
        ddb = boto3.session.Session().client("dynamodb")
        ddb.put_item(TableName=os.environ["CONNECTIONS_TABLE"], Item={"pk": {"S": "x"}, "sk": {"S": "y"}})
        ddb.get_item(TableName=os.environ["CONNECTIONS_TABLE"], Key={"pk": {"S": "x"}, "sk": {"S": "y"}})

    cloud.override_handler(POLLER, handler)
    cloud.invoke(POLLER)
    cloud.invoke(POLLER)
    cloud.client("dynamodb").scan(TableName=cloud.resources.table_name("ConnectionsTable"))  # not counted

    assert cloud.aws_calls == {("dynamodb", "PutItem"): 2, ("dynamodb", "GetItem"): 2}
    assert cloud.aws_calls_by_function[POLLER][("dynamodb", "PutItem")] == 2
    assert cloud.summary()["aws_calls"] == {"dynamodb.GetItem": 2, "dynamodb.PutItem": 2}


def test_advancing_the_clock_moves_handlers_time_and_tells_listeners(cloud: LocalCloud) -> None:
    moves: list[tuple[datetime, timedelta]] = []
    cloud.on_advance(lambda now, delta: moves.append((now, delta)))
    cloud.override_handler(POLLER, lambda event, context: datetime.now(UTC))

    assert cloud.invoke(POLLER) == START
    cloud.advance(hours=2, minutes=30)

    assert cloud.invoke(POLLER) == START + timedelta(hours=2, minutes=30)
    assert moves == [(START + timedelta(hours=2, minutes=30), timedelta(hours=2, minutes=30))]
