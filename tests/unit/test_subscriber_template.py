"""subscriber/template.yaml as it deploys (after the SAM transform, Conditions applied): what the
partner's stack creates in each configuration, and that it is least privilege, encrypted and TLS only.

The runtime behaviour (deliveries, the consumer, the alarms) is tested end to end through the local
runner (tests/e2e/test_subscriber_e2e.py); the named policies against their one source in
tests/integration/test_schemas_filter_policies.py.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint

from devtools.local_runner.template import (
    TemplateError,
    broken_rules,
    load_sam_template,
    resolve_parameters,
    transform,
)
from subscriber.filter_policies import named_policies
from tests.templates import as_list, of_type, resolved_resources

TEMPLATE = Path(__file__).resolve().parents[2] / "subscriber" / "template.yaml"
REGION = "us-east-1"
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": "222222222222",
    "AWS::StackName": "partner",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}
TOPIC = "arn:aws:sns:eu-west-1:111111111111:leap-connect-tracker-EventsTopic-AbCd"  # another account
KEY = "arn:aws:kms:us-east-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OWN_ALARM_TOPIC = "arn:aws:sns:us-east-1:222222222222:paging"
CONFIGURATIONS = {
    "defaults": {},
    "consumer": {"DeploySampleConsumer": "true", "FilterPolicyName": "completions"},
    "key, fifo, consumer, own policy and alarm topic": {
        "KmsKeyArn": KEY,
        "Fifo": "true",
        "DeploySampleConsumer": "true",
        "FilterPolicyJson": '{"type": ["connection.error"]}',
        "AlarmTopicArn": OWN_ALARM_TOPIC,
    },
}
configurations = pytest.mark.parametrize("overrides", CONFIGURATIONS.values(), ids=CONFIGURATIONS.keys())
QUEUES = ("Queue", "DeadLetterQueue", "SubscriptionDeadLetterQueue")
DENY_INSECURE = {"Bool": {"aws:SecureTransport": "false"}}


def sam_template() -> dict[str, Any]:
    return load_sam_template(TEMPLATE)


def parameters(overrides: dict[str, str]) -> dict[str, Any]:
    return resolve_parameters(sam_template()["Parameters"], {"EventsTopicArn": TOPIC, **overrides})


def stack(overrides: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each resource the configuration creates, resolved (tests.templates.resolved_resources)."""
    values = parameters(overrides)
    return resolved_resources(transform(sam_template(), values, REGION), values, PSEUDO)


def grants(role: dict[str, Any]) -> set[tuple[str, str]]:
    found = set()
    for policy in role["Policies"]:
        for statement in as_list(policy["PolicyDocument"]["Statement"]):
            assert statement["Effect"] == "Allow"
            assert "Condition" not in statement
            found |= set(itertools.product(as_list(statement["Action"]), as_list(statement["Resource"])))
    return found


# --- what each configuration creates ------------------------------------------------------------------


def test_the_defaults_make_a_queue_for_every_event_with_its_dead_letter_queues_and_alarms() -> None:
    resources = stack({})

    assert sorted(of_type(resources, "AWS::SQS::Queue")) == sorted(QUEUES)
    [subscription] = of_type(resources, "AWS::SNS::Subscription").values()
    assert subscription == {
        "TopicArn": TOPIC,
        "Region": "eu-west-1",  # the topic's region, whatever the stack's
        "Protocol": "sqs",
        "Endpoint": "Queue.Arn",
        "RawMessageDelivery": True,
        "RedrivePolicy": {"deadLetterTargetArn": "SubscriptionDeadLetterQueue.Arn"},
    }  # no filter policy: every event
    assert resources["Queue"]["Properties"]["RedrivePolicy"] == {
        "deadLetterTargetArn": "DeadLetterQueue.Arn",
        "maxReceiveCount": 5,
    }
    assert not of_type(resources, "AWS::Lambda::Function")
    assert not of_type(resources, "AWS::DynamoDB::Table")


@pytest.mark.parametrize("name", list(named_policies()))
def test_a_named_policy_is_applied_with_its_scope(name: str) -> None:
    [subscription] = of_type(stack({"FilterPolicyName": name}), "AWS::SNS::Subscription").values()
    policy = named_policies()[name]

    assert json.loads(subscription["FilterPolicy"]) == policy.policy
    assert subscription["FilterPolicyScope"] == policy.scope


def test_an_own_policy_is_applied_with_the_scope_given() -> None:
    own = '{"data": {"connection": {"transmission_region": ["PJM"]}}}'
    [subscription] = of_type(
        stack({"FilterPolicyJson": own, "FilterPolicyScope": "MessageBody"}), "AWS::SNS::Subscription"
    ).values()

    assert (subscription["FilterPolicy"], subscription["FilterPolicyScope"]) == (own, "MessageBody")


def test_a_named_policy_and_an_own_policy_together_are_refused() -> None:
    overrides = {"FilterPolicyName": "completions", "FilterPolicyJson": '{"type": ["x"]}'}

    assert broken_rules(transform(sam_template(), parameters(overrides), REGION), parameters(overrides))
    with pytest.raises(TemplateError, match="FilterPolicyName"):
        parameters({"FilterPolicyName": "no-such-policy"})
    with pytest.raises(TemplateError, match="EventsTopicArn"):
        resolve_parameters(sam_template()["Parameters"], {"EventsTopicArn": "not-an-arn"})


@configurations
def test_every_configuration_passes_the_templates_rules(overrides: dict[str, str]) -> None:
    assert broken_rules(transform(sam_template(), parameters(overrides), REGION), parameters(overrides)) == []


def test_fifo_makes_every_queue_fifo() -> None:
    queues = of_type(stack({"Fifo": "true"}), "AWS::SQS::Queue")

    assert all(q["FifoQueue"] is True and q["QueueName"].endswith(".fifo") for q in queues.values())
    assert all("FifoQueue" not in q for q in of_type(stack({}), "AWS::SQS::Queue").values())


# --- alarms -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "topic"), [({}, "AlarmTopic"), ({"AlarmTopicArn": OWN_ALARM_TOPIC}, OWN_ALARM_TOPIC)]
)
def test_each_dead_letter_queue_and_the_oldest_message_have_an_alarm(
    overrides: dict[str, str], topic: str
) -> None:
    resources = stack(overrides)
    alarms = {
        (a["MetricName"], a["Dimensions"][0]["Value"], a["ComparisonOperator"], a["Threshold"])
        for a in of_type(resources, "AWS::CloudWatch::Alarm").values()
    }

    assert alarms == {
        ("ApproximateNumberOfMessagesVisible", "DeadLetterQueue.QueueName", "GreaterThanThreshold", 0),
        (
            "ApproximateNumberOfMessagesVisible",
            "SubscriptionDeadLetterQueue.QueueName",
            "GreaterThanThreshold",
            0,
        ),
        ("ApproximateAgeOfOldestMessage", "Queue.QueueName", "GreaterThanThreshold", "3600"),
    }
    for alarm in of_type(resources, "AWS::CloudWatch::Alarm").values():
        assert (alarm["AlarmActions"], alarm["OKActions"]) == ([topic], [topic])
        assert alarm["AlarmName"].startswith(
            "partner-"
        )  # what the alarm topic's policy lets CloudWatch publish
    assert ("AlarmTopic" in resources) == (topic == "AlarmTopic")


# --- least privilege, encryption, transport ---------------------------------------------------------------


@pytest.mark.parametrize("key", ["", KEY])
def test_the_consumer_role_grants_exactly_what_the_consumer_and_lambda_do(key: str) -> None:
    resources = stack({"DeploySampleConsumer": "true", "KmsKeyArn": key})
    [(name, function)] = of_type(resources, "AWS::Lambda::Function").items()
    [mapping] = of_type(resources, "AWS::Lambda::EventSourceMapping").values()
    roles = of_type(resources, "AWS::IAM::Role")

    assert list(roles) == ["ConsumerFunctionRole"]
    assert function["Role"] == "ConsumerFunctionRole.Arn"
    assert grants(roles["ConsumerFunctionRole"]) == {
        ("logs:CreateLogStream", "ConsumerLogGroup.Arn"),
        ("logs:PutLogEvents", "ConsumerLogGroup.Arn"),
        ("xray:PutTraceSegments", "*"),  # X-Ray has no resource-level permission
        ("xray:PutTelemetryRecords", "*"),
        ("sqs:ReceiveMessage", "Queue.Arn"),
        ("sqs:DeleteMessage", "Queue.Arn"),
        ("sqs:GetQueueAttributes", "Queue.Arn"),
        ("dynamodb:GetItem", "IdempotencyTable.Arn"),
        ("dynamodb:PutItem", "IdempotencyTable.Arn"),
        ("dynamodb:UpdateItem", "IdempotencyTable.Arn"),
        ("dynamodb:DeleteItem", "IdempotencyTable.Arn"),
        ("dynamodb:UpdateItem", "AppliedSequencesTable.Arn"),
        *([("kms:Decrypt", KEY)] if key else []),
    }
    assert "ManagedPolicyArns" not in roles["ConsumerFunctionRole"]
    assert (mapping["FunctionName"], mapping["EventSourceArn"]) == (name, "Queue.Arn")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Lambda's advice: a visibility timeout of six times the function's timeout.
    assert resources["Queue"]["Properties"]["VisibilityTimeout"] == 6 * function["Timeout"]


@pytest.mark.parametrize("key", ["", KEY])
def test_every_queue_table_topic_and_log_group_is_encrypted(key: str) -> None:
    resources = stack({"DeploySampleConsumer": "true", "KmsKeyArn": key})

    for queue in of_type(resources, "AWS::SQS::Queue").values():
        assert (queue.get("KmsMasterKeyId"), queue.get("SqsManagedSseEnabled")) == (
            (KEY, None) if key else (None, True)
        )
    for table in of_type(resources, "AWS::DynamoDB::Table").values():
        assert table["SSESpecification"] == {
            "SSEEnabled": True,
            "SSEType": "KMS",
            **({"KMSMasterKeyId": KEY} if key else {}),
        }
    assert resources["ConsumerLogGroup"]["Properties"].get("KmsKeyId") == (key or None)
    # CloudWatch cannot publish to a topic under the AWS managed key: unencrypted without yours.
    assert resources["AlarmTopic"]["Properties"].get("KmsMasterKeyId") == (key or None)


@configurations
def test_every_queue_refuses_requests_without_tls_and_only_the_topic_may_send(
    overrides: dict[str, str],
) -> None:
    resources = stack(overrides)
    [policy] = of_type(resources, "AWS::SQS::QueuePolicy").values()
    statements = policy["PolicyDocument"]["Statement"]
    [deny] = [s for s in statements if s["Effect"] == "Deny"]
    [allow] = [s for s in statements if s["Effect"] == "Allow"]

    assert sorted(policy["Queues"]) == sorted(QUEUES)
    assert (deny["Principal"], deny["Action"], deny["Condition"]) == ("*", "sqs:*", DENY_INSECURE)
    assert sorted(deny["Resource"]) == sorted(f"{q}.Arn" for q in QUEUES)
    assert allow == {
        "Sid": "EventsTopicSends",
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": ["Queue.Arn", "SubscriptionDeadLetterQueue.Arn"],  # the endpoint and its redrive
        "Condition": {"ArnEquals": {"aws:SourceArn": TOPIC}},
    }
    for topic_policy in of_type(resources, "AWS::SNS::TopicPolicy").values():
        denies = [s for s in topic_policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert [s["Condition"] for s in denies] == [DENY_INSECURE]


def test_cfn_lint_passes_with_the_key_fifo_consumer_and_own_policy_as_defaults() -> None:
    """cfn-lint takes no parameter values (`make template` lints the defaults): the configuration that
    turns every option on is linted as the defaults."""
    sam = sam_template()
    hardened = CONFIGURATIONS["key, fifo, consumer, own policy and alarm topic"]
    for name, value in {"EventsTopicArn": TOPIC, **hardened}.items():
        sam["Parameters"][name]["Default"] = value

    assert [str(match) for match in lint(json.dumps(sam), regions=[REGION])] == []
