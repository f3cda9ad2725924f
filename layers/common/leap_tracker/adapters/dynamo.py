"""The DynamoDB plumbing every store shares, written once: batch reads and writes, their retries,
the condition-failed check and AttributeValue (de)serialisation.

BatchGetItem takes 100 keys a call and BatchWriteItem 25 items; either may leave part of a call
unprocessed (throttling), and DynamoDB's advice is to send that part again after a backoff. Here that
is ONE bounded policy (:class:`BatchRetryPolicy`: capped exponential backoff, full jitter): what is
still unprocessed after its last attempt raises, never reads as "absent" or "written".

Items are AttributeValue maps. The poller builds its own by hand (``_s``/``_n`` in
``poller_store``: the cheapest in CPU, and explicit about sizes); the other stores go through
:func:`serialize` and :func:`deserialize` (boto3's TypeSerializer/TypeDeserializer).
"""

from __future__ import annotations

import base64
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypedDict, Unpack

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from leap_tracker.adapters.aws import error_code
from leap_tracker.timeutil import parse_instant

BATCH_GET_LIMIT = 100  # keys per BatchGetItem call
BATCH_WRITE_LIMIT = 25  # requests per BatchWriteItem call
CONDITION_FAILED = "ConditionalCheckFailedException"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class UnprocessedReads(RuntimeError):
    """DynamoDB still had not answered some keys after every retry."""


class UnprocessedWrites(RuntimeError):
    """DynamoDB still had not taken some items after every retry (throttling that outlasted backoff)."""


@dataclass(frozen=True, slots=True)
class BatchRetryPolicy:
    """How often, and how patiently, a batch call's unprocessed part is sent again."""

    max_attempts: int = 8  # calls in all, the first one included
    base_seconds: float = 0.05
    cap_seconds: float = 5.0

    def delay(self, attempt: int, draw: Callable[[], float]) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)] (``draw`` is uniform in [0, 1))."""
        return draw() * min(self.cap_seconds, self.base_seconds * 2**attempt)


class BatchTiming(TypedDict, total=False):
    """How a store's batch calls wait before asking again (each store takes these; tests pass theirs)."""

    retry: BatchRetryPolicy
    sleep: Callable[[float], None]
    draw: Callable[[], float]  # uniform in [0, 1): the jitter
    # Batch calls of one get or put sent at once (threads; boto3's low-level clients are thread-safe).
    # 1 = one call after the other.
    concurrency: int


@dataclass(slots=True)
class BatchStats:
    read_requests: int = 0  # BatchGetItem calls
    write_requests: int = 0  # BatchWriteItem calls
    items_written: int = 0
    unprocessed_retries: int = 0  # calls that only re-sent what an earlier call left unprocessed


class TableBatches:
    """BatchGetItem and BatchWriteItem on one table, split to DynamoDB's limits and retried."""

    def __init__(
        self, client: Any, table_name: str, *, stats: BatchStats | None = None, **timing: Unpack[BatchTiming]
    ) -> None:
        self._client = client
        self._table = table_name
        self._retry = timing.get("retry", BatchRetryPolicy())
        self._sleep = timing.get("sleep", time.sleep)
        self._draw = timing.get("draw", random.random)
        self._concurrency = max(1, timing.get("concurrency", 1))
        self._executor: ThreadPoolExecutor | None = None  # created on the first concurrent call
        self._stats_lock = threading.Lock()
        self.stats = stats if stats is not None else BatchStats()

    def get(
        self, keys: Sequence[Mapping[str, Any]], *, projection: Sequence[str] = (), consistent: bool = False
    ) -> Iterator[dict[str, Any]]:
        """The items found under ``keys`` (distinct: BatchGetItem refuses a repeated key), in no set
        order; ``projection`` names the attributes to read (all when empty). With ``concurrency``
        above 1 the calls go out together and this returns when all of them answered."""
        requests = []
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request: dict[str, Any] = {"Keys": list(keys[start : start + BATCH_GET_LIMIT])}
            request["ConsistentRead"] = consistent
            if projection:
                names = {f"#a{i}": name for i, name in enumerate(projection)}
                request["ProjectionExpression"] = ", ".join(names)
                request["ExpressionAttributeNames"] = names
            requests.append(request)
        if self._concurrency == 1 or len(requests) == 1:
            for request in requests:
                yield from self._get_all(request)
            return
        for items in self._all_at_once(self._get_all, requests):
            yield from items

    def put(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Put every item; raise :class:`UnprocessedWrites` if DynamoDB never took some of them."""
        self._write([{"PutRequest": {"Item": item}} for item in items])

    def delete(self, keys: Sequence[Mapping[str, Any]]) -> None:
        """Delete the items under ``keys`` (distinct); raise :class:`UnprocessedWrites` as :meth:`put`."""
        self._write([{"DeleteRequest": {"Key": key}} for key in keys])

    def _write(self, requests: list[dict[str, Any]]) -> None:
        chunks = [
            requests[start : start + BATCH_WRITE_LIMIT]
            for start in range(0, len(requests), BATCH_WRITE_LIMIT)
        ]
        if self._concurrency == 1 or len(chunks) == 1:
            for chunk in chunks:
                self._write_all(chunk)
            return
        self._all_at_once(self._write_all, chunks)

    def _all_at_once[T, R](self, call: Callable[[T], R], arguments: Sequence[T]) -> list[R]:
        """``call`` on every argument at once (up to ``concurrency`` threads), in argument order. Waits
        for every call before raising the first failure: nothing is still being written when the
        caller learns of it."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._concurrency, thread_name_prefix="dynamodb-batch")
        futures: list[Future[R]] = [self._executor.submit(call, argument) for argument in arguments]
        wait(futures)
        return [future.result() for future in futures]

    def _get_all(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        pending: dict[str, Any] = {self._table: request}
        found: list[dict[str, Any]] = []
        attempt = 0
        while True:
            answer = self._client.batch_get_item(RequestItems=pending)
            self._count(read_requests=1)
            attempt += 1
            found += answer.get("Responses", {}).get(self._table, [])
            pending = answer.get("UnprocessedKeys") or {}
            left = len(pending.get(self._table, {}).get("Keys", ()))
            if not left:
                return found
            if not self._wait_to_retry(attempt):
                raise UnprocessedReads(f"{left} key(s) still unread after {attempt} BatchGetItem attempts")

    def _write_all(self, pending: list[dict[str, Any]]) -> None:
        attempt = 0
        while True:
            answer = self._client.batch_write_item(RequestItems={self._table: pending})
            attempt += 1
            unprocessed = (answer.get("UnprocessedItems") or {}).get(self._table, [])
            self._count(write_requests=1, items_written=len(pending) - len(unprocessed))
            pending = unprocessed
            if not pending:
                return
            if not self._wait_to_retry(attempt):
                raise UnprocessedWrites(
                    f"{len(pending)} item(s) still unwritten after {attempt} BatchWriteItem attempts"
                )

    def _wait_to_retry(self, attempt: int) -> bool:
        """After ``attempt`` calls left something unprocessed: wait before the next call, or say that
        the attempts are used up (False)."""
        if attempt >= self._retry.max_attempts:
            return False
        self._count(unprocessed_retries=1)
        self._sleep(self._retry.delay(attempt, self._draw))
        return True

    def _count(self, **counts: int) -> None:
        with self._stats_lock:  # the calls of one get or put may run in several threads
            for name, value in counts.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)


# --- conditional writes -----------------------------------------------------------------------------


def is_condition_failed(error: BaseException) -> bool:
    """Whether a call failed only because its ConditionExpression did not hold."""
    return error_code(error) == CONDITION_FAILED


# --- AttributeValues --------------------------------------------------------------------------------


def string_key(key: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """A key of ``leap_tracker.table`` (all strings) as AttributeValues."""
    return {name: {"S": value} for name, value in key.items()}


def serialize(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain Python values (str, int, bool, list, set, dict) as AttributeValues, name by name."""
    return {str(name): _serializer.serialize(_plain(value)) for name, value in values.items()}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """AttributeValues back to plain Python values (numbers as Decimal, binaries as ``Binary``)."""
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def _plain(value: Any) -> Any:
    """StrEnum keys of nested maps as plain strings (the serializer wants str keys)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def optional_instant(value: Any) -> datetime | None:
    """A stored instant (RFC 3339 text), or None when the attribute is absent or empty."""
    return parse_instant(str(value)) if value else None


# --- DynamoDB item sizes (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)


def item_size_bytes(item: Mapping[str, Any] | None) -> int:
    """An item's size by DynamoDB's rules: attribute name bytes plus value bytes (0 for no item).
    Binary values may be bytes (the API's parameters) or base64 text (as moto keeps them)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in (item or {}).items())


def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, content),) = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        return _number_size(content)
    if kind == "B":
        return _binary_size(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(name.encode()) + _value_size(inner) + 1 for name, inner in content.items())
    if kind == "L":
        return 3 + sum(_value_size(inner) + 1 for inner in content)
    if kind == "SS":
        return sum(len(text.encode()) for text in content)
    if kind == "NS":
        return sum(_number_size(text) for text in content)
    if kind == "BS":
        return sum(_binary_size(data) for data in content)
    raise ValueError(f"unknown AttributeValue type {kind!r}")


def _number_size(text: str) -> int:
    """1 byte per two significant digits, plus 1."""
    digits = format(abs(Decimal(text)).normalize(), "f").replace(".", "").strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def _binary_size(content: bytes | str) -> int:
    return len(content) if isinstance(content, bytes | bytearray) else len(base64.b64decode(content))
