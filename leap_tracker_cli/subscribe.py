"""``leap-tracker subscribe``: a queue of yours subscribed to the events topic, for partners who prefer
a command to a second stack (subscriber/template.yaml also adds the alarms and the sample consumer).

    leap-tracker subscribe --policy completions --queue-name crm-completions --stack-name leap-connect-tracker
    leap-tracker subscribe --policy-file mine.json --scope MessageBody --queue-name crm --topic-arn arn:...

It creates the queue (``--fifo``: FIFO queues, for a FIFO events topic), its two dead-letter queues
(``<name>-dead-letter`` after 5 failed receives, ``<name>-undelivered`` for what SNS cannot deliver),
a policy letting only the topic send (TLS only) and the raw-delivery subscription with the policy.
Without ``--policy`` or ``--policy-file`` the queue receives every event.
"""

from __future__ import annotations

import argparse

from leap_tracker_cli import subscription
from leap_tracker_cli.discovery import Discovery
from leap_tracker_cli.result import Result

NAME = "subscribe"
HELP = "create a queue subscribed to the events topic with a filter policy (and its dead-letter queues)"
RESOURCES = (subscription.EVENTS_TOPIC,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subscription.add_arguments(parser, policy_required=False)
    parser.add_argument("--queue-name", required=True, metavar="NAME", help="the queue to create")
    parser.add_argument("--fifo", action="store_true", help="FIFO queues (the events topic is FIFO)")


def run(args: argparse.Namespace, discovery: Discovery) -> Result:
    chosen = subscription.chosen_filter(args)
    topic = subscription.events_topic(discovery)
    sqs, sns = subscription.clients(discovery, topic)
    made = subscription.subscribe_queue(
        sqs, sns, topic, args.queue_name, chosen, fifo=args.fifo, dead_letters=True
    )
    text = "\n".join(
        [
            f"{made.name} receives {chosen.label} from {topic}",
            f"  queue:        {made.url}",
            *(f"  dead letters: {url}" for url in made.dead_letter_urls),
            f"  subscription: {made.subscription_arn}",
        ]
    )
    return Result(text=text, document={"filter": chosen.label, "topic_arn": topic, **made.document()})
