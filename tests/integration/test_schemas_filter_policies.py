"""The ready filter policies: one source (subscriber/filter-policies.json), shown unchanged by
docs/events.md and materialised unchanged in subscriber/template.yaml; subscribed in moto, each
selects what it claims.

Each policy subscribes its own queue; the real messages of the doc's sample histories are published
through the SNS publisher; each queue must receive exactly the events its claim selects (the claims
are in tests/builders.py, shared with the end-to-end tests).
"""

from __future__ import annotations

import dataclasses
import json
import re

import boto3
import pytest
from moto import mock_aws

from devtools import generate_schemas
from devtools.local_runner.template import load_sam_template
from leap_tracker.adapters.sns_publisher import SnsPublisher
from subscriber import filter_policies
from tests.builders import CLAIMS, ready_policies

POLICY_BLOCK = re.compile(
    r"```json filter-policy name=(?P<name>\S+) scope=(?P<scope>\S+)\n(?P<policy>.*?)\n```", re.DOTALL
)


def test_the_source_has_the_promised_policies_and_each_has_a_claim() -> None:
    policies = ready_policies()

    assert set(policies) == set(CLAIMS)
    assert {scope for scope, _ in policies.values()} == {"MessageAttributes", "MessageBody"}


def test_the_doc_shows_exactly_the_source() -> None:
    text = generate_schemas.EVENTS_DOC.read_text()
    shown = {m["name"]: (m["scope"], json.loads(m["policy"])) for m in POLICY_BLOCK.finditer(text)}

    assert list(shown.items()) == list(ready_policies().items())


def test_the_subscriber_template_offers_exactly_the_source() -> None:
    sam = load_sam_template(generate_schemas.SUBSCRIBER_TEMPLATE)
    mapping = dict(sam["Mappings"]["FilterPolicies"])
    mapping.pop(generate_schemas.NO_POLICY)
    offered = {name: (spec["Scope"], json.loads(spec["Policy"])) for name, spec in mapping.items()}
    choices = sam["Parameters"]["FilterPolicyName"]["AllowedValues"]

    assert list(offered.items()) == list(ready_policies().items())
    assert choices == [generate_schemas.NO_POLICY, *ready_policies()]
    assert sam["Parameters"]["FilterPolicyName"]["Default"] == generate_schemas.NO_POLICY


def test_a_changed_policy_leaves_the_doc_and_the_template_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    policies = filter_policies.named_policies()
    policies["completions"] = dataclasses.replace(policies["completions"], policy={"type": ["x"]})
    monkeypatch.setattr(generate_schemas, "named_policies", lambda: policies)

    stale = generate_schemas.stale_files()

    assert generate_schemas.EVENTS_DOC in stale
    assert generate_schemas.SUBSCRIBER_TEMPLATE in stale


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
        for name, (scope, policy) in ready_policies().items():
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
