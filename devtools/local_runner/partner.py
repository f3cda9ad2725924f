"""What a partner does with the events topic: subscribe a queue of its own, and read what arrives."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PartnerMessage:
    """A message drained from a queue: the event, its attributes and (without raw delivery) the envelope."""

    body: Any
    attributes: dict[str, str]
    message_id: str
    envelope: dict[str, Any] | None = None


def subscribe_queue(
    sqs: Any,
    sns: Any,
    topic_arn: str,
    queue_name: str,
    *,
    fifo: bool,
    filter_policy: Mapping[str, Any] | None,
    scope: str,
    raw: bool,
) -> str:
    """Create the queue, let the topic send to it and subscribe it, as a partner would; its URL."""
    attributes = {"FifoQueue": "true"} if fifo else {}
    url = sqs.create_queue(QueueName=queue_name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(_sns_may_send(arn, topic_arn))})
    subscription = {"RawMessageDelivery": "true" if raw else "false", "FilterPolicyScope": scope}
    if filter_policy is not None:
        subscription["FilterPolicy"] = json.dumps(filter_policy)
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes=subscription)
    return url


def drain_queue(sqs: Any, url: str, *, delete: bool) -> list[PartnerMessage]:
    """Every visible message of the queue, parsed; deleted unless told not to."""
    drained: list[PartnerMessage] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            return drained
        drained.extend(_partner_message(message) for message in messages)
        if delete:
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )


def _sns_may_send(queue_arn: str, topic_arn: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }


def _partner_message(message: Mapping[str, Any]) -> PartnerMessage:
    body = _json_or_text(message["Body"])
    if isinstance(body, dict) and body.get("Type") == "Notification" and "TopicArn" in body:
        attributes = {name: value["Value"] for name, value in body.get("MessageAttributes", {}).items()}
        return PartnerMessage(_json_or_text(body["Message"]), attributes, message["MessageId"], body)
    attributes = {
        name: value.get("StringValue", "") for name, value in message.get("MessageAttributes", {}).items()
    }
    return PartnerMessage(body, attributes, message["MessageId"])


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
