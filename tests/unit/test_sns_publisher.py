"""``SnsPublisher.publish``: every message, in order, packed by the one rule of ``events.publishing``
(``plan_calls``) with all the messages as one record, every call made whatever the earlier ones did."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError

from leap_tracker.adapters.sns_publisher import SnsPublisher
from leap_tracker.events.publishing import OutgoingMessage


class StubSns:
    """Accepts every entry, except that the calls listed in ``raising`` fail whole."""

    def __init__(self, raising: dict[int, Exception] | None = None) -> None:
        self.calls: list[list[str]] = []  # message bodies per call
        self.raising = raising or {}

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[dict[str, Any]]) -> dict:
        self.calls.append([entry["Message"] for entry in PublishBatchRequestEntries])
        if len(self.calls) in self.raising:
            raise self.raising[len(self.calls)]
        return {"Successful": [{"Id": entry["Id"]} for entry in PublishBatchRequestEntries], "Failed": []}


def message(n: int, size: int = 100, group: str = "one-entry") -> OutgoingMessage:
    return OutgoingMessage(f"id-{n}", group, f"body-{n}", {}, size)


def test_messages_of_one_entry_share_calls_of_ten_in_order() -> None:
    sns = StubSns()
    publisher = SnsPublisher(sns, "arn:aws:sns:us-east-1:123456789012:events")

    assert publisher.publish([message(n) for n in range(23)]) == {}

    assert [len(call) for call in sns.calls] == [10, 10, 3]
    assert [body for call in sns.calls for body in call] == [f"body-{n}" for n in range(23)]
    assert publisher.calls == 3


def test_a_call_never_passes_the_byte_limit() -> None:
    sns = StubSns()
    publisher = SnsPublisher(sns, "arn:aws:sns:us-east-1:123456789012:events")
    third = publisher.max_batch_bytes // 3 + 1

    publisher.publish([message(n, size=third, group=f"entry-{n}") for n in range(5)])

    assert [len(call) for call in sns.calls] == [2, 2, 1]


def test_a_failed_call_does_not_stop_the_later_ones() -> None:
    throttled = ClientError({"Error": {"Code": "Throttling", "Message": "slow down"}}, "PublishBatch")
    unreachable = EndpointConnectionError(endpoint_url="https://sns.us-east-1.amazonaws.com")
    sns = StubSns(raising={1: throttled, 3: unreachable})
    publisher = SnsPublisher(sns, "arn:aws:sns:us-east-1:123456789012:events")

    failures = publisher.publish([message(n) for n in range(25)])

    assert len(sns.calls) == 3
    assert failures == {f"id-{n}": "Throttling" for n in range(10)} | {
        f"id-{n}": "EndpointConnectionError" for n in range(20, 25)
    }


def test_nothing_to_publish_makes_no_call() -> None:
    sns = StubSns()
    assert SnsPublisher(sns, "arn:aws:sns:us-east-1:123456789012:events").publish([]) == {}
    assert sns.calls == []
