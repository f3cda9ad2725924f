"""Putting a not-yet-actionable event back on its queue until it is (pure arithmetic, no boto3).

The outreach queue redrives a message to its dead-letter queue after ``maxReceiveCount`` (8)
receives, and every deferral is one receive. A deferral waits exactly until the snapshot is
actionable, so one is normally enough; a customer who keeps interacting could still push an old event
through many. From :data:`HAND_OVER_AT_RECEIVE` on, the event is acknowledged instead and the
customer handed to the follow-up sweep at the same instant: never dropped, never dead-lettered.
"""

from __future__ import annotations

import math
from datetime import datetime

MAX_VISIBILITY_SECONDS = 43_200  # SQS: 12 hours
HAND_OVER_AT_RECEIVE = 6  # < the queue's maxReceiveCount (8, template.yaml): margin for real failures


def visibility_seconds(until: datetime, now: datetime) -> int:
    """How long the message stays invisible: until ``until``, at least 1 s, at most 12 h."""
    return max(1, min(MAX_VISIBILITY_SECONDS, math.ceil((until - now).total_seconds())))


def hand_over_to_sweep(receive_count: int) -> bool:
    return receive_count >= HAND_OVER_AT_RECEIVE


def queue_url(endpoint_url: str, queue_arn: str) -> str:
    """The URL of a queue from its ARN (``arn:<partition>:sqs:<region>:<account>:<name>``)."""
    parts = queue_arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {queue_arn!r}")
    return f"{endpoint_url.rstrip('/')}/{parts[4]}/{parts[5]}"
