"""The webhook receiver's handler against moto: a generated secret in Secrets Manager (its current
and, once put again, its previous version), WebhookQueue and WebhookRejectedQueue.

A valid delivery is one message with its attributes and a 200; a wrong secret is a 401 and the queues
stay empty; a SendMessage that fails is a 502 (the handler raises) and is counted; an authenticated
malformed body is a 400 and is kept in the rejected queue with its reason."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from functions.webhook_receiver import app
from leap_tracker.config import load_settings
from leap_tracker.webhooks import intake
from tests.builders import webhook_delivery
from tests.fakes.lambda_runtime import FakeLambdaContext, emf_metrics, logs_in_capture, printed

REGION = "us-east-1"
SECRET = "generatedWebhookSecret0123456789abcdefghij"
RECEIVED = datetime(2025, 1, 6, 9, 0, 5, tzinfo=UTC)


@dataclass
class Stack:
    secret_arn: str
    queue_url: str
    rejected_url: str

    def environment(self) -> dict[str, str]:
        return {
            "WEBHOOK_SECRET_ARN": self.secret_arn,
            "WEBHOOK_QUEUE_URL": self.queue_url,
            "WEBHOOK_REJECTED_QUEUE_URL": self.rejected_url,
        }


@pytest.fixture
def stack() -> Iterator[Stack]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        rejected = sqs.create_queue(QueueName="webhook-rejected")["QueueUrl"]
        queue = sqs.create_queue(QueueName="webhook")["QueueUrl"]
        arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="webhook-secret", SecretString=SECRET
        )["ARN"]
        yield Stack(arn, queue, rejected)


def deps_for(stack: Stack, **environment: str) -> app.Dependencies:
    return app.build_dependencies(load_settings({**stack.environment(), **environment}))


def url_event(
    body: bytes, headers: dict[str, str], *, method: str = "POST", binary: bool = False
) -> dict[str, Any]:
    """A function URL event (payload format 2.0) as Lambda's front end builds it."""
    return {
        "version": "2.0",
        "rawPath": "/",
        "headers": {name.lower(): value for name, value in headers.items()},
        "requestContext": {"http": {"method": method}, "timeEpoch": int(RECEIVED.timestamp() * 1000)},
        "body": base64.b64encode(body).decode() if binary else body.decode("utf-8", "replace"),
        "isBase64Encoded": binary,
    }


def messages(url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    found = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    return found.get("Messages", [])


def attributes(message: dict[str, Any]) -> dict[str, str]:
    return {name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()}


def call(event: dict[str, Any], deps: app.Dependencies) -> dict[str, Any]:
    return app.lambda_handler(event, FakeLambdaContext(), deps)


def test_a_valid_delivery_is_one_message_with_its_attributes_and_a_200(stack: Stack, capsys: Any) -> None:
    body = json.dumps(webhook_delivery("connect_session.updated")).encode()

    with logs_in_capture(app.logger):
        answer = call(url_event(body, {"X-Api-Key": SECRET}), deps_for(stack))

    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"received": "0b6f8a52-6f7e-4a43-9d59-3d5f0c6a1e11"}
    (message,) = messages(stack.queue_url)
    assert message["Body"].encode() == body
    assert attributes(message) == {
        intake.QUEUE_ATTR_EVENT_TYPE: "connect_session.updated",
        intake.QUEUE_ATTR_EVENT_ID: "0b6f8a52-6f7e-4a43-9d59-3d5f0c6a1e11",
        intake.QUEUE_ATTR_RECEIVED_AT: "2025-01-06T09:00:05Z",  # the function URL's time of receipt
    }
    assert messages(stack.rejected_url) == []
    text, lines = printed(capsys)
    assert emf_metrics(lines) == {"WebhooksAccepted": [1.0]}
    assert SECRET not in text
    assert "customer-0001" not in text


def test_an_unknown_type_is_kept_and_counted_apart(stack: Stack, capsys: Any) -> None:
    body = json.dumps(webhook_delivery("meter.deleted", anything={"at": 1})).encode()

    answer = call(url_event(body, {"x-api-key": SECRET}), deps_for(stack))

    assert answer["statusCode"] == 200
    (message,) = messages(stack.queue_url)
    assert attributes(message)[intake.QUEUE_ATTR_EVENT_TYPE] == "meter.deleted"
    assert emf_metrics(printed(capsys)[1]) == {"WebhooksAcceptedUnknownType": [1.0]}


@pytest.mark.parametrize("headers", [{"x-api-key": "not-the-secret"}, {}, {"authorization": SECRET}])
def test_a_wrong_or_missing_secret_is_401_and_the_queues_stay_empty(
    stack: Stack, capsys: Any, headers: dict[str, str]
) -> None:
    body = json.dumps(webhook_delivery()).encode()

    with logs_in_capture(app.logger):
        answer = call(url_event(body, headers), deps_for(stack))

    assert (answer["statusCode"], json.loads(answer["body"])) == (401, {"message": "unauthorized"})
    assert messages(stack.queue_url) == []
    assert messages(stack.rejected_url) == []
    text, lines = printed(capsys)
    assert emf_metrics(lines) == {"WebhooksRefused": [1.0]}
    assert "not-the-secret" not in text
    assert SECRET not in text


def test_a_failed_send_message_is_a_502_counted_and_nothing_answered_2xx(stack: Stack, capsys: Any) -> None:
    deps = deps_for(stack, WEBHOOK_QUEUE_URL=stack.queue_url + "-gone")  # SQS refuses every send
    body = json.dumps(webhook_delivery()).encode()

    with logs_in_capture(app.logger), pytest.raises(ClientError):  # the function URL answers 502
        call(url_event(body, {"x-api-key": SECRET}), deps)

    assert messages(stack.queue_url) == []
    text, lines = printed(capsys)
    assert emf_metrics(lines) == {"WebhookEnqueueFailures": [1.0]}  # flushed although the call failed
    assert "webhook not enqueued" in text


def test_an_authenticated_malformed_body_is_400_and_kept_in_the_rejected_queue(
    stack: Stack, capsys: Any
) -> None:
    body = json.dumps(webhook_delivery("meter.created", meter_id="not-a-uuid")).encode()

    answer = call(url_event(body, {"x-api-key": SECRET}), deps_for(stack))

    assert answer["statusCode"] == 400
    reason = "meter.created: payload.meter_id: not a UUID string"
    assert json.loads(answer["body"]) == {"message": reason}
    assert messages(stack.queue_url) == []
    (kept,) = messages(stack.rejected_url)
    assert kept["Body"].encode() == body
    assert attributes(kept) == {
        intake.REJECTED_ATTR_REASON: reason,
        intake.REJECTED_ATTR_BODY_ENCODING: "text",
        intake.QUEUE_ATTR_RECEIVED_AT: "2025-01-06T09:00:05Z",
    }
    assert emf_metrics(printed(capsys)[1]) == {"WebhooksRejected": [1.0]}


def test_a_malformed_body_the_rejected_queue_does_not_take_is_a_502_too(stack: Stack, capsys: Any) -> None:
    deps = deps_for(stack, WEBHOOK_REJECTED_QUEUE_URL=stack.rejected_url + "-gone")

    with pytest.raises(ClientError):  # never a 400 for a body that is not kept: Leap sends it again
        call(url_event(b"{oops", {"x-api-key": SECRET}), deps)

    assert emf_metrics(printed(capsys)[1]) == {"WebhookEnqueueFailures": [1.0]}


def test_a_binary_body_arrives_base64_and_is_kept_byte_for_byte(stack: Stack) -> None:
    body = b"\x89PNG\r\n\x1a\n\x00"

    answer = call(url_event(body, {"x-api-key": SECRET}, binary=True), deps_for(stack))

    assert answer["statusCode"] == 400
    (kept,) = messages(stack.rejected_url)
    assert base64.b64decode(kept["Body"]) == body
    assert attributes(kept)[intake.REJECTED_ATTR_BODY_ENCODING] == "base64"


def test_a_too_large_body_or_another_method_is_refused_and_not_kept(stack: Stack, capsys: Any) -> None:
    deps = deps_for(stack, WEBHOOK_MAX_BODY_BYTES="1024")
    large = json.dumps(webhook_delivery(padding="p" * 1024)).encode()

    too_large = call(url_event(large, {"x-api-key": SECRET}), deps)
    get = call(url_event(b"", {"x-api-key": SECRET}, method="GET"), deps)

    assert too_large["statusCode"] == 413
    assert (get["statusCode"], get["headers"]["allow"]) == (405, "POST")
    assert messages(stack.queue_url) == messages(stack.rejected_url) == []
    assert emf_metrics(printed(capsys)[1]) == {"WebhooksRejected": [1.0, 1.0]}


def test_during_a_rotation_the_previous_secret_is_accepted_too(stack: Stack) -> None:
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secrets.put_secret_value(
        SecretId=stack.secret_arn, SecretString="theNewSecret0123456789abcdefghijklmnopq"
    )
    deps = deps_for(stack)
    body = json.dumps(webhook_delivery()).encode()

    for value in (SECRET, "theNewSecret0123456789abcdefghijklmnopq"):
        assert call(url_event(body, {"x-api-key": value}), deps)["statusCode"] == 200
    assert call(url_event(body, {"x-api-key": "neither"}), deps)["statusCode"] == 401
    assert len(messages(stack.queue_url)) == 2


def test_a_secret_never_rotated_has_no_previous_version_and_its_absence_is_cached(stack: Stack) -> None:
    reads: list[str] = []
    values = intake_values(stack, reads)

    assert values() == (SECRET,)
    assert values() == (SECRET,)
    assert reads == ["AWSCURRENT", "AWSPREVIOUS"]  # both cached: one read of each stage


def intake_values(stack: Stack, reads: list[str]) -> Any:
    """The handler's secret values, with every GetSecretValue's VersionStage noted."""
    from botocore import handlers

    def note(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "GetSecretValue":
            reads.append(params.get("VersionStage", ""))

    handlers.BUILTIN_HANDLERS.append(("before-parameter-build.secrets-manager", note))
    try:
        return deps_for(stack).secrets
    finally:
        handlers.BUILTIN_HANDLERS.remove(("before-parameter-build.secrets-manager", note))


def test_without_its_configuration_the_handler_fails_its_cold_start() -> None:
    with pytest.raises(Exception, match="WEBHOOK_SECRET_ARN is not set"):
        app.build_dependencies(load_settings({}))
