"""What ``subscribe`` and ``tail`` share: the events topic, a filter policy (a ready one by name, or a
file), and a queue subscribed to the topic the way subscriber/template.yaml subscribes one.

The queue is encrypted (SQS-managed keys) and TLS only, only the events topic may send to it, the
subscription delivers raw with the filter policy and its scope; with dead-letter queues, a message
failed ``maxReceiveCount`` times moves to ``<name>-dead-letter`` and events SNS cannot deliver go to
``<name>-undelivered`` (the subscription's redrive policy). Alarms and a consumer are the template's
(docs/events.md#subscribing).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leap_tracker.config import VARIABLES, Settings
from leap_tracker_cli.discovery import Discovery, Resource, arn_region
from leap_tracker_cli.result import CommandError
from subscriber.filter_policies import SCOPES, named_policies

EVENTS_TOPIC = Resource(
    what="the events topic",
    flag="--topic-arn",
    output="EventsTopicArn",
    logical_id="EventsTopic",
    variable=VARIABLES[Settings]["events_topic_arn"].name,  # EVENTS_TOPIC_ARN
)
MAX_RECEIVE_COUNT = 5  # as the template's queue
RETENTION_SECONDS = "1209600"  # 14 days, as the template's queues


@dataclass(frozen=True, slots=True)
class Filter:
    label: str  # the ready policy's name, or the file's path
    scope: str
    policy: dict[str, Any] | None  # None: every event


@dataclass(frozen=True, slots=True)
class SubscribedQueue:
    name: str
    url: str
    arn: str
    subscription_arn: str
    dead_letter_urls: tuple[str, ...]  # the queue's and the subscription's, when made

    def document(self) -> dict[str, Any]:
        return {
            "queue_url": self.url,
            "queue_arn": self.arn,
            "subscription_arn": self.subscription_arn,
            "dead_letter_queue_urls": list(self.dead_letter_urls),
        }


def add_arguments(parser: argparse.ArgumentParser, *, policy_required: bool) -> None:
    which = parser.add_mutually_exclusive_group(required=policy_required)
    which.add_argument(
        "--policy",
        metavar="NAME",
        choices=list(named_policies()),
        help=f"a ready filter policy of docs/events.md: {', '.join(named_policies())}",
    )
    which.add_argument("--policy-file", type=Path, metavar="FILE", help="your own filter policy (JSON)")
    parser.add_argument(
        "--scope",
        choices=SCOPES,
        help="what --policy-file filters on (default MessageAttributes; a ready policy has its own)",
    )
    parser.add_argument(
        EVENTS_TOPIC.flag,
        metavar="ARN",
        help=f"the events topic (default: the stack's with --stack-name, else ${EVENTS_TOPIC.variable})",
    )


def chosen_filter(args: argparse.Namespace) -> Filter:
    if args.policy is not None:
        if args.scope is not None:
            raise CommandError(f"--scope is for --policy-file: {args.policy} filters on its own scope")
        ready = named_policies()[args.policy]
        return Filter(ready.name, ready.scope, ready.policy)
    if args.policy_file is None:
        return Filter("every event", "MessageAttributes", None)
    try:
        policy = json.loads(args.policy_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(f"--policy-file {args.policy_file}: {exc}") from None
    if not isinstance(policy, dict) or not policy:
        raise CommandError(f"--policy-file {args.policy_file}: a filter policy is a non-empty JSON object")
    return Filter(str(args.policy_file), args.scope or "MessageAttributes", policy)


def events_topic(discovery: Discovery) -> str:
    return discovery.require(EVENTS_TOPIC).value


def clients(discovery: Discovery, topic_arn: str) -> tuple[Any, Any]:
    """(sqs, sns): the queue in your region, the subscription made in the topic's."""
    return discovery.client("sqs"), discovery.client("sns", region_name=arn_region(topic_arn))


def subscribe_queue(
    sqs: Any,
    sns: Any,
    topic_arn: str,
    name: str,
    chosen: Filter,
    *,
    fifo: bool,
    dead_letters: bool,
    tags: dict[str, str] | None = None,
) -> SubscribedQueue:
    """Create the queue (and its dead-letter queues), let only the topic send, subscribe it."""
    suffix = ".fifo" if fifo else ""
    base = name.removesuffix(".fifo")
    attributes = {"SqsManagedSseEnabled": "true", "MessageRetentionPeriod": RETENTION_SECONDS}
    if fifo:
        attributes["FifoQueue"] = "true"
    dead_letter = undelivered = None
    if dead_letters:
        dead_letter = _queue(sqs, f"{base}-dead-letter{suffix}", attributes, tags)
        undelivered = _queue(sqs, f"{base}-undelivered{suffix}", attributes, tags)
        redrive = {"deadLetterTargetArn": dead_letter[1], "maxReceiveCount": MAX_RECEIVE_COUNT}
        queue = _queue(sqs, f"{base}{suffix}", attributes | {"RedrivePolicy": json.dumps(redrive)}, tags)
    else:
        queue = _queue(sqs, f"{base}{suffix}", attributes, tags)
    sendable = [queue[1], *([undelivered[1]] if undelivered else [])]
    every = [queue, *(q for q in (dead_letter, undelivered) if q)]
    policy = json.dumps(_queue_policy(topic_arn, sendable, [arn for _, arn in every]))
    for url, _ in every:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": policy})
    subscription = {"RawMessageDelivery": "true"}
    if chosen.policy is not None:
        subscription |= {"FilterPolicyScope": chosen.scope, "FilterPolicy": json.dumps(chosen.policy)}
    if undelivered:
        subscription["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": undelivered[1]})
    arn = sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue[1],
        Attributes=subscription,
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    return SubscribedQueue(f"{base}{suffix}", queue[0], queue[1], arn, tuple(url for url, _ in every[1:]))


def remove(sqs: Any, sns: Any, subscribed: SubscribedQueue) -> None:
    """Unsubscribe, then delete the queue and its dead-letter queues."""
    sns.unsubscribe(SubscriptionArn=subscribed.subscription_arn)
    for url in (subscribed.url, *subscribed.dead_letter_urls):
        sqs.delete_queue(QueueUrl=url)


def _queue(sqs: Any, name: str, attributes: dict[str, str], tags: dict[str, str] | None) -> tuple[str, str]:
    tagged = {"tags": tags} if tags else {}  # tagging needs sqs:TagQueue: only when asked
    url = sqs.create_queue(QueueName=name, Attributes=attributes, **tagged)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _queue_policy(topic_arn: str, sendable: list[str], queues: list[str]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EventsTopicSends",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": sendable,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            },
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:*",
                "Resource": queues,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }
