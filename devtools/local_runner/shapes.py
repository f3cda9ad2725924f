"""The exact payloads AWS builds, made from what moto returns (pure functions, no I/O).

Shapes follow what Lambda sends (compare ``sam local generate-event dynamodb update`` and
``sam local generate-event sqs receive-message``) and what it writes to on-failure destinations.
"""

from __future__ import annotations

import base64
import json
import traceback
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

STREAM_EVENT_VERSION = "1.1"  # what Lambda puts in DynamoDB stream records (moto says 1.0)
ON_FAILURE_VERSION = "1.0"


def as_lambda_json(value: Any) -> Any:
    """boto3 decodes binary attributes to bytes; Lambda's JSON event carries them base64-encoded."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, Mapping):
        return {key: as_lambda_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [as_lambda_json(item) for item in value]
    return value


def _epoch_seconds(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp())
    return int(value)


def iso_millis(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def iso_seconds(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------- DynamoDB streams


def stream_record(raw: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """One record of a Lambda DynamoDB stream event, from a ``GetRecords`` record."""
    change = raw["dynamodb"]
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": _epoch_seconds(change["ApproximateCreationDateTime"]),
        "Keys": as_lambda_json(change["Keys"]),
    }
    for image in ("NewImage", "OldImage"):
        if image in change:
            dynamodb[image] = as_lambda_json(change[image])
    dynamodb["SequenceNumber"] = change["SequenceNumber"]
    dynamodb["SizeBytes"] = change["SizeBytes"]
    dynamodb["StreamViewType"] = change["StreamViewType"]
    record = {
        "eventID": raw["eventID"],
        "eventName": raw["eventName"],
        "eventVersion": STREAM_EVENT_VERSION,
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }
    if "userIdentity" in raw:  # TTL deletions
        record["userIdentity"] = dict(raw["userIdentity"])
    return record


def stream_batch_info(records: Sequence[Mapping[str, Any]], shard_id: str, stream_arn: str) -> dict[str, Any]:
    first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
    return {
        "shardId": shard_id,
        "startSequenceNumber": first["SequenceNumber"],
        "endSequenceNumber": last["SequenceNumber"],
        "approximateArrivalOfFirstRecord": iso_seconds(
            datetime.fromtimestamp(first["ApproximateCreationDateTime"], UTC)
        ),
        "approximateArrivalOfLastRecord": iso_seconds(
            datetime.fromtimestamp(last["ApproximateCreationDateTime"], UTC)
        ),
        "batchSize": len(records),
        "streamArn": stream_arn,
    }


def stream_on_failure_record(
    *,
    records: Sequence[Mapping[str, Any]],
    shard_id: str,
    stream_arn: str,
    function_arn: str,
    condition: str,
    invoke_count: int,
    function_error: bool,
    now: datetime,
) -> dict[str, Any]:
    """What Lambda sends to a stream mapping's on-failure destination: where the records are, not them."""
    response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if function_error:
        response_context["functionError"] = "Unhandled"
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": response_context,
        "version": ON_FAILURE_VERSION,
        "timestamp": iso_millis(now),
        "DDBStreamBatchInfo": stream_batch_info(records, shard_id, stream_arn),
    }


# ---------------------------------------------------------------------------------------------- SQS


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One record of a Lambda SQS event, from a ``ReceiveMessage`` message."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _lambda_message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def _lambda_message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """SQS API casing (StringValue) becomes Lambda event casing (stringValue)."""
    shaped: dict[str, Any] = {}
    if "StringValue" in value:
        shaped["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        shaped["binaryValue"] = as_lambda_json(value["BinaryValue"])
    shaped["stringListValues"] = list(value.get("StringListValues", []))
    shaped["binaryListValues"] = as_lambda_json(list(value.get("BinaryListValues", [])))
    shaped["dataType"] = value["DataType"]
    return shaped


def filterable_sqs_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """Lambda filters an SQS record with its body parsed when the body is a JSON object."""
    try:
        body = json.loads(record["body"])
    except (TypeError, ValueError):
        return dict(record)
    return {**record, "body": body} if isinstance(body, dict) else dict(record)


# ------------------------------------------------------------------------------ async invocations


def async_on_failure_record(
    *,
    payload: Any,
    function_arn: str,
    invoke_count: int,
    error: BaseException,
    now: datetime,
) -> dict[str, Any]:
    """An asynchronous invocation record, as Lambda sends it to an on-failure destination."""
    return {
        "version": ON_FAILURE_VERSION,
        "timestamp": iso_millis(now),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"{function_arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": error_payload(error),
    }


def error_payload(error: BaseException) -> dict[str, Any]:
    """The body Lambda returns for an unhandled exception."""
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": "",
        "stackTrace": traceback.format_tb(error.__traceback__),
    }
