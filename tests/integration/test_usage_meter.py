"""The usage meter of the local runner (devtools/local_runner/usage.py) against moto: DynamoDB request
units by DynamoDB's sizing rules, for the table and its global secondary indexes, SNS billed requests,
and nothing counted outside an invocation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from devtools.local_runner.stack import ACCOUNT_ID
from devtools.local_runner.usage import UsageMeter, item_size

TABLE = "usage-meter-test"
REGION = "us-east-1"


@dataclass
class Target:
    usage: Counter[str] = field(default_factory=Counter)


@dataclass
class Metered:
    meter: UsageMeter
    target: Target
    dynamodb: Any
    sns: Any

    def units(self) -> dict[str, float]:
        """What was counted, without the call counts; and starts counting afresh."""
        counted = {k: v for k, v in self.target.usage.items() if not k.startswith("calls:")}
        self.target.usage.clear()
        return counted


@pytest.fixture
def metered() -> Iterator[Metered]:
    with mock_aws():
        meter = UsageMeter(ACCOUNT_ID, REGION)
        meter.install()  # before the session: a session takes botocore's built-in handlers when created
        try:
            session = boto3.session.Session(region_name=REGION)
            config = Config(account_id_endpoint_mode="disabled")
            dynamodb = session.client("dynamodb", config=config)
            _create_table(dynamodb)
            target = Target()
            meter.current = target
            yield Metered(meter, target, dynamodb, session.client("sns", config=config))
        finally:
            meter.current = None
            meter.uninstall()


def _create_table(dynamodb: Any) -> None:
    def index(name: str, key: str, projection: str) -> dict[str, Any]:
        return {
            "IndexName": name,
            "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
            "Projection": {"ProjectionType": projection},
        }

    dynamodb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "all_key", "keys_key")
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            index("all-index", "all_key", "ALL"),
            index("keys-index", "keys_key", "KEYS_ONLY"),
        ],
    )


def item(pk: str, blob_bytes: int, **extra: str) -> dict[str, Any]:
    """An item of about ``blob_bytes`` + 20 bytes (the keys and the attribute names)."""
    return {"pk": {"S": pk}, "sk": {"S": "S"}, "payload": {"S": "x" * blob_bytes}} | {
        name: {"S": value} for name, value in extra.items()
    }


def key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "S"}}


def test_item_sizes_follow_dynamodb_rules() -> None:
    assert item_size({"ab": {"S": "xyz"}}) == 5
    assert item_size({"n": {"N": "12345"}}) == 1 + 4  # 1 + one byte per two significant digits, rounded up
    assert item_size({"b": {"B": b"\x00\x01\x02"}}) == 4
    assert item_size({"b": {"B": "AAEC"}}) == 4  # moto's base64 text of the same three bytes
    assert item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + (1 + 1 + 1)
    assert item_size(None) == 0


def test_a_put_writes_the_table_and_the_indexes_the_item_is_in(metered: Metered) -> None:
    metered.dynamodb.put_item(TableName=TABLE, Item=item("a", 1500, all_key="g1"))

    assert metered.units() == {"dynamodb.write_units.table": 2, "dynamodb.write_units.index:all-index": 2}


def test_an_update_costs_the_larger_of_before_and_after_and_moves_index_entries(metered: Metered) -> None:
    metered.dynamodb.put_item(TableName=TABLE, Item=item("a", 1500, all_key="g1"))
    metered.units()

    metered.dynamodb.update_item(
        TableName=TABLE,
        Key=key("a"),
        UpdateExpression="SET payload = :small",
        ExpressionAttributeValues={":small": {"S": "x" * 100}},
    )
    assert metered.units() == {"dynamodb.write_units.table": 2, "dynamodb.write_units.index:all-index": 2}

    metered.dynamodb.update_item(
        TableName=TABLE,
        Key=key("a"),
        UpdateExpression="SET all_key = :other, keys_key = :k",
        ExpressionAttributeValues={":other": {"S": "g2"}, ":k": {"S": "k1"}},
    )
    # The ALL index's key moved: a delete and a put; the item enters the KEYS_ONLY index: a put.
    assert metered.units() == {
        "dynamodb.write_units.table": 1,
        "dynamodb.write_units.index:all-index": 2,
        "dynamodb.write_units.index:keys-index": 1,
    }


def test_a_keys_only_index_is_not_written_when_only_other_attributes_change(metered: Metered) -> None:
    metered.dynamodb.put_item(TableName=TABLE, Item=item("a", 10, keys_key="k1"))
    metered.units()

    metered.dynamodb.put_item(TableName=TABLE, Item=item("a", 20, keys_key="k1"))

    assert metered.units() == {"dynamodb.write_units.table": 1}


def test_a_delete_and_a_failed_condition_consume_write_units(metered: Metered) -> None:
    metered.dynamodb.put_item(TableName=TABLE, Item=item("a", 2500, all_key="g1", keys_key="k1"))
    metered.units()

    with pytest.raises(metered.dynamodb.exceptions.ConditionalCheckFailedException):
        metered.dynamodb.put_item(
            TableName=TABLE, Item=item("a", 10), ConditionExpression="attribute_not_exists(pk)"
        )
    assert metered.units() == {"dynamodb.write_units.table": 3}  # the stored item's size; no index write

    metered.dynamodb.delete_item(TableName=TABLE, Key=key("a"))
    assert metered.units() == {
        "dynamodb.write_units.table": 3,
        "dynamodb.write_units.index:all-index": 3,
        "dynamodb.write_units.index:keys-index": 1,
    }


def test_batch_writes_count_item_by_item(metered: Metered) -> None:
    requests = [{"PutRequest": {"Item": item(pk, 1500)}} for pk in ("a", "b", "c")]

    metered.dynamodb.batch_write_item(RequestItems={TABLE: requests})

    assert metered.units() == {"dynamodb.write_units.table": 6}


def test_reads_by_key_round_each_item_to_4_kb_and_halve_eventually_consistent_ones(metered: Metered) -> None:
    metered.dynamodb.put_item(TableName=TABLE, Item=item("big", 5000))
    metered.dynamodb.put_item(TableName=TABLE, Item=item("small", 10))
    metered.units()

    metered.dynamodb.get_item(TableName=TABLE, Key=key("big"), ConsistentRead=True)
    assert metered.units() == {"dynamodb.read_units.table": 2.0}

    metered.dynamodb.get_item(TableName=TABLE, Key=key("missing"), ProjectionExpression="pk")
    assert metered.units() == {"dynamodb.read_units.table": 0.5}  # the minimum, projection or not

    metered.dynamodb.batch_get_item(RequestItems={TABLE: {"Keys": [key("big"), key("small")]}})
    assert metered.units() == {"dynamodb.read_units.table": 1.0 + 0.5}


def test_a_query_counts_the_bytes_it_read_next_to_its_minimum(metered: Metered) -> None:
    for pk in ("a", "b", "c", "d"):
        metered.dynamodb.put_item(TableName=TABLE, Item=item(pk, 3000, keys_key="k1"))
    metered.units()

    answer = metered.dynamodb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "a"}},
        ConsistentRead=True,
    )
    read = sum(item_size(found) for found in answer["Items"])
    assert metered.units() == {
        "dynamodb.query_min_units.table": 1.0,
        "dynamodb.query_units.table": pytest.approx(read / 4096),
    }

    metered.dynamodb.query(
        TableName=TABLE,
        IndexName="keys-index",
        KeyConditionExpression="keys_key = :k",
        ExpressionAttributeValues={":k": {"S": "k1"}},
        Select="COUNT",
    )
    entry = item_size({"pk": {"S": "a"}, "sk": {"S": "S"}, "keys_key": {"S": "k1"}})  # keys only
    assert metered.units() == {
        "dynamodb.query_min_units.index:keys-index": 0.5,
        "dynamodb.query_units.index:keys-index": pytest.approx(4 * entry / 4096 * 0.5),
    }


def test_sns_bills_each_started_64_kb_of_a_batch(metered: Metered) -> None:
    topic = metered.sns.create_topic(Name="usage")["TopicArn"]
    metered.units()
    entries = [{"Id": str(i), "Message": "x" * 40_000} for i in range(2)]

    metered.sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)

    assert metered.units() == {"sns.billed_requests": 2, "sns.messages": 2}


def test_nothing_is_counted_outside_an_invocation(metered: Metered) -> None:
    metered.meter.current = None

    metered.dynamodb.put_item(TableName=TABLE, Item=item("a", 10))

    assert metered.target.usage == Counter()


def test_a_mistake_of_the_meter_is_kept_and_leaves_the_call_alone(
    metered: Metered, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("meter bug")

    monkeypatch.setattr(metered.meter.tables, "item", broken)

    metered.dynamodb.put_item(TableName=TABLE, Item=item("a", 10))

    stored = metered.dynamodb.get_item(TableName=TABLE, Key=key("a"), ConsistentRead=True)
    assert stored["Item"]["pk"] == {"S": "a"}
    # The put and the get both went through the broken look-up: both kept, neither call failed.
    assert [failure.split(":")[0] for failure in metered.meter.failures] == [
        "dynamodb.PutItem",
        "dynamodb.GetItem",
    ]
    assert all("meter bug" in failure for failure in metered.meter.failures)
