"""What the handlers' AWS calls would be billed for, measured per invocation (docs/cost.md).

A botocore hook pair (``before-parameter-build`` and ``after-call``, added to botocore's built-in
handlers like the call counter's, so the sessions the handlers create carry them) adds to the
``usage`` counter of the invocation in progress:

- ``calls:<service>.<operation>``: every call;
- DynamoDB request units by DynamoDB's sizing rules, from the items as moto holds them before and
  after each write (moto's own ConsumedCapacity is a constant): ``dynamodb.write_units.table``,
  ``dynamodb.write_units.index:<name>`` (a global secondary index is written when an item enters,
  leaves, moves in or changes its projection in it) and ``dynamodb.read_units.table``. A write
  consumes ``ceil(max(size before, size after) / 1 KB)`` units (a failed condition too), a
  transactional one twice that; a GetItem or BatchGetItem key ``ceil(size / 4 KB)`` units, half when
  eventually consistent, a missing item the minimum. A Query or Scan reads the bytes of the entries
  it evaluated (those it returned, or, with a projection, a filter or a count, ``ScannedCount``
  entries at the mean size of that table's or index's entries): kept per 4 KB and unrounded,
  ``dynamodb.query_units.<table|index:name>``, next to the minimum the request costs,
  ``dynamodb.query_min_units.<...>``;
- ``sns.billed_requests`` (one per started 64 KB of a Publish's or PublishBatch's payload: messages
  and attributes) and ``sns.messages``;
- for an invocation by an SQS mapping (``count_event_source``): ``sqs.esm_requests`` and
  ``sqs.deliveries``.

Only calls made while a function is invoked count (``current`` is set by the runner around each one).
"""

from __future__ import annotations

import base64
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore import handlers

from leap_tracker.adapters.dynamo import item_size_bytes

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
SNS_BILLING_CHUNK_BYTES = 64 * 1024
ITEM_OVERHEAD_BYTES = 100  # DynamoDB bills storage as the items' sizes plus 100 bytes each

_BEFORE = "before-parameter-build.*.*"
_AFTER = "after-call.*.*"
_STATE_KEY = "leap_tracker_usage"  # where a call's before-state waits in botocore's request context
_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")

logger = logging.getLogger(__name__)

Item = dict[str, Any]  # attribute name -> AttributeValue, as DynamoDB JSON


class UsageTarget(Protocol):
    """What the meter adds to: the runner's InvocationRecord."""

    usage: Counter[str]


# ---------------------------------------------------------------------------------------- sizes


def item_size(item: Mapping[str, Any] | None) -> int:
    """DynamoDB's size of an item (0 for no item): the product's own rule (adapters.dynamo)."""
    return item_size_bytes(item)


def write_units(size_before: int, size_after: int) -> int:
    return max(1, math.ceil(max(size_before, size_after) / WRITE_UNIT_BYTES))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


# ------------------------------------------------------------------------------ indexes and items


@dataclass(frozen=True, slots=True)
class IndexShape:
    name: str
    keys: tuple[str, ...]  # the index's key attributes
    projection: str  # ALL, KEYS_ONLY or INCLUDE
    included: tuple[str, ...] = ()

    def entry(self, item: Item | None, table_keys: Iterable[str]) -> Item | None:
        """The item's entry in this index (its projection), or None when the item is not in it."""
        if item is None or any(key not in item for key in self.keys):
            return None
        if self.projection == "ALL":
            return item
        kept = {*table_keys, *self.keys, *self.included}
        return {name: value for name, value in item.items() if name in kept}


def index_write_units(
    index: IndexShape, table_keys: tuple[str, ...], before: Item | None, after: Item | None
) -> int:
    """Index write units of one item write: a put, a delete, both (the index key moved) or an update."""
    old, new = index.entry(before, table_keys), index.entry(after, table_keys)
    if old is None and new is None:
        return 0
    if old is None or new is None:
        return write_units(item_size(old), item_size(new))
    if any(old[key] != new[key] for key in index.keys):
        return write_units(item_size(old), 0) + write_units(0, item_size(new))
    return 0 if old == new else write_units(item_size(old), item_size(new))


@dataclass(frozen=True, slots=True)
class WriteUnits:
    table: int
    indexes: Mapping[str, int]


def item_write_units(
    table_keys: tuple[str, ...], indexes: Iterable[IndexShape], before: Item | None, after: Item | None
) -> WriteUnits:
    return WriteUnits(
        table=write_units(item_size(before), item_size(after)),
        indexes={index.name: index_write_units(index, table_keys, before, after) for index in indexes},
    )


# ------------------------------------------------------------------------------ moto's tables


class MotoTables:
    """Read access to the tables moto holds (this process's mock): items, keys, indexes, sizes."""

    def __init__(self, account: str, region: str) -> None:
        self._account = account
        self._region = region
        # Mean entry sizes, recomputed once per simulated hour: a pass over the table per query
        # would cost more than moto's answer (the sizes change little within an hour).
        self._means: dict[tuple[str, str | None], tuple[str, float]] = {}

    def _table(self, name: str) -> Any:
        """moto's table, or None when there is none (the call itself then fails, as in AWS)."""
        from moto.dynamodb.models import dynamodb_backends  # deferred: development tool

        backend = dynamodb_backends[self._account][self._region]
        return backend.tables.get(name) or next(
            (table for table in list(backend.tables.values()) if table.table_arn == name), None
        )

    def keys(self, name: str) -> tuple[str, ...]:
        table = self._table(name)
        if table is None:
            return ()
        return tuple(key for key in (table.hash_key_attr, table.range_key_attr) if key)

    def indexes(self, name: str) -> list[IndexShape]:
        table = self._table(name)
        if table is None:
            return []
        return [
            IndexShape(
                index.name,
                tuple(key["AttributeName"] for key in index.schema),
                (index.projection or {}).get("ProjectionType", "ALL"),
                tuple((index.projection or {}).get("NonKeyAttributes", [])),
            )
            for index in table.global_indexes
        ]

    def item(self, name: str, key: Mapping[str, Any]) -> Item | None:
        """The item with this key (its key attributes, as API parameters or DynamoDB JSON)."""
        from moto.dynamodb.models.dynamo_type import DynamoType

        table = self._table(name)
        names = self.keys(name)
        if table is None or any(attribute not in key for attribute in names):
            return None  # a malformed request: botocore refuses it next
        hash_key = DynamoType(_wire(key[table.hash_key_attr]))
        range_key = DynamoType(_wire(key[table.range_key_attr])) if table.range_key_attr else None
        found = table.get_item(hash_key, range_key)
        return None if found is None else _json(found)

    def items(self, name: str) -> list[Item]:
        table = self._table(name)
        return [] if table is None else [_json(item) for item in table.all_items()]

    def mean_entry_size(self, name: str, index_name: str | None) -> float:
        """The mean size of the table's items, or of an index's entries (0 when empty), this hour."""
        hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")  # the simulated clock's
        cached = self._means.get((name, index_name))
        if cached is not None and cached[0] == hour:
            return cached[1]
        sizes = [item_size(entry) for entry in self.entries(name, index_name)]
        mean = sum(sizes) / len(sizes) if sizes else 0.0
        self._means[(name, index_name)] = (hour, mean)
        return mean

    def entries(self, name: str, index_name: str | None) -> list[Item]:
        items = self.items(name)
        if index_name is None:
            return items
        (index,) = [shape for shape in self.indexes(name) if shape.name == index_name]
        keys = self.keys(name)
        return [entry for entry in (index.entry(item, keys) for item in items) if entry is not None]

    def storage(self, name: str) -> dict[str, Any]:
        """Items and billed bytes (item sizes plus the per-item overhead) of the table and each index."""
        items = self.items(name)
        keys = self.keys(name)

        def billed(entries: list[Item]) -> dict[str, int]:
            return {"items": len(entries), "bytes": sum(item_size(e) + ITEM_OVERHEAD_BYTES for e in entries)}

        indexes = {
            index.name: billed([e for e in (index.entry(item, keys) for item in items) if e is not None])
            for index in self.indexes(name)
        }
        return {**billed(items), "indexes": indexes}


def _wire(value: Mapping[str, Any]) -> dict[str, Any]:
    """An AttributeValue as moto stores it (binary as base64 text)."""
    ((kind, content),) = value.items()
    if kind == "B" and isinstance(content, bytes):
        return {"B": base64.b64encode(content).decode()}
    return {kind: content}


def _json(item: Any) -> Item:
    attributes: Item = item.to_json()["Attributes"]
    return attributes


# ---------------------------------------------------------------------------------- the meter


@dataclass
class _Write:
    table: str
    key: dict[str, Any]
    before: Item | None
    factor: int = 1  # 2 in a transaction


@dataclass
class UsageMeter:
    account: str
    region: str
    current: UsageTarget | None = None  # set by the runner around each invocation
    unmodelled: Counter[str] = field(default_factory=Counter)  # DynamoDB data operations not priced
    secrets_read: set[str] = field(default_factory=set)  # the SecretIds the handlers read
    failures: list[str] = field(default_factory=list)  # the meter's own errors (see _before)
    tables: MotoTables = field(init=False)

    def __post_init__(self) -> None:
        self.tables = MotoTables(self.account, self.region)

    def install(self) -> None:
        handlers.BUILTIN_HANDLERS.extend([(_BEFORE, self._before), (_AFTER, self._after)])

    def uninstall(self) -> None:
        for entry in ((_BEFORE, self._before), (_AFTER, self._after)):
            if entry in handlers.BUILTIN_HANDLERS:
                handlers.BUILTIN_HANDLERS.remove(entry)

    def count_event_source(self, target: UsageTarget, source: str, event: Any) -> None:
        """The SQS requests behind an invocation by an SQS mapping: Lambda's poller receives the batch
        and deletes it (``sqs.esm_requests``), and SNS sent each message received for the first time
        (``sqs.deliveries``). A DynamoDB stream's reads by Lambda are not billed."""
        if source != "sqs" or not isinstance(event, dict):
            return
        target.usage["sqs.esm_requests"] += 2
        target.usage["sqs.deliveries"] += sum(
            1
            for record in event.get("Records", [])
            if str(record.get("attributes", {}).get("ApproximateReceiveCount")) == "1"
        )

    # ------------------------------------------------------------------------------- hooks
    # A mistake of the meter must not change what the handler's call does: it is kept in
    # ``failures`` (the demo's measurement refuses to write numbers when there is one) and logged.
    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        try:
            self._measure_before(params, model, context)
        except Exception as exc:
            self._failed(model, exc)

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        try:
            self._measure_after(parsed, model, context)
        except Exception as exc:
            self._failed(model, exc)

    def _failed(self, model: Any, exc: Exception) -> None:
        self.failures.append(f"{model.service_model.service_name}.{model.name}: {exc!r}")
        logger.warning(
            "usage meter failed on %s.%s", model.service_model.service_name, model.name, exc_info=exc
        )

    def _measure_before(self, params: dict[str, Any], model: Any, context: dict[str, Any]) -> None:
        target = self.current
        if target is None:
            return
        service, operation = model.service_model.service_name, model.name
        target.usage[f"calls:{service}.{operation}"] += 1
        if service == "dynamodb" and operation in _WRITES:
            context[_STATE_KEY] = self._writes(operation, params)
        elif service == "dynamodb":
            context[_STATE_KEY] = params
        elif service == "secretsmanager" and operation == "GetSecretValue":
            self.secrets_read.add(str(params.get("SecretId", "")))
        elif service == "sns" and operation in ("Publish", "PublishBatch"):
            entries = params.get("PublishBatchRequestEntries") or [params]
            payload = sum(_sns_payload(entry) for entry in entries)
            target.usage["sns.billed_requests"] += max(1, math.ceil(payload / SNS_BILLING_CHUNK_BYTES))
            target.usage["sns.messages"] += len(entries)

    def _measure_after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any]) -> None:
        target = self.current
        if target is None or model.service_model.service_name != "dynamodb" or _STATE_KEY not in context:
            return
        state, operation = context.pop(_STATE_KEY), model.name
        if operation in _WRITES:
            self._count_writes(target, state)
        elif operation in ("GetItem", "BatchGetItem"):
            self._count_gets(target, state)
        elif operation in ("Query", "Scan"):
            self._count_query(target, state, parsed)
        elif operation in (
            "TransactGetItems",
            "ExecuteStatement",
            "BatchExecuteStatement",
            "ExecuteTransaction",
        ):
            self.unmodelled[operation] += 1

    # ------------------------------------------------------------------------------ writes
    def _writes(self, operation: str, params: Mapping[str, Any]) -> list[_Write]:
        # Read defensively: these are the caller's parameters, before botocore validates them.
        requests: list[tuple[str, Mapping[str, Any], int]] = []
        if operation == "BatchWriteItem":
            for table, batch in (params.get("RequestItems") or {}).items():
                for request in batch:
                    put, delete = request.get("PutRequest") or {}, request.get("DeleteRequest") or {}
                    requests.append((table, put.get("Item") or delete.get("Key") or {}, 1))
        elif operation == "TransactWriteItems":
            for action in params.get("TransactItems") or []:
                for body in action.values():
                    requests.append((body.get("TableName", ""), body.get("Item") or body.get("Key") or {}, 2))
        else:
            requests.append((params.get("TableName", ""), params.get("Item") or params.get("Key") or {}, 1))
        writes = []
        for table, key_source, factor in requests:
            key = {name: key_source[name] for name in self.tables.keys(table) if name in key_source}
            writes.append(_Write(table, key, self.tables.item(table, key), factor))
        return writes

    def _count_writes(self, target: UsageTarget, writes: list[_Write]) -> None:
        for write in writes:
            after = self.tables.item(write.table, write.key)
            units = item_write_units(
                self.tables.keys(write.table), self.tables.indexes(write.table), write.before, after
            )
            target.usage["dynamodb.write_units.table"] += units.table * write.factor
            for index, index_units in units.indexes.items():
                if index_units:
                    target.usage[f"dynamodb.write_units.index:{index}"] += index_units * write.factor

    # ------------------------------------------------------------------------------- reads
    def _count_gets(self, target: UsageTarget, params: Mapping[str, Any]) -> None:
        requests = params.get("RequestItems") or {params["TableName"]: params}
        for table, request in requests.items():
            keys = request.get("Keys") or [request["Key"]]
            consistent = bool(request.get("ConsistentRead", False))
            for key in keys:
                size = item_size(self.tables.item(table, key))
                target.usage["dynamodb.read_units.table"] += read_units(size, consistent)

    def _count_query(self, target: UsageTarget, params: Mapping[str, Any], parsed: Mapping[str, Any]) -> None:
        table, index = params["TableName"], params.get("IndexName")
        if _returns_what_it_read(params):
            size = sum(item_size(item) for item in parsed.get("Items", []))
        else:  # a projection, a filter or a count: the evaluated entries at their mean size
            evaluated = int(parsed.get("ScannedCount", parsed.get("Count", 0)))
            size = math.ceil(evaluated * self.tables.mean_entry_size(table, index))
        consistent = bool(params.get("ConsistentRead", False)) and index is None
        where = "table" if index is None else f"index:{index}"
        # Kept apart: the minimum a request costs, and what its bytes cost, unrounded. A query whose
        # entries grow with the population costs the larger of the two at scale (docs/cost.md).
        target.usage[f"dynamodb.query_min_units.{where}"] += read_units(0, consistent)
        target.usage[f"dynamodb.query_units.{where}"] += size / READ_UNIT_BYTES * (1 if consistent else 0.5)


def _returns_what_it_read(params: Mapping[str, Any]) -> bool:
    """A Query or Scan whose answer holds every entry it read, whole."""
    narrowing = ("ProjectionExpression", "AttributesToGet", "FilterExpression", "QueryFilter", "ScanFilter")
    return params.get("Select", "ALL_ATTRIBUTES") in (
        "ALL_ATTRIBUTES",
        "ALL_PROJECTED_ATTRIBUTES",
    ) and not any(params.get(name) for name in narrowing)


def _sns_payload(entry: Mapping[str, Any]) -> int:
    """Bytes SNS bills for one message: its body, subject and message attributes."""
    attributes = entry.get("MessageAttributes") or {}
    size = len(str(entry.get("Message", "")).encode()) + len(str(entry.get("Subject", "")).encode())
    for name, attribute in attributes.items():
        value = attribute.get("StringValue") or attribute.get("BinaryValue") or b""
        size += len(name.encode()) + len(attribute.get("DataType", "").encode())
        size += len(value) if isinstance(value, bytes) else len(value.encode())
    return size
