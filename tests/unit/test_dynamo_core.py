"""The DynamoDB adapter core (``leap_tracker.adapters.dynamo``) against a stub client: the batch
splits, the unprocessed-keys and unprocessed-items loops, the one retry policy, the condition check and
the AttributeValue helpers. Its requests on moto: tests/integration/test_dynamo_core.py."""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from leap_tracker.adapters.dynamo import (
    BATCH_GET_LIMIT,
    BATCH_WRITE_LIMIT,
    BatchRetryPolicy,
    BatchStats,
    TableBatches,
    UnprocessedReads,
    UnprocessedWrites,
    deserialize,
    is_condition_failed,
    optional_instant,
    serialize,
    string_key,
)

TABLE = "connections"


class StubDynamo:
    """Answers BatchGetItem and BatchWriteItem from a dict; the first ``stingy_calls`` calls of more
    than one key or item take only the first and hand the rest back as unprocessed."""

    def __init__(self, stingy_calls: int = 0) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.stingy_calls = stingy_calls
        self.get_requests: list[dict[str, Any]] = []
        self.write_requests: list[list[dict[str, Any]]] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        request = RequestItems[TABLE]
        self.get_requests.append(copy.deepcopy(request))
        answered, left = self._split(request["Keys"])
        found = [self.items[key["pk"]["S"]] for key in answered if key["pk"]["S"] in self.items]
        unprocessed = {TABLE: {**request, "Keys": left}} if left else {}
        return {"Responses": {TABLE: found}, "UnprocessedKeys": unprocessed}

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        requests = RequestItems[TABLE]
        self.write_requests.append(copy.deepcopy(requests))
        taken, left = self._split(requests)
        for request in taken:
            item = request["PutRequest"]["Item"]
            self.items[item["pk"]["S"]] = item
        return {"UnprocessedItems": {TABLE: left} if left else {}}

    def _split(self, things: list[Any]) -> tuple[list[Any], list[Any]]:
        if self.stingy_calls > 0 and len(things) > 1:
            self.stingy_calls -= 1
            return things[:1], things[1:]
        return things, []


def item(n: int) -> dict[str, Any]:
    return {"pk": {"S": f"CONN#{n}"}, "sk": {"S": "STATE"}, "sequence": {"N": str(n)}}


def key(n: int) -> dict[str, Any]:
    return {"pk": {"S": f"CONN#{n}"}, "sk": {"S": "STATE"}}


def batches(client: StubDynamo, sleeps: list[float], **policy: Any) -> TableBatches:
    return TableBatches(
        client, TABLE, retry=BatchRetryPolicy(**policy), sleep=sleeps.append, draw=lambda: 0.5
    )


# --- batch reads ----------------------------------------------------------------------------------


def test_a_read_is_split_into_calls_of_100_keys_with_its_projection_and_consistency() -> None:
    client = StubDynamo()
    client.items = {f"CONN#{n}": item(n) for n in range(0, 250, 2)}  # every other key exists

    found = list(batches(client, []).get([key(n) for n in range(250)], projection=("pk", "sequence")))

    assert sorted(int(i["sequence"]["N"]) for i in found) == list(range(0, 250, 2))
    assert [len(r["Keys"]) for r in client.get_requests] == [BATCH_GET_LIMIT, BATCH_GET_LIMIT, 50]
    for request in client.get_requests:
        assert request["ConsistentRead"] is False
        names = request["ExpressionAttributeNames"]
        assert sorted(names.values()) == ["pk", "sequence"]
        assert request["ProjectionExpression"].split(", ") == list(names)


def test_a_read_without_projection_asks_for_whole_items() -> None:
    client = StubDynamo()
    client.items = {"CONN#1": item(1)}

    assert list(batches(client, []).get([key(1), key(2)], consistent=True)) == [item(1)]
    assert client.get_requests == [{"Keys": [key(1), key(2)], "ConsistentRead": True}]


def test_unprocessed_keys_are_asked_again_after_growing_jittered_waits() -> None:
    client = StubDynamo(stingy_calls=2)
    client.items = {f"CONN#{n}": item(n) for n in range(4)}
    sleeps: list[float] = []
    reader = batches(client, sleeps)

    found = list(reader.get([key(n) for n in range(4)], projection=("pk",)))

    assert len(found) == 4
    assert [[k["pk"]["S"] for k in r["Keys"]] for r in client.get_requests] == [
        ["CONN#0", "CONN#1", "CONN#2", "CONN#3"],
        ["CONN#1", "CONN#2", "CONN#3"],  # the unprocessed part only, projection kept
        ["CONN#2", "CONN#3"],
    ]
    assert all(r["ProjectionExpression"] for r in client.get_requests)
    policy = BatchRetryPolicy()
    assert sleeps == [0.5 * policy.base_seconds * 2, 0.5 * policy.base_seconds * 4]
    assert reader.stats == BatchStats(read_requests=3, unprocessed_retries=2)


def test_keys_still_unprocessed_after_the_last_attempt_raise() -> None:
    client = StubDynamo(stingy_calls=99)
    sleeps: list[float] = []

    with pytest.raises(UnprocessedReads, match=r"^1 key\(s\) still unread after 3 BatchGetItem attempts$"):
        list(batches(client, sleeps, max_attempts=3).get([key(n) for n in range(4)]))

    assert len(client.get_requests) == 3
    assert len(sleeps) == 2  # no wait after the last attempt


# --- batch writes ---------------------------------------------------------------------------------


def test_puts_are_split_into_calls_of_25() -> None:
    client = StubDynamo()
    writer = batches(client, [])

    writer.put([item(n) for n in range(60)])

    assert [len(call) for call in client.write_requests] == [BATCH_WRITE_LIMIT, BATCH_WRITE_LIMIT, 10]
    assert client.write_requests[0][0] == {"PutRequest": {"Item": item(0)}}
    assert len(client.items) == 60
    assert writer.stats == BatchStats(write_requests=3, items_written=60)


def test_unprocessed_items_are_sent_again_until_taken() -> None:
    client = StubDynamo(stingy_calls=2)
    sleeps: list[float] = []
    stats = BatchStats()
    writer = TableBatches(client, TABLE, sleep=sleeps.append, draw=lambda: 1.0, stats=stats)

    writer.put([item(n) for n in range(5)])

    assert [len(call) for call in client.write_requests] == [5, 4, 3]
    assert len(client.items) == 5
    assert sleeps == [BatchRetryPolicy().delay(attempt, lambda: 1.0) for attempt in (1, 2)]
    assert stats == BatchStats(write_requests=3, items_written=5, unprocessed_retries=2)
    assert writer.stats is stats  # a store hands in its own counters


def test_items_still_unprocessed_after_the_last_attempt_raise() -> None:
    client = StubDynamo(stingy_calls=99)
    writer = batches(client, [], max_attempts=4)

    with pytest.raises(
        UnprocessedWrites, match=r"^2 item\(s\) still unwritten after 4 BatchWriteItem attempts$"
    ):
        writer.put([item(n) for n in range(6)])

    assert writer.stats.items_written == 4
    assert writer.stats.write_requests == 4


def test_nothing_to_read_or_write_makes_no_call() -> None:
    client = StubDynamo()
    assert list(batches(client, []).get([])) == []
    batches(client, []).put([])
    assert client.get_requests == client.write_requests == []


# --- the retry policy -----------------------------------------------------------------------------


@given(
    attempt=st.integers(min_value=0, max_value=64), draw=st.floats(min_value=0, max_value=1, exclude_max=True)
)
def test_backoff_is_full_jitter_under_an_exponential_ceiling_and_the_cap(attempt: int, draw: float) -> None:
    policy = BatchRetryPolicy()
    ceiling = min(policy.cap_seconds, policy.base_seconds * 2**attempt)

    delay = policy.delay(attempt, lambda: draw)

    assert 0 <= delay <= ceiling <= policy.cap_seconds
    assert delay == pytest.approx(draw * ceiling)


def test_the_default_policy_bounds_the_total_wait() -> None:
    policy = BatchRetryPolicy()
    worst = sum(policy.delay(attempt, lambda: 1.0) for attempt in range(1, policy.max_attempts))
    assert policy.max_attempts == 8
    assert worst == pytest.approx(0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 3.2 + 5.0)


# --- conditions and AttributeValues ---------------------------------------------------------------


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "PutItem")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (client_error("ConditionalCheckFailedException"), True),
        (client_error("ProvisionedThroughputExceededException"), False),
        (ClientError({}, "PutItem"), False),
        (ValueError("ConditionalCheckFailedException"), False),
    ],
)
def test_only_a_failed_condition_counts_as_one(error: BaseException, expected: bool) -> None:
    assert is_condition_failed(error) is expected


class Attr(StrEnum):
    STATUS = "status"


def test_values_round_trip_through_attribute_values() -> None:
    values = {
        ":n": 3,
        ":s": "x",
        ":flag": True,
        ":set": {"sms"},
        ":list": ["a"],
        ":map": {Attr.STATUS: "SENT"},
    }

    serialized = serialize(values)

    assert serialized[":map"] == {"M": {"status": {"S": "SENT"}}}  # StrEnum keys as plain strings
    assert serialized[":n"] == {"N": "3"}
    assert deserialize(serialized) == {**values, ":n": Decimal(3), ":map": {"status": "SENT"}}


def test_a_table_key_as_attribute_values() -> None:
    assert string_key({"pk": "CONN#a", "sk": "STATE"}) == {"pk": {"S": "CONN#a"}, "sk": {"S": "STATE"}}


@pytest.mark.parametrize(
    ("stored", "expected"),
    [(None, None), ("", None), ("2025-01-10T12:00:00Z", datetime(2025, 1, 10, 12, tzinfo=UTC))],
)
def test_an_optional_stored_instant(stored: str | None, expected: datetime | None) -> None:
    assert optional_instant(stored) == expected


# --- batch calls at once ---------------------------------------------------------------------------


class SlowDynamo(StubDynamo):
    """A stub whose calls each wait until ``together`` of them are in flight (or a second passed): a
    read or write that sent its calls one after the other would never see two at once."""

    def __init__(self, together: int) -> None:
        super().__init__()
        self.together = together
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()
        self.all_in = threading.Event()

    def _enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            if self.in_flight >= self.together:
                self.all_in.set()
        self.all_in.wait(timeout=1.0)
        with self.lock:
            self.in_flight -= 1

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self._enter()
        with self.lock:  # the stub's own bookkeeping, one call at a time
            return super().batch_get_item(RequestItems=RequestItems)

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self._enter()
        with self.lock:
            return super().batch_write_item(RequestItems=RequestItems)


def test_with_concurrency_a_reads_calls_go_out_together_and_find_everything() -> None:
    client = SlowDynamo(together=3)
    client.items = {f"CONN#{n}": item(n) for n in range(300)}
    reader = TableBatches(client, TABLE, concurrency=4)
    found = list(reader.get([key(n) for n in range(300)]))
    assert sorted(int(i["sequence"]["N"]) for i in found) == list(range(300))
    assert client.most_in_flight == 3
    assert reader.stats.read_requests == 3


def test_with_concurrency_writes_go_out_together_and_a_failure_raises_after_all_answered() -> None:
    client = SlowDynamo(together=4)
    writer = TableBatches(
        client, TABLE, concurrency=4, sleep=lambda _: None, retry=BatchRetryPolicy(max_attempts=1)
    )
    writer.put([item(n) for n in range(100)])
    assert client.most_in_flight == 4
    assert len(client.items) == 100
    assert (writer.stats.write_requests, writer.stats.items_written) == (4, 100)

    client = SlowDynamo(together=2)
    client.stingy_calls = 1  # one call leaves all but one item unprocessed; one attempt only
    writer = TableBatches(
        client, TABLE, concurrency=2, sleep=lambda _: None, retry=BatchRetryPolicy(max_attempts=1)
    )
    with pytest.raises(UnprocessedWrites):
        writer.put([item(n) for n in range(50)])
    assert client.in_flight == 0  # nothing still being written when the caller hears of it
    assert writer.stats.items_written == 26
