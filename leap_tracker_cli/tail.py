"""``leap-tracker tail``: the events as they come, through a temporary filtered queue (as Stripe's
``listen`` does for its events), removed on exit.

    leap-tracker tail --policy errors-in-caiso --stack-name leap-connect-tracker
    leap-tracker tail --max-messages 5 --seconds 60      # stop after 5 events or a minute

It subscribes a new queue ``leap-tracker-tail-<random>`` to the events topic with the policy (every
event without one), prints each event on one line of JSON as it arrives, and on exit (the bounds, or
Ctrl-C) unsubscribes and deletes the queue; the last line says how many came. Events published before
it started are not shown: the queue did not exist yet.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

from leap_tracker_cli import subscription
from leap_tracker_cli.discovery import Discovery
from leap_tracker_cli.result import CommandError, Result

NAME = "tail"
HELP = "print the events as they come (through a temporary filtered queue, removed on exit)"
RESOURCES = (subscription.EVENTS_TOPIC,)
LONG_POLL_SECONDS = 20  # SQS's longest wait


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subscription.add_arguments(parser, policy_required=False)
    parser.add_argument("--max-messages", type=int, metavar="N", help="stop after N events")
    parser.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")


def run(args: argparse.Namespace, discovery: Discovery) -> Result:
    for bound in ("max_messages", "seconds"):
        if getattr(args, bound) is not None and getattr(args, bound) < 0:
            raise CommandError(f"--{bound.replace('_', '-')} must not be negative")
    chosen = subscription.chosen_filter(args)
    topic = subscription.events_topic(discovery)
    sqs, sns = subscription.clients(discovery, topic)
    name = f"leap-tracker-tail-{uuid.uuid4().hex[:12]}"
    queue = subscription.subscribe_queue(
        sqs,
        sns,
        topic,
        name,
        chosen,
        fifo=topic.endswith(".fifo"),
        dead_letters=False,
        tags={"leap-tracker": "tail"},  # a queue left by a killed tail is easy to find
    )
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    shown = 0
    try:
        while args.max_messages is None or shown < args.max_messages:
            left = LONG_POLL_SECONDS if deadline is None else max(0.0, deadline - time.monotonic())
            room = 10 if args.max_messages is None else min(10, args.max_messages - shown)
            shown += _show(sqs, queue.url, wait=int(min(left, LONG_POLL_SECONDS)), room=room)
            if deadline is not None and time.monotonic() >= deadline:
                break
    except KeyboardInterrupt:
        pass  # Ctrl-C: the ordinary way to stop
    finally:
        subscription.remove(sqs, sns, queue)
    return Result(
        text=f"{shown} event(s) of {chosen.label}; removed the queue {queue.name} and its subscription",
        document={"events": shown, "filter": chosen.label, "topic_arn": topic, "queue": queue.name},
    )


def _show(sqs: Any, url: str, *, wait: int, room: int) -> int:
    """One (long) receive: each event printed on a line as it comes, then deleted; how many."""
    answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=room, WaitTimeSeconds=wait)
    messages = answer.get("Messages", [])
    for message in messages:
        sys.stdout.write(_one_line(message["Body"]) + "\n")
        sys.stdout.flush()  # as it comes, also into a pipe
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return len(messages)


def _one_line(body: str) -> str:
    try:
        return json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return body  # not JSON: shown as it came
