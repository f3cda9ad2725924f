"""Lambda's event source mappings, played against moto: a DynamoDB stream poller and an SQS poller.

Each mapping's :meth:`step` delivers at most one batch and says whether it did anything; the
:class:`~devtools.local_runner.cloud.LocalCloud` repeats steps until every mapping is idle.

DynamoDB stream (one shard, as moto has): records are read in order; records the FilterCriteria do
not match are skipped; batches hold up to BatchSize matching records. A batch that fails is retried
before anything behind it (per-shard order). With ``ReportBatchItemFailures`` the retry starts at the
lowest reported sequence number (everything before it is done); an exception or an invalid report
fails the whole batch. ``BisectBatchOnFunctionError`` splits a failed batch in halves, which does not
use up retries. After ``MaximumRetryAttempts`` retries, or once records are older than
``MaximumRecordAgeInSeconds``, the batch's location goes to the ``OnFailure`` destination and the
shard moves on.

SQS: up to BatchSize visible messages are received; those the FilterCriteria do not match are deleted
(as Lambda does); the others are delivered. Successes are deleted; failures (an exception: all; with
``ReportBatchItemFailures``: the reported ones) stay in flight until their visibility timeout, on the
simulated clock, and moto moves them to the dead-letter queue after ``maxReceiveCount`` receives.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from devtools.local_runner import shapes
from devtools.local_runner.lambda_runtime import LocalFunction
from devtools.local_runner.patterns import matches_any, parse_filter_criteria

REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"
SQS_RECEIVE_LIMIT = 10  # ReceiveMessage returns at most 10 messages a call


@dataclass(frozen=True)
class Outcome:
    """What one invocation did: a result, or the exception it raised."""

    result: Any = None
    error: BaseException | None = None


# (function, event, source) -> outcome; the cloud records and counts the invocation
Invoker = Callable[[LocalFunction, dict[str, Any], str], Outcome]


def reported_failures(outcome: Outcome, identifiers: Sequence[str]) -> list[str] | None:
    """The failed item identifiers of a partial batch response, or None when the whole batch failed.

    Like Lambda: an exception, or a response naming an empty/unknown identifier, fails the whole
    batch; a missing or empty ``batchItemFailures`` means full success.
    """
    if outcome.error is not None:
        return None
    result = outcome.result
    if not isinstance(result, dict) or not result.get("batchItemFailures"):
        return []
    known = set(identifiers)
    failed = []
    for item in result["batchItemFailures"]:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in known:
            return None
        failed.append(identifier)
    return failed


@dataclass
class _Batch:
    records: list[dict[str, Any]]
    invocations: int = 0  # how many times these records were sent to the function
    last_error: bool = False


@dataclass
class StreamMapping:
    """An AWS::Lambda::EventSourceMapping on a DynamoDB stream."""

    logical_id: str
    function: LocalFunction
    stream_arn: str
    properties: dict[str, Any]
    streams: Any  # boto3 dynamodbstreams client (runner plumbing)
    send_on_failure: Callable[[str, dict[str, Any]], None]
    now: Callable[[], datetime]
    region: str
    shard_id: str = ""
    _iterator: str | None = None
    _buffer: deque[dict[str, Any]] = field(default_factory=deque)
    _work: deque[_Batch] = field(default_factory=deque)
    filtered_out: int = 0
    sent_to_on_failure: int = 0

    def __post_init__(self) -> None:
        self.batch_size = int(self.properties.get("BatchSize", 100))
        self.max_retries = int(self.properties.get("MaximumRetryAttempts", -1))
        self.max_record_age = int(self.properties.get("MaximumRecordAgeInSeconds", -1))
        self.bisect = bool(self.properties.get("BisectBatchOnFunctionError", False))
        self.partial = REPORT_BATCH_ITEM_FAILURES in self.properties.get("FunctionResponseTypes", [])
        self.patterns = parse_filter_criteria(self.properties.get("FilterCriteria"))
        self.on_failure = self.properties.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        self.enabled = bool(self.properties.get("Enabled", True))
        description = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        self.shard_id = description["Shards"][0]["ShardId"]
        position = self.properties.get("StartingPosition", "TRIM_HORIZON")
        self._iterator = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=self.shard_id, ShardIteratorType=position
        )["ShardIterator"]

    def step(self, invoke: Invoker) -> bool:
        if not self.enabled:
            return False
        if not self._work:
            self._read_stream()
            if not self._buffer:
                return False
            take = min(self.batch_size, len(self._buffer))
            self._work.append(_Batch([self._buffer.popleft() for _ in range(take)]))
        self._process(self._work.popleft(), invoke)
        return True

    @property
    def idle(self) -> bool:
        return not self._work and not self._buffer

    def _read_stream(self) -> None:
        while True:
            answer = self.streams.get_records(ShardIterator=self._iterator, Limit=1000)
            self._iterator = answer["NextShardIterator"]
            records = answer["Records"]
            if not records:
                return
            for raw in records:
                record = shapes.stream_record(raw, self.stream_arn, self.region)
                if matches_any(self.patterns, record):
                    self._buffer.append(record)
                else:
                    self.filtered_out += 1

    def _process(self, batch: _Batch, invoke: Invoker) -> None:
        batch = self._drop_expired(batch)
        if not batch.records:
            return
        outcome = invoke(self.function, {"Records": batch.records}, "stream")
        batch.invocations += 1
        if self.partial:
            sequence_numbers = [record["dynamodb"]["SequenceNumber"] for record in batch.records]
            failed = reported_failures(outcome, sequence_numbers)
        else:
            failed = None if outcome.error is not None else []
        if failed == []:
            return
        if failed is not None:
            # Checkpoint before the lowest failed record; retry from there.
            lowest = min(sequence_numbers.index(identifier) for identifier in failed)
            self._retry(_Batch(batch.records[lowest:], batch.invocations, last_error=False))
            return
        batch.last_error = True
        if self.bisect and len(batch.records) > 1:
            middle = len(batch.records) // 2
            # Halves go first, in order; splitting does not consume the retry quota.
            self._work.appendleft(_Batch(batch.records[middle:], batch.invocations - 1, True))
            self._work.appendleft(_Batch(batch.records[:middle], batch.invocations - 1, True))
            return
        self._retry(batch)

    def _retry(self, batch: _Batch) -> None:
        retries_used = batch.invocations - 1
        if self.max_retries >= 0 and retries_used >= self.max_retries:
            self._discard(batch, "RetryAttemptsExhausted")
        else:
            self._work.appendleft(batch)

    def _drop_expired(self, batch: _Batch) -> _Batch:
        if self.max_record_age < 0:
            return batch
        oldest_allowed = self.now().timestamp() - self.max_record_age
        expired = [r for r in batch.records if r["dynamodb"]["ApproximateCreationDateTime"] < oldest_allowed]
        if expired:
            self._discard(_Batch(expired, batch.invocations, batch.last_error), "RecordAgeExceeded")
        fresh = [r for r in batch.records if r["dynamodb"]["ApproximateCreationDateTime"] >= oldest_allowed]
        return _Batch(fresh, batch.invocations, batch.last_error)

    def _discard(self, batch: _Batch, condition: str) -> None:
        self.sent_to_on_failure += len(batch.records)
        if self.on_failure is None:
            return  # Lambda drops the records when no destination is configured
        record = shapes.stream_on_failure_record(
            records=batch.records,
            shard_id=self.shard_id,
            stream_arn=self.stream_arn,
            function_arn=self.function.arn,
            condition=condition,
            invoke_count=batch.invocations,
            function_error=batch.last_error,
            now=self.now(),
        )
        self.send_on_failure(self.on_failure, record)


@dataclass
class SqsMapping:
    """An AWS::Lambda::EventSourceMapping on an SQS queue."""

    logical_id: str
    function: LocalFunction
    queue_arn: str
    queue_url: str
    properties: dict[str, Any]
    sqs: Any  # boto3 sqs client (runner plumbing)
    region: str
    filtered_out: int = 0

    def __post_init__(self) -> None:
        self.batch_size = int(self.properties.get("BatchSize", 10))
        self.partial = REPORT_BATCH_ITEM_FAILURES in self.properties.get("FunctionResponseTypes", [])
        self.patterns = parse_filter_criteria(self.properties.get("FilterCriteria"))
        self.enabled = bool(self.properties.get("Enabled", True))

    def step(self, invoke: Invoker) -> bool:
        if not self.enabled:
            return False
        messages = self._receive()
        if not messages:
            return False
        records = [shapes.sqs_record(message, self.queue_arn, self.region) for message in messages]
        kept, dropped = [], []
        for record in records:
            passes = matches_any(self.patterns, shapes.filterable_sqs_record(record))
            (kept if passes else dropped).append(record)
        self.filtered_out += len(dropped)
        self._delete(dropped)
        if not kept:
            return True
        outcome = invoke(self.function, {"Records": kept}, "sqs")
        if self.partial:
            failed = reported_failures(outcome, [record["messageId"] for record in kept])
        else:
            failed = None if outcome.error is not None else []
        if failed is not None:
            self._delete([record for record in kept if record["messageId"] not in failed])
        return True

    def _receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while len(messages) < self.batch_size:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(SQS_RECEIVE_LIMIT, self.batch_size - len(messages)),
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,  # the clock is frozen: a long poll would never end
            )
            received = answer.get("Messages", [])
            if not received:
                break
            messages.extend(received)
        return messages

    def _delete(self, records: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(records), SQS_RECEIVE_LIMIT):
            chunk = records[start : start + SQS_RECEIVE_LIMIT]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)],
            )
