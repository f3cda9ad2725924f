"""Every filter policy in docs/events.md is valid JSON and, subscribed in moto, selects what it claims.

Each policy subscribes its own queue; the real messages of the doc's sample histories are published
through the SNS publisher; each queue must receive exactly the events its claim selects (the claims
are in tests/builders.py, shared with the events end-to-end test).
"""

from __future__ import annotations

import json

import boto3
from moto import mock_aws

from devtools import generate_schemas
from leap_tracker.adapters.sns_publisher import SnsPublisher
from tests.builders import CLAIMS, doc_policies


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
