"""``leap-tracker redrive QUEUE``: move a dead-letter queue's messages back to the queue they failed in.

    leap-tracker redrive OutreachDeadLetterQueue --stack-name leap-connect-tracker
    leap-tracker redrive https://sqs.eu-west-1.amazonaws.com/123456789012/crm-dead-letter --json

QUEUE is a queue URL, or a logical name of the stack (``OutreachDeadLetterQueue``,
``MeterWatchDeadLetterQueue``, ``OutreachRequestsDeadLetterQueue``, or an output name such as
``OutreachDeadLetterQueueUrl``) found with ``--stack-name`` (else ``$<NAME>_URL``). The source is the
queue whose RedrivePolicy names it (ListDeadLetterSourceQueues; ``--destination`` chooses when several
do). The move is SQS's own message move task (StartMessageMoveTask), followed for ``--wait`` seconds;
where SQS does not offer it, the command moves the messages itself: receive, send to the source, and
delete each message only once its send succeeded.

The emitter failure queue, the scheduled run failure queue and the schedules' dead-letter queues are
not redrive queues: they hold failure records, not messages of a queue. ``replay-failures`` handles
the first; the runbook (docs/operations.md) says what to do with the others.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from typing import Any

from leap_tracker_cli.discovery import Discovery, DiscoveryError, Resource, queue_region
from leap_tracker_cli.queues import receive_until_empty
from leap_tracker_cli.result import CommandError, Result

NAME = "redrive"
HELP = "move a dead-letter queue's messages back to its source queue"
RESOURCES: tuple[Resource, ...] = ()  # the queue is the argument
DEFAULT_WAIT_SECONDS = 60.0
POLL_SECONDS = 2.0
VISIBILITY_SECONDS = 60  # a message whose send failed is left alone this long (and stays in the queue)
MAX_BATCH_BYTES = 262_144  # SendMessageBatch: all messages of one call together
_RUNBOOK = "docs/operations.md"
_SCHEDULE_DLQ = (
    "it holds the schedule's invocations that EventBridge Scheduler could not hand to Lambda: fix the "
    f"cause, run the missed work once and purge the queue ({_RUNBOOK}#a-schedules-dead-letter-queue)"
)
FAILURE_RECORD_QUEUES = {  # logical id -> what to do instead
    "EmitterFailureQueue": (
        "it holds the emitter's on-failure records (where a stream batch was, not its events): "
        f"`leap-tracker replay-failures` republishes those events ({_RUNBOOK}#emitter-failure-queue)"
    ),
    "ScheduledRunFailureQueue": (
        "it holds the invocation records of scheduled runs that failed every retry: run the work again, "
        f"then delete them ({_RUNBOOK}#scheduled-run-failure-queue)"
    ),
    "PollerFunctionHourlyQueue": _SCHEDULE_DLQ,
    "OutreachFunctionFollowUpQueue": _SCHEDULE_DLQ,
    "MeterSweepFunctionHourlyQueue": _SCHEDULE_DLQ,
}
_OUTPUT_NAMES = {  # the stack outputs of those queues whose names differ from the logical id's
    "PollScheduleDeadLetterQueueUrl": "PollerFunctionHourlyQueue",
    "FollowUpScheduleDeadLetterQueueUrl": "OutreachFunctionFollowUpQueue",
    "MeterSweepScheduleDeadLetterQueueUrl": "MeterSweepFunctionHourlyQueue",
}
_UNSUPPORTED = {"UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", "InvalidAction"}
_FINISHED = {"COMPLETED", "CANCELLED", "FAILED"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "queue", metavar="QUEUE", help="the dead-letter queue: a URL, or the stack's logical name"
    )
    parser.add_argument("--destination", metavar="URL", help="the source queue, when several name this one")
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        metavar="S",
        help=f"follow SQS's move task this long (default {DEFAULT_WAIT_SECONDS:g} s)",
    )


def run(args: argparse.Namespace, discovery: Discovery) -> Result:
    url, logical_id = _queue(args.queue, discovery)
    refusal = FAILURE_RECORD_QUEUES.get(logical_id or "")
    if refusal:
        raise CommandError(f"{args.queue} is not a dead-letter queue to redrive: {refusal}")
    sqs = discovery.client("sqs", region_name=queue_region(url))
    arn = _arn(sqs, url)
    sources = _sources(sqs, url)
    if not sources:
        raise CommandError(
            f"{args.queue} is not a dead-letter queue: no queue's RedrivePolicy names it "
            "(ListDeadLetterSourceQueues is empty), so there is nowhere to move its messages back to"
        )
    destination = _destination(args.destination, sources)
    destination_arn = _arn(sqs, destination) if destination else None
    from botocore.exceptions import ClientError  # loaded with boto3 by then

    try:
        task = sqs.start_message_move_task(
            SourceArn=arn, **({"DestinationArn": destination_arn} if destination_arn else {})
        )
    except NotImplementedError:  # moto has no message move task: the emulator's answer
        return _moved_by_hand(sqs, url, destination, sources)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _UNSUPPORTED:
            raise
        return _moved_by_hand(sqs, url, destination, sources)
    return _followed(sqs, arn, task.get("TaskHandle", ""), destination or "each message's source", args.wait)


def _queue(given: str, discovery: Discovery) -> tuple[str, str | None]:
    """(URL, logical id when known) of the QUEUE argument."""
    if re.match(r"^https?://", given):
        name = given.rstrip("/").rsplit("/", 1)[-1]
        # CloudFormation names a queue <stack>-<logical id>-<suffix>: that says which of the stack's it is.
        return given, next((lid for lid in FAILURE_RECORD_QUEUES if f"-{lid}-" in f"-{name}-"), None)
    logical_id = _OUTPUT_NAMES.get(given, given.removesuffix("Url"))
    if logical_id in FAILURE_RECORD_QUEUES:
        return "", logical_id  # refused before any lookup
    variable = re.sub(r"(?<!^)(?=[A-Z])", "_", logical_id).upper() + "_URL"
    resource = Resource(f"the queue {given}", "QUEUE", f"{logical_id}Url", logical_id, variable)
    try:
        return discovery.require(resource).value, logical_id
    except DiscoveryError as exc:
        if discovery.stack_name:
            raise
        raise CommandError(f"{given}: pass its URL, or --stack-name to find it, or set {variable}") from exc


def _arn(sqs: Any, url: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def _sources(sqs: Any, url: str) -> list[str]:
    pages = sqs.get_paginator("list_dead_letter_source_queues").paginate(QueueUrl=url)
    return [source for page in pages for source in page.get("queueUrls", [])]


def _destination(chosen: str | None, sources: Sequence[str]) -> str | None:
    if chosen:
        if chosen not in sources:
            raise CommandError(
                f"--destination {chosen} does not send its failures here; these do: {', '.join(sources)}"
            )
        return chosen
    return sources[0] if len(sources) == 1 else None  # None: SQS returns each message to its source


# --- SQS's move task --------------------------------------------------------------------------------


def _followed(sqs: Any, arn: str, handle: str, destination: str, wait: float) -> Result:
    deadline = time.monotonic() + max(0.0, wait)
    task: dict[str, Any] = {}
    while True:
        tasks = sqs.list_message_move_tasks(SourceArn=arn, MaxResults=1).get("Results", [])
        task = next((t for t in tasks if t.get("TaskHandle", handle) == handle), tasks[0] if tasks else {})
        if task.get("Status") in _FINISHED or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
    state = task.get("Status", "RUNNING")
    document = {
        "method": "message move task",
        "task_handle": handle,
        "status": state,
        "moved": moved,
        "to_move": task.get("ApproximateNumberOfMessagesToMove"),
        "destination": destination,
        "failure_reason": task.get("FailureReason"),
    }
    text = f"moved {moved} message(s) to {destination} (SQS message move task, {state})"
    if state not in _FINISHED:
        text += f"; still running: aws sqs list-message-move-tasks --source-arn {arn}"
    if task.get("FailureReason"):
        text += f"; failed: {task['FailureReason']}"
    return Result(text, document, status=1 if state == "FAILED" else 0)


# --- by hand ----------------------------------------------------------------------------------------


def _moved_by_hand(sqs: Any, url: str, destination: str | None, sources: Sequence[str]) -> Result:
    if destination is None:
        raise CommandError(
            f"several queues send their failures to {url} ({', '.join(sources)}) and SQS offers no move "
            "task here: pass --destination URL"
        )
    moved, not_sent, not_deleted = 0, 0, 0
    given_up: set[str] = set()  # ids whose send failed: they stay in the queue, not tried again now
    batches = receive_until_empty(
        sqs,
        url,
        skip=given_up,
        VisibilityTimeout=VISIBILITY_SECONDS,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
    )
    for batch in batches:
        for chunk in _chunks(batch):
            sent, failed = _send(sqs, destination, chunk)
            given_up.update(m["MessageId"] for m in failed)
            not_sent += len(failed)
            undeleted = _delete(sqs, url, sent)
            not_deleted += undeleted
            moved += len(sent) - undeleted
    document = {
        "method": "receive, send, delete",
        "moved": moved,
        "not_sent": not_sent,
        "sent_not_deleted": not_deleted,
        "destination": destination,
    }
    text = f"moved {moved} message(s) to {destination} (received, sent, then deleted one by one)"
    if not_sent:
        text += f"; {not_sent} could not be sent and stay in {url}"
    if not_deleted:
        text += f"; {not_deleted} were sent but not deleted: they are in both queues"
    return Result(text, document, status=1 if not_sent or not_deleted else 0)


def _chunks(messages: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Messages in calls of at most 10 and 256 KiB (ten received messages may be larger)."""
    chunks: list[list[dict[str, Any]]] = []
    size = 0
    for message in messages:
        length = len(message["Body"].encode()) + sum(
            len(name) + len(str(value.get("StringValue", value.get("BinaryValue", b""))))
            for name, value in message.get("MessageAttributes", {}).items()
        )
        if not chunks or size + length > MAX_BATCH_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(message)
        size += length
    return chunks


def _send(
    sqs: Any, destination: str, messages: Sequence[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(sent, not sent): each message as it was, body and attributes (and a FIFO queue's ids)."""
    fifo = destination.endswith(".fifo")
    entries = []
    for i, message in enumerate(messages):
        entry: dict[str, Any] = {"Id": str(i), "MessageBody": message["Body"]}
        attributes = {
            name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
            for name, value in message.get("MessageAttributes", {}).items()
        }
        if attributes:
            entry["MessageAttributes"] = attributes
        if fifo:
            system = message.get("Attributes", {})
            entry["MessageGroupId"] = system.get("MessageGroupId", "redrive")
            entry["MessageDeduplicationId"] = system.get("MessageDeduplicationId", message["MessageId"])
        entries.append(entry)
    answer = sqs.send_message_batch(QueueUrl=destination, Entries=entries)
    ok = {item["Id"] for item in answer.get("Successful", [])}
    return [m for i, m in enumerate(messages) if str(i) in ok], [
        m for i, m in enumerate(messages) if str(i) not in ok
    ]


def _delete(sqs: Any, url: str, messages: Sequence[dict[str, Any]]) -> int:
    """Delete what was sent; how many could not be."""
    if not messages:
        return 0
    answer = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
    )
    return len(answer.get("Failed", []))
