"""Every filter policy in docs/events.md is valid JSON and, subscribed in moto, selects what it claims.

Each policy subscribes its own queue; the real messages of the doc's sample histories are published
through the SNS publisher; each queue must receive exactly the events the claim below selects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import boto3
from moto import mock_aws

from devtools import generate_schemas
from leap_tracker.adapters.sns_publisher import SnsPublisher
from leap_tracker.events.catalog import message_attributes

POLICY_BLOCK = re.compile(
    r"```json filter-policy name=(?P<name>\S+) scope=(?P<scope>\S+)\n(?P<policy>.*?)\n```", re.DOTALL
)

Claim = Callable[[dict[str, Any]], bool]
CLAIMS: dict[str, Claim] = {
    "errors-in-caiso": lambda e: (
        e["type"] in ("connection.error", "utility.error")
        and e["data"]["connection"]["transmission_region"] == "CAISO"
    ),
    "completions": lambda e: e["type"] == "connection.completed",
    "agreements": lambda e: e["type"].startswith("agreement."),
    "all-but-utilities": lambda e: not e["type"].startswith("utility."),
    "user-canceled": lambda e: error_code(e) == "USER_CANCELED",
    "sdge-utility-events": lambda e: (
        e["type"].startswith("utility.") and e["data"]["utility"]["utility_name"].startswith("SDG&E")
    ),
}


def error_code(event: dict[str, Any]) -> str | None:
    return message_attributes(event).get("error_code")


def doc_policies() -> dict[str, tuple[str, dict[str, Any]]]:
    text = generate_schemas.EVENTS_DOC.read_text()
    return {m["name"]: (m["scope"], json.loads(m["policy"])) for m in POLICY_BLOCK.finditer(text)}


def test_the_doc_has_the_promised_policies_and_each_has_a_claim() -> None:
    policies = doc_policies()

    assert set(policies) == set(CLAIMS)
    assert {scope for scope, _ in policies.values()} == {"MessageAttributes", "MessageBody"}


def test_each_policy_receives_exactly_what_it_claims() -> None:
    messages = [
        *generate_schemas.history_messages(generate_schemas.event_samples.commercial_history()),
        *generate_schemas.history_messages(generate_schemas.event_samples.unusual_history()),
    ]
    events = {m.event_id: json.loads(m.body) for m in messages}
    with mock_aws():
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        topic_arn = sns.create_topic(Name="events")["TopicArn"]
        queues = {}
        for name, (scope, policy) in doc_policies().items():
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
            attributes = {
                "RawMessageDelivery": "true",
                "FilterPolicyScope": scope,
                "FilterPolicy": json.dumps(policy),
            }
            sns.subscribe(
                TopicArn=topic_arn, Protocol="sqs", Endpoint=queue["QueueArn"], Attributes=attributes
            )
            queues[name] = url

        assert SnsPublisher(sns, topic_arn).publish(messages) == {}

        for name, url in queues.items():
            received = set()
            while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                for message in batch:
                    received.add(json.loads(message["Body"])["id"])
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            expected = {event_id for event_id, event in events.items() if CLAIMS[name](event)}
            assert expected, f"{name}: the samples must exercise it"
            assert received == expected, name
