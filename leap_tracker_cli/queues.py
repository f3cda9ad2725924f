"""Reading a queue to its end, for the commands that work through one (replay-failures, redrive)."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

# Short polls (WaitTimeSeconds 0): a long poll waits in real time, which the local runner's simulated
# clock never lets pass. A short poll samples only some of SQS's servers, so the queue is taken as
# read to its end after this many empty answers in a row.
EMPTY_ANSWERS = 3


def receive_until_empty(
    sqs: Any, url: str, *, limit: int | None = None, skip: Collection[str] = (), **request: Any
) -> Iterator[list[dict[str, Any]]]:
    """The queue's messages, a received batch at a time, until it has nothing more (or ``limit``
    messages were yielded). Messages whose id is in ``skip`` (a set the caller may grow) are left out."""
    empty = taken = 0
    while empty < EMPTY_ANSWERS and (limit is None or taken < limit):
        room = 10 if limit is None else min(10, limit - taken)
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=room, WaitTimeSeconds=0, **request)
        fresh = [m for m in answer.get("Messages", []) if m["MessageId"] not in skip]
        if not fresh:
            empty += 1
            continue
        empty, taken = 0, taken + len(fresh)
        yield fresh
