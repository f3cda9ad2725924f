"""A sample consumer of leap-connect-tracker events: copy it and put your own logic in ``apply``.

Each SQS record is one CloudEvent (the subscription delivers raw). For each event, in this order:

1. Once per event ``id`` (Powertools idempotency on DynamoDB): SNS and SQS deliver at least once,
   and the same change always has the same id, so a redelivered event is skipped.
2. In order per entry: a change event (``connection.*``, ``utility.*``, ``agreement.*``) carries the
   whole entry in ``data.connection`` and the entry's change number in ``sequence``. A conditional
   write keeps, per entry id, the highest sequence applied and refuses a lower one, so an event older
   than one already applied is ignored (a standard queue may deliver out of order; the newer event
   already holds the newer state). Several events of one change share its sequence: equal passes.
   Meter and outreach events have no ``data.connection``: they are applied once, in any order.
3. ``apply``: this sample only logs what it would do.

A record that raises fails alone (partial batch response) and is retried; after 5 receives the queue
moves it to the dead-letter queue, whose alarm fires. Logs carry the event id, type and sequence,
never a Reference ID or entry id: those are your customers' identifiers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

logger = Logger()
# Failed records are reported, even when every record of a batch failed (Powertools would raise then):
# only they come back, and after 5 receives SQS moves each one aside to the dead-letter queue.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class AppliedSequences:
    """Per entry id, the highest ``sequence`` applied (the template's AppliedSequencesTable)."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._dynamodb = dynamodb
        self._table = table_name

    def advance(self, entry_id: str, sequence: int) -> bool:
        """Record ``sequence`` unless a higher one was applied: True if recorded, False if older."""
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"entry_id": {"S": entry_id}},
                UpdateExpression="SET #sequence = :sequence",
                ConditionExpression="attribute_not_exists(#sequence) OR #sequence <= :sequence",
                ExpressionAttributeNames={"#sequence": "sequence"},
                ExpressionAttributeValues={":sequence": {"N": str(sequence)}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True


def apply(event: dict[str, Any]) -> None:
    """Your business logic goes here (update your CRM, notify a team, ...). The sample logs it."""
    connection = event["data"].get("connection") or {}
    logger.info(
        "would apply",
        extra={
            "event_id": event["id"],
            "type": event["type"],
            "sequence": event["sequence"],
            "connection_status": connection.get("connection_status"),
        },
    )


def process_event(*, event: dict[str, Any], sequences: AppliedSequences) -> dict[str, bool]:
    """Steps 2 and 3 for one event (step 1 wraps it). What it returns is stored as the idempotency
    record's result: keep it free of personal data."""
    connection = event["data"].get("connection")
    if connection is not None and not sequences.advance(connection["id"], int(event["sequence"])):
        logger.info(
            "ignored: older than an event applied",
            extra={"event_id": event["id"], "type": event["type"], "sequence": event["sequence"]},
        )
        return {"applied": False}
    # The conditional write above is the decision: do your side effects after it. Two events of one
    # entry processed at the same moment by two invocations can still overlap here; a FIFO queue
    # (Fifo=true, one message group per entry) rules that out.
    apply(event)
    return {"applied": True}


@dataclass(frozen=True, slots=True)
class Dependencies:
    process_once: Callable[..., dict[str, bool]]  # process_event, once per event id
    sequences: AppliedSequences
    idempotency: IdempotencyConfig


@cache
def dependencies() -> Dependencies:
    """Built on the first invocation (cold start) from the environment the template sets; reused."""
    dynamodb = boto3.client("dynamodb")
    config = IdempotencyConfig(
        event_key_jmespath="id",  # the CloudEvent id: the same change always has the same id
        raise_on_no_idempotency_key=True,  # an event without one fails instead of slipping through
        expires_after_seconds=int(os.environ["IDEMPOTENCY_EXPIRY_SECONDS"]),
    )
    store = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"], boto3_client=dynamodb)
    once = idempotent_function(
        process_event, data_keyword_argument="event", persistence_store=store, config=config
    )
    sequences = AppliedSequences(dynamodb, os.environ["APPLIED_SEQUENCES_TABLE"])
    return Dependencies(once, sequences, config)


def record_handler(record: SQSRecord) -> dict[str, bool]:
    deps = dependencies()
    try:
        event = json.loads(record.body)
        return deps.process_once(event=event, sequences=deps.sequences)
    except Exception as error:
        # This record alone fails and is retried. Its message id and the error's kind: no event data.
        logger.warning("event failed", extra={"message_id": record.message_id, "error": type(error).__name__})
        raise


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # An invocation that times out mid-event frees that event's idempotency record for the retry.
    dependencies().idempotency.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
