"""webhook_receiver: Leap's webhook deliveries, through a Lambda function URL (docs/webhooks.md#receiver).

Thin: the function URL's request (payload format 2.0) goes to ``leap_tracker.webhooks.intake.receive``
with the secret's accepted values (current and, during a rotation, previous). Then:

- accepted: the body, exactly as received, is sent to WebhookQueue with its type, id and time of
  receipt as attributes, and only once SendMessage succeeded the answer is 200. The work is the
  processor's, later. A failed SendMessage is counted and raised: the function URL answers 502 and
  Leap sends the delivery again;
- refused as malformed after authenticating (400): the body is kept in WebhookRejectedQueue with the
  reason as an attribute (its alarm tells an operator), then answered 400; if that send fails it raises
  too (502), so a refusal is never lost either;
- any other refusal (401 wrong or missing secret, 405, 413) is answered and counted; nothing is kept.

Log lines carry the status, the reason, the delivery's id and type: never a header or a body value.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from leap_tracker.adapters.aws import aws_client
from leap_tracker.adapters.metrics import add_count
from leap_tracker.adapters.secrets import SecretValues, rotating_secret
from leap_tracker.adapters.webhook_queue import WebhookQueue
from leap_tracker.config import Settings, load_settings, require
from leap_tracker.privacy import excerpt
from leap_tracker.timeutil import utc_now
from leap_tracker.webhooks.intake import (
    Accepted,
    IntakeRules,
    QueueMessage,
    Refused,
    queue_message,
    receive,
    rejected_message,
)

logger = Logger()
metrics = Metrics()


@dataclass(frozen=True, slots=True)
class Dependencies:
    secrets: SecretValues
    queue: WebhookQueue
    rules: IntakeRules


def build_dependencies(settings: Settings, client: Callable[[str], Any] = aws_client) -> Dependencies:
    """What the handler works with, from its settings; ``client`` makes the AWS clients by service."""
    webhooks = settings.webhooks
    secret_arn = require(webhooks.secret_arn, "WEBHOOK_SECRET_ARN")
    queue = WebhookQueue(
        client("sqs"),
        require(webhooks.queue_url, "WEBHOOK_QUEUE_URL"),
        require(webhooks.rejected_queue_url, "WEBHOOK_REJECTED_QUEUE_URL"),
    )
    rules = IntakeRules(webhooks.secret_header, webhooks.max_body_bytes)
    return Dependencies(rotating_secret(secret_arn, webhooks.secret_cache_seconds), queue, rules)


@cache
def dependencies() -> Dependencies:
    """Built from the environment on the first invocation (cold start), reused while it is warm."""
    return build_dependencies(load_settings())


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    headers: dict[str, str]
    body: bytes
    received_at: datetime  # when the function URL took the request

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Request:
        """A function URL event (payload format 2.0): a binary body arrives base64-encoded."""
        context = event.get("requestContext") or {}
        raw = event.get("body") or ""
        body = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw.encode("utf-8")
        epoch_ms = context.get("timeEpoch")
        received_at = datetime.fromtimestamp(epoch_ms / 1000, UTC) if epoch_ms else utc_now()
        method = str((context.get("http") or {}).get("method", ""))
        return cls(method, dict(event.get("headers") or {}), body, received_at)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, deps: Dependencies | None = None
) -> dict[str, Any]:
    """The Lambda entry point; without ``deps`` it uses the cold start's (tests pass their own)."""
    deps = deps or dependencies()  # a configuration error fails the invocation: 502, Leap retries
    request = Request.from_event(event)
    outcome = receive(request.method, request.headers, request.body, deps.secrets(), deps.rules)
    if isinstance(outcome, Accepted):
        return accept(outcome, request, deps)
    return refuse(outcome, request, deps)


def accept(accepted: Accepted, request: Request, deps: Dependencies) -> dict[str, Any]:
    line = {
        "event_id": accepted.event_id,
        "event_type": excerpt(accepted.event_type),
        "known": accepted.known,
    }
    enqueue(deps.queue.send, queue_message(accepted, request.received_at), line)
    add_count(metrics, "WebhooksAccepted", int(accepted.known))
    add_count(metrics, "WebhooksAcceptedUnknownType", int(not accepted.known))
    logger.info("webhook accepted", extra=line)
    return response(200, {"received": accepted.event_id})


def refuse(refused: Refused, request: Request, deps: Dependencies) -> dict[str, Any]:
    line = {"status": refused.status, "reason": refused.reason, "bytes": len(request.body)}
    if refused.status == 400:  # authenticated, so Leap's: kept for an operator (docs/webhooks.md)
        enqueue(deps.queue.send_rejected, rejected_message(request.body, refused, request.received_at), line)
        line["kept_in_rejected_queue"] = True
    add_count(metrics, "WebhooksRefused", int(refused.status == 401))  # not who it should be
    add_count(metrics, "WebhooksRejected", int(refused.status != 401))  # not what it should be
    logger.warning("webhook refused", extra=line)
    if refused.status == 401:  # the caller learns nothing about the header it got wrong
        return response(401, {"message": "unauthorized"})
    headers = {"allow": "POST"} if refused.status == 405 else {}
    return response(refused.status, {"message": refused.reason}, headers)


def enqueue(send: Callable[[QueueMessage], str], message: QueueMessage, line: dict[str, Any]) -> None:
    """Send, or count the failure and raise it: the function URL answers 502 and Leap sends the call
    again, never a 2xx (or a 400) for a body that is not kept."""
    try:
        send(message)
    except Exception:
        add_count(metrics, "WebhookEnqueueFailures", 1)
        logger.exception("webhook not enqueued: answering 502 so that Leap sends it again", extra=line)
        raise


def response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A function URL result: Lambda's front end answers with this status, headers and body."""
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(body),
    }
