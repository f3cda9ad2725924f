"""LocalCloud.deploy_subscriber and LocalCloud.evaluate_alarms: subscriber/template.yaml brought up next to
template.yaml the way the main stack is, and the SQS-metric alarms evaluated from the queues."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.local_runner import LocalCloud, TemplateError

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
FAKE_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:leap-api-key"
CONSUMER = {"DeploySampleConsumer": "true"}


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(TEMPLATE, parameters={"LeapApiKeySecretArn": FAKE_SECRET_ARN}) as local:
        yield local


def publish(cloud: LocalCloud, event: dict[str, object]) -> None:
    cloud.client("sns").publish(
        TopicArn=cloud.outputs["EventsTopicArn"],
        Message=json.dumps(event),
        MessageAttributes={"type": {"DataType": "String", "StringValue": str(event["type"])}},
    )


def change_event(event_id: str, entry_id: str, sequence: int) -> dict[str, object]:
    return {
        "id": event_id,
        "type": "connection.partial",
        "sequence": f"{sequence:012d}",
        "data": {"connection": {"id": entry_id, "connection_status": "PARTIAL"}},
    }


def applied_sequences(cloud: LocalCloud, stack_name: str) -> dict[str, str]:
    table = cloud.subscribers[stack_name].outputs["AppliedSequencesTableName"]
    items = cloud.client("dynamodb").scan(TableName=table)["Items"]
    return {item["entry_id"]["S"]: item["sequence"]["N"] for item in items}


def test_a_subscriber_stack_is_built_from_its_template_next_to_the_main_one(cloud: LocalCloud) -> None:
    stack = cloud.deploy_subscriber("partner", {"FilterPolicyName": "completions", **CONSUMER})

    assert stack.parameters["EventsTopicArn"] == cloud.outputs["EventsTopicArn"]  # defaulted to the output
    assert stack.resources.not_emulated == {}
    assert cloud.subscribers == {"partner": stack}
    function = cloud.functions["partner/ConsumerFunction"]
    assert function.module_name == "subscriber.consumer.app"  # CodeUri consumer/, relative to its template
    assert function.name == stack.outputs["ConsumerFunctionName"] == "partner-ConsumerFunction"
    assert cloud.sqs_mappings["partner/ConsumerFunctionQueue"].queue_url == stack.queue_url
    attributes = cloud.client("sns").get_subscription_attributes(
        SubscriptionArn=stack.outputs["SubscriptionArn"]
    )
    assert json.loads(attributes["Attributes"]["FilterPolicy"]) == {"type": ["connection.completed"]}
    with pytest.raises(ValueError, match="already deployed"):
        cloud.deploy_subscriber("partner")
    with pytest.raises(TemplateError, match="FilterPolicyName"):
        cloud.deploy_subscriber("other", {"FilterPolicyName": "no-such-policy"})


def test_without_the_consumer_nothing_reads_the_queue(cloud: LocalCloud) -> None:
    stack = cloud.deploy_subscriber("reader")
    publish(cloud, change_event("e-1", "CAISO_a_ref-1", 1))

    cloud.drain()

    assert not [name for name in cloud.functions if name.startswith("reader/")]
    [message] = cloud.drain_queue(stack.queue_url)  # every event (no filter), waiting for the partner
    assert message.body["id"] == "e-1"


def test_two_consumer_stacks_each_keep_to_their_own_tables(cloud: LocalCloud) -> None:
    # One handler module, two functions: each must run with its own cold start's tables.
    cloud.deploy_subscriber("first", CONSUMER)
    cloud.deploy_subscriber("second", CONSUMER)
    publish(cloud, change_event("e-1", "CAISO_a_ref-1", 2))

    cloud.drain()
    publish(cloud, change_event("e-2", "CAISO_a_ref-1", 3))
    cloud.drain()

    assert applied_sequences(cloud, "first") == applied_sequences(cloud, "second") == {"CAISO_a_ref-1": "3"}
    assert not cloud.errors


def test_an_alarm_changes_state_only_when_its_queue_says_so_and_notifies_each_change(
    cloud: LocalCloud,
) -> None:
    stack = cloud.deploy_subscriber("partner")
    alarms = cloud.subscribe_queue(stack.outputs["AlarmTopicArn"], raw=False)
    dead_letters = stack.outputs["DeadLetterQueueUrl"]
    cloudwatch = cloud.client("cloudwatch")
    others_before = {
        a["AlarmName"]: a["StateValue"]
        for a in cloudwatch.describe_alarms()["MetricAlarms"]
        if a["Namespace"] != "AWS/SQS"
    }

    first = {e.name: (e.state, e.changed) for e in cloud.evaluate_alarms()}
    cloud.client("sqs").send_message(QueueUrl=dead_letters, MessageBody="a failed event")
    second = {e.name: (e.value, e.state) for e in cloud.evaluate_alarms()}
    third = {e.name: e.changed for e in cloud.evaluate_alarms()}

    assert first["partner-dead-letter-queue"] == ("OK", False)  # moto creates alarms in OK
    assert second["partner-dead-letter-queue"] == (1, "ALARM")
    assert not any(third.values())  # no change, no new notification
    [notification] = [json.loads(m.envelope["Message"]) for m in cloud.drain_queue(alarms)]
    assert notification["NewStateValue"] == "ALARM"
    assert notification["Trigger"]["Dimensions"] == [
        {"name": "QueueName", "value": dead_letters.rsplit("/", 1)[1]}
    ]
    [described] = cloudwatch.describe_alarms(AlarmNames=["partner-dead-letter-queue"])["MetricAlarms"]
    assert described["StateValue"] == "ALARM"
    others_after = {
        a["AlarmName"]: a["StateValue"]
        for a in cloudwatch.describe_alarms()["MetricAlarms"]
        if a["Namespace"] != "AWS/SQS"
    }
    assert others_after == others_before  # alarms on other metrics are not evaluated
