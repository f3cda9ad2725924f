"""``leap-tracker replay-failures``: republish what the emitter failure queue says was not published.

    leap-tracker replay-failures --stack-name leap-connect-tracker --dry-run
    leap-tracker replay-failures --stack-name leap-connect-tracker

Each message of the queue is Lambda's on-failure record of a stream batch the emitter gave up on
(``DDBStreamBatchInfo``: stream, shard, first and last sequence number, arrival times): where the
records were, not their data. For each message:

1. The emitter's failure markers whose sort key lies in the batch's sequence-number range name the
   records it failed on, each as (entry id, sequence).
2. No marker: the stream itself, while it still has the records (24 hours): read from the first
   sequence number (``AT_SEQUENCE_NUMBER``) to the last, keep what the emitter's filter passes
   (INSERT/MODIFY of a ``CONN#`` item), and take each one's (entry id, sequence) from its keys and
   new image. The stream no longer has them: the message is kept, and the answer gives the
   ``leap-tracker replay`` window (the batch's arrival times) that republishes them from the history.
3. Each (entry id, sequence) is read from the stored history and its events derived with the
   emitter's rules, then published to the events topic in sequence order per entry, with the ids the
   first attempt had. A history item that is missing or unreadable keeps the message (that entry is
   not published from it, so its order holds) and is reported with the entry's pseudonym.
4. Once every event of an entry was accepted, its markers are deleted; once every event of the
   message was accepted, the message is deleted. Anything else keeps the message, visible again at
   once, and the exit status is 1.

``--dry-run`` reads and reports, publishes and deletes nothing.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from leap_tracker import table
from leap_tracker.events.diff import DiffRules
from leap_tracker.events.publishing import MessagePublisher, OutgoingMessage
from leap_tracker.privacy import Pseudonyms, excerpt
from leap_tracker.timeutil import format_instant, parse_instant
from leap_tracker_cli import sending
from leap_tracker_cli.discovery import Discovery, Resource, add_flag, arn_region, queue_region
from leap_tracker_cli.function_settings import EMITTER_FUNCTION, function_settings
from leap_tracker_cli.hash import KEY_SECRET, stack_pseudonyms
from leap_tracker_cli.queues import receive_until_empty
from leap_tracker_cli.result import Result
from leap_tracker_cli.stored import TABLE, Marker, StoredTable
from leap_tracker_cli.subscription import EVENTS_TOPIC

NAME = "replay-failures"
HELP = "republish the events of the emitter failure queue's batches (markers, stream, history)"
EMITTER_FAILURE_QUEUE = Resource(
    what="the emitter failure queue",
    flag="--queue-url",
    output="EmitterFailureQueueUrl",
    logical_id="EmitterFailureQueue",
    variable="EMITTER_FAILURE_QUEUE_URL",  # set by hand: no function reads it
)
RESOURCES = (EMITTER_FAILURE_QUEUE, TABLE, EVENTS_TOPIC, EMITTER_FUNCTION, KEY_SECRET)
VISIBILITY_SECONDS = 900  # the messages stay ours while the command works; kept ones are released after
STREAM_PAGES = 100  # GetRecords calls for one batch at most (1000 records or 1 MB each)
STREAM_EMPTY_PAGES = 5  # empty answers in a row before the shard is taken as read to its end
REPLAY_MARGIN = timedelta(minutes=1)  # written_at is the poller's clock, arrival times are approximate
_STREAM_GONE = {"TrimmedDataAccessException", "ResourceNotFoundException", "ExpiredIteratorException"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="report what would be republished; change nothing"
    )
    parser.add_argument(
        "--max-messages", type=int, metavar="N", help="handle at most N messages of the queue"
    )
    for resource in RESOURCES:
        add_flag(parser, resource, "URL" if resource is EMITTER_FAILURE_QUEUE else "NAME")


@dataclass(slots=True)
class Outcome:
    """What happened to one failure message."""

    message_id: str
    batch: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # "markers" or "stream"
    changes: int = 0
    events: int = 0
    published: int = 0
    markers_deleted: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    todo: str | None = None  # what the operator must do when it is kept

    @property
    def complete(self) -> bool:
        """Every event of the batch is out (a dry run: can be): the message may go."""
        return self.source is not None and self.todo is None and not self.problems

    def document(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "batch": self.batch,
            "source": self.source,
            "changes": self.changes,
            "events": self.events,
            "published": self.published,
            "markers_deleted": self.markers_deleted,
            "problems": self.problems,
            "complete": self.complete,
            "todo": self.todo,
        }


@dataclass(frozen=True, slots=True)
class _Context:
    store: StoredTable
    discovery: Discovery
    rules: DiffRules
    pseudonyms: Pseudonyms
    publisher: MessagePublisher | None  # None: a dry run


def run(args: argparse.Namespace, discovery: Discovery) -> Result:
    queue = discovery.require(EMITTER_FAILURE_QUEUE).value
    store = StoredTable(discovery.client("dynamodb"), discovery.require(TABLE).value)
    topic = discovery.require(EVENTS_TOPIC).value
    emitter = function_settings(discovery, EMITTER_FUNCTION)
    pseudonyms = stack_pseudonyms(discovery)[0]
    publisher = None
    if not args.dry_run:
        sns = discovery.client("sns", region_name=arn_region(topic))
        publisher = sending.topic_publisher(sns, topic, pseudonyms)
    context = _Context(store, discovery, emitter.rules, pseudonyms, publisher)
    sqs = discovery.client("sqs", region_name=queue_region(queue))
    messages = _receive_all(sqs, queue, args.max_messages)
    outcomes, kept = [], []
    try:
        for message in messages:
            outcome = _handle(message, context)
            outcomes.append(outcome)
            if not args.dry_run and outcome.complete:  # only after all its events were accepted
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
            else:
                kept.append(message)
    finally:
        _release(sqs, queue, kept + messages[len(outcomes) :])  # visible again now, not in 15 minutes
    document = {
        "queue_url": queue,
        "topic_arn": topic,
        "dry_run": args.dry_run,
        "rules": emitter.rules_document(),
        "messages": len(outcomes),
        "deleted": 0 if args.dry_run else sum(o.complete for o in outcomes),
        "kept": len(outcomes) if args.dry_run else len(kept),
        "outcomes": [o.document() for o in outcomes],
    }
    failed = not args.dry_run and bool(kept)
    return Result(_text(document), document, status=1 if failed else 0)


# --- one message ------------------------------------------------------------------------------------


def _handle(message: Mapping[str, Any], context: _Context) -> Outcome:
    outcome = Outcome(message_id=str(message.get("MessageId", "")))
    try:
        body = json.loads(message["Body"])
        info = body["DDBStreamBatchInfo"]
        first, last = str(info["startSequenceNumber"]), str(info["endSequenceNumber"])
        for number in (first, last):
            table.stream_sequence_sort_key(number)  # raises ValueError unless 1 to 40 digits
    except (KeyError, TypeError, ValueError) as exc:
        outcome.todo = (
            f"not an emitter on-failure record ({type(exc).__name__}: {excerpt(str(exc))}): look at it"
        )
        return outcome
    outcome.batch = _batch_document(body, info)
    markers = context.store.markers_between(first, last)
    if markers:
        outcome.source = "markers"
        wanted, unusable = _marked(markers)
        outcome.problems += unusable
    else:
        outcome.source = "stream"
        found = _from_stream(context.discovery, info)
        if found is None:
            outcome.todo = _replay_advice(info)
            return outcome
        wanted = found
    _republish(wanted, markers, outcome, context)
    if outcome.problems and outcome.todo is None:
        outcome.todo = (
            "some changes cannot be republished from the history (listed): if the entry changed since, "
            "its newer events carry its state; then delete this message (aws sqs delete-message)"
        )
    return outcome


def _marked(markers: Sequence[Marker]) -> tuple[list[tuple[str, int]], list[dict[str, Any]]]:
    wanted = sorted({(m.entry_id, m.sequence) for m in markers if m.entry_id and m.sequence})
    unusable = [
        {"marker": m.sort_key, "reason": "the marker names no entry id or sequence"}
        for m in markers
        if not (m.entry_id and m.sequence)
    ]
    return wanted, unusable


def _republish(
    wanted: Sequence[tuple[str, int]], markers: Sequence[Marker], outcome: Outcome, context: _Context
) -> None:
    """Read each change, publish the entries whose changes can all be read, delete what is done."""
    by_entry: dict[str, list[list[OutgoingMessage]]] = {}
    blocked: set[str] = set()
    for entry_id, sequence in sorted(wanted):
        problem, messages = _change_messages(context, entry_id, sequence)
        outcome.changes += 1
        if problem is not None:
            shown = context.pseudonyms.redact(problem, entry_ids=[entry_id])
            outcome.problems.append(
                {"entry": context.pseudonyms.entry(entry_id), "sequence": sequence, "reason": shown}
            )
            blocked.add(entry_id)
            continue
        by_entry.setdefault(entry_id, []).append(messages)
    ready = [entry_id for entry_id in sorted(by_entry) if entry_id not in blocked]
    records = [record for entry_id in ready for record in by_entry[entry_id] if record]
    outcome.events = sum(len(record) for record in records)
    if context.publisher is None:  # a dry run
        return
    sent = sending.send(records, context.publisher)
    outcome.published = sent.published
    done = _entries_published(ready, by_entry, sent.records_published)
    for marker in markers:
        if marker.entry_id in done:
            context.store.delete(marker.key)
            outcome.markers_deleted += 1
    if sent.unsent:
        outcome.problems.append(
            {"reason": f"{sent.unsent} event(s) not accepted by the topic", "failures": sent.failures}
        )


def _change_messages(
    context: _Context, entry_id: str, sequence: int
) -> tuple[str | None, list[OutgoingMessage]]:
    change = context.store.history_item(entry_id, sequence)
    if change is None:
        return "its history item is missing (expired after HISTORY_RETENTION_DAYS, or never written)", []
    if change.problem is not None:
        return f"its history item cannot be read: {change.problem}", []
    try:
        return None, sending.change_messages(change, context.rules)
    except (KeyError, ValueError, TypeError) as exc:
        return f"its entry cannot be diffed: {type(exc).__name__}: {excerpt(str(exc))}", []


def _entries_published(
    ready: Sequence[str], by_entry: Mapping[str, Sequence[Sequence[OutgoingMessage]]], records_published: int
) -> set[str]:
    """The entries all of whose (non-empty) records are among the first ``records_published``."""
    done, position = set(), 0
    for entry_id in ready:
        position += sum(1 for record in by_entry[entry_id] if record)
        if position <= records_published:
            done.add(entry_id)
    return done


# --- the stream -------------------------------------------------------------------------------------


def _from_stream(discovery: Discovery, info: Mapping[str, Any]) -> list[tuple[str, int]] | None:
    """The batch's (entry id, sequence) pairs from the stream; None when it no longer has them all."""
    from botocore.exceptions import ClientError  # loaded with boto3 by then

    first, last = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
    streams = discovery.client("dynamodbstreams", region_name=arn_region(str(info.get("streamArn", ""))))
    try:
        iterator = streams.get_shard_iterator(
            StreamArn=info["streamArn"],
            ShardId=info["shardId"],
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=str(info["startSequenceNumber"]),
        )["ShardIterator"]
        return _read_batch(streams, iterator, first, last, int(info.get("batchSize") or 0))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _STREAM_GONE:
            return None
        raise


def _read_batch(
    streams: Any, iterator: str | None, first: int, last: int, size: int
) -> list[tuple[str, int]] | None:
    """The snapshot writes from ``first`` to ``last``; None when the stream no longer starts at
    ``first`` (trimmed) or ends before ``last`` (a closed shard, or nothing more to read)."""
    from leap_tracker.adapters.dynamo import deserialize  # boto3 on first use

    found: list[tuple[str, int]] = []
    started, empty = False, 0
    for _ in range(STREAM_PAGES):
        if not iterator:
            return None
        answer = streams.get_records(ShardIterator=iterator, Limit=1000)
        records = answer.get("Records", [])
        for record in records:
            number = int(record["dynamodb"]["SequenceNumber"])
            if not started and number != first:
                return None
            started = True
            if number > last:
                return found if len(found) >= size else None
            pair = _snapshot_write(record, deserialize)
            if pair is not None:
                found.append(pair)
            if number == last:
                return found if len(found) >= size else None
        empty = 0 if records else empty + 1
        if empty >= STREAM_EMPTY_PAGES:
            return None
        iterator = answer.get("NextShardIterator")
    return None


def _snapshot_write(record: Mapping[str, Any], deserialize: Any) -> tuple[str, int] | None:
    """(entry id, sequence) of a record the emitter's filter passes (INSERT/MODIFY of a CONN# item)."""
    if record.get("eventName") not in ("INSERT", "MODIFY"):
        return None
    keys = deserialize(record["dynamodb"].get("Keys") or {})
    pk = str(keys.get(table.PK, ""))
    if not pk.startswith(table.CONNECTION_PREFIX):
        return None
    image = deserialize(record["dynamodb"].get("NewImage") or {})
    sequence = image.get(table.CONN_SEQUENCE)
    if sequence is None:
        return None
    return table.entry_id_from_pk(pk), int(sequence)


def _replay_advice(info: Mapping[str, Any]) -> str:
    try:
        since = parse_instant(str(info["approximateArrivalOfFirstRecord"])) - REPLAY_MARGIN
        until = parse_instant(str(info["approximateArrivalOfLastRecord"])) + REPLAY_MARGIN
    except (KeyError, ValueError):
        return "the stream no longer has these records, no marker names them, and the message has no times"
    return (
        "the stream no longer has these records and no marker names them: republish the changes stored "
        f"while they arrived, `leap-tracker replay --since {format_instant(since)} --until "
        f"{format_instant(until)} --to-topic` (with your --stack-name; the same event ids, so consumers "
        "that deduplicate see no double), then delete this message (aws sqs delete-message)"
    )


def _batch_document(body: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "condition": (body.get("requestContext") or {}).get("condition"),
        "first_sequence_number": info.get("startSequenceNumber"),
        "last_sequence_number": info.get("endSequenceNumber"),
        "batch_size": info.get("batchSize"),
        "first_arrival": info.get("approximateArrivalOfFirstRecord"),
        "last_arrival": info.get("approximateArrivalOfLastRecord"),
        "shard_id": info.get("shardId"),
    }


# --- the queue --------------------------------------------------------------------------------------


def _receive_all(sqs: Any, queue: str, limit: int | None) -> list[dict[str, Any]]:
    """Every message of the queue (or the first ``limit``), each kept invisible while we work."""
    batches = receive_until_empty(sqs, queue, limit=limit, VisibilityTimeout=VISIBILITY_SECONDS)
    return [message for batch in batches for message in batch]


def _release(sqs: Any, queue: str, messages: Sequence[Mapping[str, Any]]) -> None:
    for start in range(0, len(messages), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(messages[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=queue, Entries=entries)


# --- text -------------------------------------------------------------------------------------------


def _text(d: Mapping[str, Any]) -> str:
    verb = "would republish" if d["dry_run"] else "republished"
    lines = [f"{d['messages']} failure message(s) in {d['queue_url']}"]
    for o in d["outcomes"]:
        batch = o["batch"]
        where = (
            f"records {batch.get('first_sequence_number')}..{batch.get('last_sequence_number')}"
            if batch
            else "?"
        )
        done = o["events"] if d["dry_run"] else o["published"]
        fate = (
            ("would be deleted" if o["complete"] else "kept")
            if d["dry_run"]
            else ("deleted" if o["complete"] else "kept")
        )
        lines.append(
            f"  {o['message_id']} ({batch.get('condition') or '?'}, {where}): {o['changes']} change(s) "
            f"from {o['source'] or '-'}, {verb} {done} of {o['events']} event(s), "
            f"{o['markers_deleted']} marker(s) deleted, message {fate}"
        )
        lines += [f"    problem: {_problem(p)}" for p in o["problems"]]
        if o["todo"]:
            lines.append(f"    to do: {o['todo']}")
    lines.append(
        f"rules: actionable delay {d['rules']['actionable_delay_minutes']} min (from {d['rules']['source']})"
    )
    return "\n".join(lines)


def _problem(problem: Mapping[str, Any]) -> str:
    if "entry" in problem:
        return f"{problem['entry']} change {problem['sequence']}: {problem['reason']}"
    if "marker" in problem:
        return f"marker {problem['marker']}: {problem['reason']}"
    return str(problem["reason"])
