"""The webhook receiver end to end: template.yaml's function URL in the local runner, called as Leap
calls it, with the secret the stack generated (read back from Secrets Manager through its output).

Also the runner's side of function URLs (devtools/local_runner/function_urls.py): the URL the stack
output gives, the payload format 2.0 event on the simulated clock, base64 for a binary body, a result
without statusCode as a 200, and an unhandled error as a 502 recorded like any other failure."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from devtools.local_runner import LocalCloud
from leap_tracker.timeutil import format_instant
from leap_tracker.webhooks import intake
from tests.builders import webhook_delivery

RECEIVER = "WebhookReceiverFunction"


def stack_secret(cloud: LocalCloud) -> str:
    arn = cloud.outputs["WebhookSecretArn"]
    return str(cloud.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])


def post(cloud: LocalCloud, document: Any, secret: str | None) -> tuple[int, dict[str, str], bytes]:
    headers = {"content-type": "application/json", "user-agent": "Leap-Webhooks"}
    if secret is not None:
        headers["X-Api-Key"] = secret
    return cloud.call_function_url(
        cloud.function_url(RECEIVER), "POST", headers, json.dumps(document).encode()
    )


def test_the_stack_output_is_the_function_url_and_the_secret_is_generated_for_the_header(
    default_cloud: LocalCloud,
) -> None:
    cloud = default_cloud
    url = cloud.function_url(RECEIVER)

    assert cloud.outputs["WebhookReceiverUrl"] == url
    assert re.fullmatch(r"https://[0-9a-f]{32}\.lambda-url\.us-east-1\.on\.aws/", url)
    assert re.fullmatch(r"[A-Za-z0-9]{48}", stack_secret(cloud))  # GenerateSecretString, no punctuation
    assert cloud.parameters["WebhookSecretHeader"] == "x-api-key"
    assert cloud.resources.not_emulated == {}


def test_a_delivery_with_the_stack_secret_is_answered_200_and_enqueued_as_received(
    default_cloud: LocalCloud,
) -> None:
    cloud = default_cloud
    now = cloud.advance(minutes=7)
    document = webhook_delivery("meter.created")

    status, headers, body = post(cloud, document, stack_secret(cloud))

    assert (status, headers["content-type"]) == (200, "application/json")
    assert json.loads(body) == {"received": document["webhook_event_id"]}
    (message,) = cloud.drain_queue("WebhookQueue")
    assert message.body == document
    assert message.attributes == {
        intake.QUEUE_ATTR_EVENT_TYPE: "meter.created",
        intake.QUEUE_ATTR_EVENT_ID: document["webhook_event_id"],
        intake.QUEUE_ATTR_RECEIVED_AT: format_instant(now),  # the simulated clock, through timeEpoch
    }
    (record,) = [r for r in cloud.invocations if r.function == RECEIVER]
    assert (record.source, record.failed) == ("function-url", False)


def test_a_wrong_secret_is_refused_and_enqueues_nothing(default_cloud: LocalCloud) -> None:
    cloud = default_cloud

    for secret in ("x" * 48, None, ""):
        status, _, body = post(cloud, webhook_delivery(), secret)
        assert (status, json.loads(body)) == (401, {"message": "unauthorized"})

    assert cloud.drain_queue("WebhookQueue") == []
    assert cloud.drain_queue("WebhookRejectedQueue") == []


def test_an_authenticated_malformed_delivery_is_kept_in_the_rejected_queue(
    default_cloud: LocalCloud,
) -> None:
    cloud = default_cloud

    status, _, _ = post(cloud, webhook_delivery("connect_session.updated", status=None), stack_secret(cloud))

    assert status == 400
    assert cloud.drain_queue("WebhookQueue") == []
    (kept,) = cloud.drain_queue("WebhookRejectedQueue")
    assert kept.attributes[intake.REJECTED_ATTR_REASON] == "connect_session.updated: payload.status: missing"


def test_a_failed_invocation_is_a_502_and_recorded_as_an_error(default_cloud: LocalCloud) -> None:
    cloud = default_cloud
    cloud.fail_next(RECEIVER)

    status, _, _ = post(cloud, webhook_delivery(), stack_secret(cloud))

    assert status == 502
    assert [e.function for e in cloud.errors] == [RECEIVER]
    assert cloud.drain_queue("WebhookQueue") == []
    assert post(cloud, webhook_delivery(), stack_secret(cloud))[0] == 200  # Leap's retry


def test_the_runner_builds_the_payload_format_2_event_and_answers_what_the_handler_returns(
    default_cloud: LocalCloud,
) -> None:
    cloud = default_cloud
    seen: list[dict[str, Any]] = []

    def echo(event: dict[str, Any], _context: Any) -> Any:
        seen.append(event)
        return {"echo": True}  # no statusCode: Lambda answers 200 with this as JSON

    cloud.override_handler(RECEIVER, echo)
    url = cloud.function_url(RECEIVER) + "hooks?x=1"

    text = cloud.call_function_url(url, "post", {"Content-Type": "application/json", "X-A": "1"}, b'{"a": 1}')
    binary = cloud.call_function_url(url, "PUT", {"content-type": "application/octet-stream"}, b"\x00\xff")
    empty = cloud.call_function_url(url, "GET", {}, b"")

    assert text == (200, {"content-type": "application/json"}, b'{"echo": true}')
    assert binary[0] == empty[0] == 200
    first, second, third = seen
    assert first["version"] == "2.0"
    assert (first["rawPath"], first["rawQueryString"]) == ("/hooks", "x=1")
    assert first["headers"] == {"content-type": "application/json", "x-a": "1"}
    assert (first["body"], first["isBase64Encoded"]) == ('{"a": 1}', False)
    assert first["requestContext"]["http"]["method"] == "POST"
    assert first["requestContext"]["timeEpoch"] == int(cloud.now().timestamp() * 1000)
    assert (second["body"], second["isBase64Encoded"]) == ("AP8=", True)
    assert "body" not in third


def test_an_unknown_url_is_an_error(default_cloud: LocalCloud) -> None:
    with pytest.raises(KeyError, match="no function URL"):
        default_cloud.call_function_url("https://0000.lambda-url.us-east-1.on.aws/", "POST", {}, b"{}")
    with pytest.raises(KeyError, match="no FunctionUrlConfig"):
        default_cloud.function_url("PollerFunction")
