"""``leap-tracker webhooks register|list|delete|test`` through main([...]): the stack's outputs, parameter and
secrets on moto, the poller's environment from a fake Lambda client (as the other CLI tests), and Leap's
Webhook Subscription API served by the simulator on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devtools.leap_simulator import LeapSimulator
from leap_tracker.leap import wire
from leap_tracker_cli import main as cli
from leap_tracker_cli.webhooks import SAMPLE_PARTNER_REFERENCE

REGION = "us-east-1"
STACK = "leap-connect-tracker"
RECEIVER = "https://abc123xyz.lambda-url.us-east-1.on.aws/"
SECRET = "Q7bX2kLm9PwR4tZs8VnC3yHd6FjU1aEoTiKq5NcWxMzB0AvGg"  # as GenerateSecretString (48, no punctuation)
HEADER = "x-leap-secret"  # the stack's WebhookSecretHeader parameter (not the default, to see it read)


class Receiver:
    """The simulator's transport: what Leap sent, and the answer the receiver gives."""

    def __init__(self) -> None:
        self.status = 200
        self.calls: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    def __call__(self, url: str, headers: Mapping[str, str], body: bytes) -> int:
        self.calls.append((url, dict(headers), json.loads(body)))
        return self.status


class FakeLambda:
    """GetFunctionConfiguration of the poller (moto runs no function; the other CLI tests do the same)."""

    def __init__(self, variables: dict[str, str]) -> None:
        self.variables = variables

    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:
        return {"FunctionName": FunctionName, "Environment": {"Variables": self.variables}}


@dataclass
class World:
    leap: LeapSimulator
    receiver: Receiver
    webhook_secret_arn: str
    api_key_secret_arn: str
    poller: FakeLambda
    environ: dict[str, str] = field(default_factory=dict)

    def client(self, service: str, region_name: str | None = None) -> Any:
        if service == "lambda":
            return self.poller
        return boto3.client(service, region_name=region_name or REGION)

    def run(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
        """(exit status, the --json document or the text, stderr) of ``leap-tracker webhooks argv``."""
        status = cli.main(["webhooks", *argv], environ=self.environ, client=self.client)
        out = capsys.readouterr()
        return status, json.loads(out.out) if "--json" in argv and out.out else out.out, out.err

    def subscriptions(self) -> list[dict[str, Any]]:
        return self.leap.list_webhooks()


@pytest.fixture
def world() -> Iterator[World]:
    receiver = Receiver()
    with LeapSimulator(seed=2, customers=5, webhook_transport=receiver) as leap, mock_aws():
        secrets = boto3.client("secretsmanager", region_name=REGION)
        webhook_secret = secrets.create_secret(Name="WebhookSecret-AbC", SecretString=SECRET)["ARN"]
        api_key = secrets.create_secret(Name="leap-api-key", SecretString=leap.api_key)["ARN"]
        template = {
            "Parameters": {"WebhookSecretHeader": {"Type": "String", "Default": "x-api-key"}},
            "Resources": {"WebhookQueue": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {
                "WebhookReceiverUrl": {"Value": RECEIVER},
                "WebhookSecretArn": {"Value": webhook_secret},
                "PollerFunctionName": {"Value": f"{STACK}-poller"},
            },
        }
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName=STACK,
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": "WebhookSecretHeader", "ParameterValue": HEADER}],
        )
        poller = FakeLambda(
            {
                "LEAP_API_BASE_URL": leap.base_url,
                "LEAP_API_KEY_SECRET_ARN": api_key,
                "LEAP_MAX_RETRIES": "1",
                "LEAP_BACKOFF_FACTOR": "0.001",
            }
        )
        yield World(leap, receiver, webhook_secret, api_key, poller)


def test_register_subscribes_the_stacks_url_to_every_type_with_its_secret_header(world, capsys):
    status, out, err = world.run(capsys, "register", "--stack-name", STACK)

    [subscription] = world.subscriptions()
    assert (status, err) == (0, "")
    assert out.splitlines()[0] == subscription["webhook_id"]
    assert "created" in out
    assert "all 7 event types" in out
    assert subscription["receiver_url"] == RECEIVER
    assert subscription["event_types"] == list(wire.WEBHOOK_EVENT_TYPES)
    assert subscription["headers"] == [{"name": HEADER, "value": SECRET}]
    assert SECRET not in out


def test_register_again_updates_the_same_subscription_with_the_new_secret(world, capsys):
    _, first, _ = world.run(capsys, "register", "--stack-name", STACK, "--json")
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=world.webhook_secret_arn, SecretString="a-rotated-secret-value"
    )

    status, again, _ = world.run(capsys, "register", "--stack-name", STACK, "--json")

    [subscription] = world.subscriptions()
    assert status == 0
    assert (first["action"], again["action"]) == ("created", "updated")
    assert again["webhook_id"] == first["webhook_id"] == subscription["webhook_id"]
    assert subscription["headers"] == [{"name": HEADER, "value": "a-rotated-secret-value"}]
    assert again["secret_header_source"] == f"stack {STACK} parameter WebhookSecretHeader"
    assert again["leap"]["settings_source"].startswith(f"the environment of function {STACK}-poller")
    assert [r.method for r in world.leap.request_log] == ["GET", "POST", "GET", "PUT"]
    assert "a-rotated-secret-value" not in json.dumps(again)


def test_register_with_chosen_types_replaces_the_list(world, capsys):
    world.run(capsys, "register", "--stack-name", STACK)

    status, _, _ = world.run(
        capsys,
        "register",
        "--stack-name",
        STACK,
        "--event-type",
        "meter.created",
        "--event-type",
        "meter.created",
    )

    [subscription] = world.subscriptions()
    assert status == 0
    assert subscription["event_types"] == ["meter.created"]


def test_register_with_a_webhook_id_moves_an_old_subscription_to_the_new_url(world, capsys):
    old = world.leap.create_webhook(
        {"receiver_url": "https://old.lambda-url.us-east-1.on.aws/", "event_types": ["meter.created"]}
    )

    status, document, _ = world.run(capsys, "register", "--stack-name", STACK, "--webhook-id", old, "--json")

    [subscription] = world.subscriptions()
    assert (status, document["webhook_id"], document["action"]) == (0, old, "updated")
    assert subscription["receiver_url"] == RECEIVER
    assert subscription["headers"] == [{"name": HEADER, "value": SECRET}]


def test_register_moves_the_subscription_carrying_the_stacks_secret_to_a_new_url(world, capsys):
    old_url = "https://replaced.lambda-url.us-east-1.on.aws/"
    moved = world.leap.create_webhook(
        {
            "receiver_url": old_url,
            "event_types": ["meter.created"],
            "headers": [{"name": "x-api-key", "value": SECRET}],
        }
    )
    world.leap.create_webhook(
        {"receiver_url": "https://elsewhere.example/", "event_types": ["meter.created"]}
    )

    status, document, _ = world.run(capsys, "register", "--stack-name", STACK, "--json")

    assert (status, document["webhook_id"], document["moved_from"]) == (0, moved, old_url)
    assert [s["receiver_url"] for s in world.subscriptions()] == [RECEIVER, "https://elsewhere.example/"]


def test_register_says_when_other_subscriptions_point_at_the_url(world, capsys):
    for _ in range(2):
        world.leap.create_webhook({"receiver_url": RECEIVER.rstrip("/"), "event_types": ["meter.created"]})

    status, out, _ = world.run(capsys, "register", "--stack-name", STACK)

    assert status == 0
    assert "1 more subscription(s) point at this URL" in out
    assert len(world.subscriptions()) == 2  # updated one, created none


def test_list_masks_the_header_values_and_marks_the_stacks_subscription(world, capsys):
    world.run(capsys, "register", "--stack-name", STACK)
    other = world.leap.create_webhook(
        {
            "receiver_url": "https://elsewhere.example/hook",
            "event_types": ["meter.created"],
            "headers": [{"name": "authorization", "value": "Bearer partner-token"}],
        }
    )

    status, document, _ = world.run(capsys, "list", "--stack-name", STACK, "--json")
    _, text, _ = world.run(capsys, "list", "--stack-name", STACK)

    assert status == 0
    rows = {row["webhook_id"]: row for row in document["subscriptions"]}
    assert rows[other]["headers"] == [{"name": "authorization", "value": "****"}]
    assert [row["this_stack"] for row in document["subscriptions"]] == [True, False]
    for shown in (json.dumps(document), text):
        assert SECRET not in shown
        assert "partner-token" not in shown
    assert "(this stack)" in text


def test_delete_by_id_and_all_for_stack(world, capsys):
    kept = world.leap.create_webhook(
        {"receiver_url": "https://elsewhere.example/hook", "event_types": ["meter.created"]}
    )
    ours = [
        world.leap.create_webhook({"receiver_url": RECEIVER, "event_types": ["meter.created"]})
        for _ in range(2)
    ]

    by_id = world.run(capsys, "delete", ours[0], "--stack-name", STACK)
    status, document, _ = world.run(capsys, "delete", "--all-for-stack", "--stack-name", STACK, "--json")
    nothing_left = world.run(capsys, "delete", "--all-for-stack", "--stack-name", STACK)

    assert by_id[0] == 0
    assert (status, document["deleted"]) == (0, [ours[1]])
    assert [s["webhook_id"] for s in world.subscriptions()] == [kept]
    assert nothing_left[0] == 0
    assert "no subscription" in nothing_left[1]


def test_an_unknown_subscription_is_exit_status_2(world, capsys):
    unknown = "9f0c2a52-7f55-4b55-9e1f-3c1f3f6f4a10"

    for argv in (("delete", unknown), ("test", unknown), ("register", "--webhook-id", unknown)):
        status, out, err = world.run(capsys, *argv, "--stack-name", STACK)
        assert (status, out) == (2, "")
        assert f"Leap has no subscription {unknown}" in err


def test_test_sends_a_synthetic_meter_created_and_reports_the_answer(world, capsys):
    world.run(capsys, "register", "--stack-name", STACK)

    status, document, _ = world.run(capsys, "test", "--stack-name", STACK, "--json")
    world.receiver.status = 401
    refused, text, _ = world.run(capsys, "test", "--stack-name", STACK)

    assert (status, document["is_successful"], document["status_code"]) == (0, True, 200)
    [(url, headers, body), _] = world.receiver.calls
    assert (url, headers[HEADER]) == (RECEIVER, SECRET)
    assert body["payload"]["webhook_event_type"] == "meter.created"
    assert body["payload"]["partner_reference"] == SAMPLE_PARTNER_REFERENCE
    assert wire.METERS_REFERENCE_ID_PATTERN.fullmatch(SAMPLE_PARTNER_REFERENCE)
    assert refused == 1
    assert "NOT accepted" in text
    assert "401" in text


def test_test_without_an_id_needs_exactly_one_subscription_at_the_url(world, capsys):
    status, _, err = world.run(capsys, "test", "--stack-name", STACK)

    assert status == 2
    assert "no subscription points at" in err


def test_a_key_leap_refuses_is_exit_status_1_naming_the_environment(world, capsys):
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=world.api_key_secret_arn, SecretString="a-stale-key"
    )

    status, out, err = world.run(capsys, "list", "--stack-name", STACK)

    assert (status, out) == (1, "")
    assert f"Leap: Leap rejected the API key (401) for the Leap environment at {world.leap.base_url}" in err
    assert "LEAP_API_KEY_SECRET_ARN" in err


def test_without_a_stack_the_variables_say_where_everything_is(world, capsys):
    world.environ.update(
        {
            "WEBHOOK_RECEIVER_URL": RECEIVER,
            "WEBHOOK_SECRET_ARN": world.webhook_secret_arn,
            "LEAP_API_BASE_URL": world.leap.base_url,
            "LEAP_API_KEY": world.leap.api_key,
        }
    )

    status, document, _ = world.run(capsys, "register", "--json")

    [subscription] = world.subscriptions()
    assert status == 0
    assert subscription["headers"] == [{"name": wire.DEFAULT_WEBHOOK_SECRET_HEADER, "value": SECRET}]
    assert document["receiver_url_source"] == "WEBHOOK_RECEIVER_URL"
    assert document["leap"]["settings_source"] == "this machine's environment"


def test_what_register_cannot_find_is_exit_status_2_saying_what_to_pass(world, capsys):
    status, out, err = world.run(capsys, "register")

    assert (status, out) == (2, "")
    assert "cannot find the webhook receiver URL: pass --stack-name or --receiver-url" in err
