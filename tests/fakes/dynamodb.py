"""What reached a (moto) DynamoDB table: its items read back, and the requests counted on the way;
and writes made to fail, as an outage would."""

from __future__ import annotations

from collections import Counter
from typing import Any

from botocore.exceptions import ClientError

from leap_tracker import table

WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})


class RequestCounter:
    """Counts DynamoDB calls and the items put per key, through botocore's event hooks on a client."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.puts: Counter[str] = Counter()  # pk -> times put (BatchWriteItem and PutItem)
        self.put_items: list[dict[str, Any]] = []
        self.params: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("before-parameter-build.dynamodb.*", self._before_call)

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls[model.name] += 1
        self.params.append((model.name, params))
        if model.name == "BatchWriteItem":
            for requests in params["RequestItems"].values():
                for request in requests:
                    self._put(request["PutRequest"]["Item"])
        elif model.name == "PutItem":
            self._put(params["Item"])

    def _put(self, item: dict[str, Any]) -> None:
        self.puts[item[table.PK]["S"]] += 1
        self.put_items.append(item)

    def connection_puts(self) -> Counter[str]:
        return Counter({pk: n for pk, n in self.puts.items() if pk.startswith(table.CONNECTION_PREFIX)})


class FailingWrites:
    """Makes a client's next ``remaining`` writes fail before they reach the table (an
    ``InternalServerError``, as DynamoDB answers in an outage), through botocore's event hooks."""

    def __init__(self, client: Any) -> None:
        self.remaining = 0
        self.failed: list[str] = []  # the operations refused
        client.meta.events.register("before-call.dynamodb.*", self._before_call)

    def _before_call(self, model: Any, **_: Any) -> None:
        if self.remaining > 0 and model.name in WRITE_OPERATIONS:
            self.remaining -= 1
            self.failed.append(model.name)
            error = {"Error": {"Code": "InternalServerError", "Message": "injected outage"}}
            raise ClientError(error, model.name)


def scan_items(client: Any, table_name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table_name, "ConsistentRead": True}
    while True:
        answer = client.scan(**kwargs)
        items += answer["Items"]
        if "LastEvaluatedKey" not in answer:
            return items
        kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def stored_connections(client: Any, table_name: str) -> dict[str, dict[str, Any]]:
    """entry id -> stored snapshot item (low-level attribute values)."""
    return {
        table.entry_id_from_pk(item[table.PK]["S"]): item
        for item in scan_items(client, table_name)
        if item[table.PK]["S"].startswith(table.CONNECTION_PREFIX)
    }
