"""The hardened configuration end to end: a customer managed key and partner accounts (docs/security.md).

The stack comes up with ``KmsKeyArn`` (a key created in moto's KMS first) and ``SubscriberAccountIds``,
outreach on both channels. Then: a poll -> events -> a partner's queue round trip, the sweeps and
follow-ups of three days, and two checks moto cannot make itself:

- every AWS call each function's code made is allowed by that function's role as the template
  declares it (action, exact resource ARN, and the ``dynamodb:LeadingKeys`` of every key it touched):
  least privilege that is too tight fails here, before it fails in AWS;
- the key is on every queue, topic and the table as moto created them, and the events topic's policy
  lets the partner accounts subscribe.

moto enforces neither IAM nor KMS nor topic policies: what runs is the real code on the real template.
"""

from __future__ import annotations

import copy
import fnmatch
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore import handlers
from moto import mock_aws

from devtools.leap_simulator import LeapSimulator
from devtools.local_runner import LocalCloud
from devtools.webhook_receiver import WebhookReceiver
from leap_tracker.events.diff import change_events
from tests.builders import webhook_delivery
from tests.e2e.conftest import E2E_START, TEMPLATE

FUNCTIONS = (
    "PollerFunction",
    "EmitterFunction",
    "OutreachFunction",
    "MeterWatchFunction",
    "MeterSweepFunction",
    "WebhookReceiverFunction",
)
# Functions that log no customer, so never read the log hash key.
WITHOUT_LOG_HASH_KEY = {"WebhookReceiverFunction"}
SCHEDULED = ("PollerFunction", "MeterSweepFunction", "OutreachFunction")
PARTNERS = ["111111111111", "222222222222"]
STEP, STEPS = timedelta(hours=6), 14  # three and a half days: clicks, completions, first meter checks
CHANGE_KINDS = ("connection", "utility", "agreement")  # the emitter's events (outreach and meters add theirs)
# Actions whose IAM name differs from the API operation.
IAM_ACTIONS = {("sns", "PublishBatch"): "sns:Publish"}


@pytest.fixture
def leap() -> Iterator[LeapSimulator]:
    """Overrides conftest's: customers who click within two days, so completions come early."""
    with LeapSimulator(seed=5, customers=24, start=E2E_START, click_window=timedelta(days=2)) as simulator:
        yield simulator


@dataclass
class CallLog:
    """Every AWS request the functions' code makes: (function, service, operation, parameters)."""

    current: str | None = None
    calls: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)

    def record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.current is not None:
            self.calls.append(
                (self.current, model.service_model.service_name, model.name, copy.deepcopy(params))
            )

    def wrapper(self, function: str) -> Callable[[Any], Any]:
        def wrap(handler: Any) -> Any:
            def as_function(event: Any, context: Any) -> Any:
                self.current = function
                try:
                    return handler(event, context)
                finally:
                    self.current = None

            return as_function

        return wrap


@pytest.fixture
def call_log() -> Iterator[CallLog]:
    """Hooked into every botocore session created meanwhile (the handlers create theirs lazily)."""
    log = CallLog()
    entry = ("before-parameter-build", log.record)
    handlers.BUILTIN_HANDLERS.append(entry)
    try:
        yield log
    finally:
        handlers.BUILTIN_HANDLERS.remove(entry)


@pytest.fixture
def hardened(leap: LeapSimulator, webhook: WebhookReceiver, call_log: CallLog) -> Iterator[LocalCloud]:
    with mock_aws():  # the outer mock: the key exists before the stack that names it
        key_arn = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
        with LocalCloud(
            TEMPLATE,
            start=E2E_START,
            parameters={
                "LeapApiBaseUrl": leap.base_url,
                "KmsKeyArn": key_arn,
                "SubscriberAccountIds": ",".join(PARTNERS),
                "OutreachChannels": "webhook,topic",
                "OutreachWebhookUrl": webhook.url,
            },
            secrets={"LeapApiKeySecretArn": leap.api_key, "OutreachWebhookSecretArn": webhook.secret},
        ) as cloud:
            cloud.on_advance(lambda now, _delta: leap.set_time(now))
            for function in FUNCTIONS:
                cloud.wrap_handler(function, call_log.wrapper(function))
            yield cloud


def test_with_a_partner_key_and_partner_accounts_events_reach_a_partner_and_every_call_is_allowed(
    hardened: LocalCloud, leap: LeapSimulator, webhook: WebhookReceiver, call_log: CallLog
) -> None:
    cloud = hardened
    partner = cloud.subscribe_queue("EventsTopic")

    cloud.advance(hours=12)  # some customers have clicked
    cloud.fire_schedule("PollerFunction")
    cloud.drain()
    changes = [m.body for m in cloud.drain_queue(partner) if m.body["type"].split(".")[0] in CHANGE_KINDS]
    first = {event["id"] for event in changes}
    expected = {e["id"] for entry in leap.entries_at(cloud.now()) for e in change_events(None, entry, 1)}
    assert expected
    assert first == expected  # the round trip: poll -> table -> stream -> topic -> partner's queue

    received = []
    for _ in range(STEPS):
        cloud.advance(hours=STEP.total_seconds() / 3600)
        for function in SCHEDULED:
            cloud.fire_schedule(function)
        cloud.drain()
        received += cloud.drain_queue(partner)
    types = {message.body["type"] for message in received}
    assert {"connection.completed", "outreach.sent", "meter.appeared"} <= types
    assert cloud.drain_queue("OutreachRequestsQueue")  # the topic channel, through the encrypted topic
    assert webhook.accepted()  # the webhook channel, signed with the secret the function read
    assert deliver_a_webhook(cloud) == 200  # Leap's push: the receiver's secret read and its enqueue
    assert cloud.errors == []

    denied = [call for call in call_log.calls if not allowed(cloud, *call)]
    assert denied == []
    assert {function for function, *_ in call_log.calls} == set(FUNCTIONS)

    keys = encryption_keys(cloud)
    assert len(keys) == len(cloud.resources.of_type("AWS::SQS::Queue")) + 4  # 3 topics, the table
    assert keys == dict.fromkeys(keys, cloud.parameters["KmsKeyArn"])
    log_hash_key = cloud.resources["LogHashKeySecret"].ref
    secret = cloud.client("secretsmanager").describe_secret(SecretId=log_hash_key)
    assert secret["KmsKeyId"] == cloud.parameters["KmsKeyArn"]
    readers = {
        function
        for function, service, operation, params in call_log.calls
        if (service, operation) == ("secretsmanager", "GetSecretValue") and params["SecretId"] == log_hash_key
    }
    assert readers == set(FUNCTIONS) - WITHOUT_LOG_HASH_KEY  # each read the key its role allows
    policy = json.loads(
        cloud.client("sns").get_topic_attributes(TopicArn=cloud.resources.topic_arn("EventsTopic"))[
            "Attributes"
        ]["Policy"]
    )
    (partners,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert (partners["Principal"], partners["Action"]) == ({"AWS": PARTNERS}, "sns:Subscribe")


def deliver_a_webhook(cloud: LocalCloud) -> int:
    """One delivery to the receiver's function URL, with the secret the stack generated."""
    secret = cloud.client("secretsmanager").get_secret_value(SecretId=cloud.outputs["WebhookSecretArn"])
    headers = {"x-api-key": secret["SecretString"], "content-type": "application/json"}
    body = json.dumps(webhook_delivery()).encode()
    return cloud.call_function_url(cloud.function_url("WebhookReceiverFunction"), "POST", headers, body)[0]


def encryption_keys(cloud: LocalCloud) -> dict[str, str | None]:
    """The KMS key of every queue, topic and table of the stack, as moto holds them."""
    sqs, sns, dynamodb = cloud.client("sqs"), cloud.client("sns"), cloud.client("dynamodb")
    keys: dict[str, str | None] = {}
    for queue in cloud.resources.of_type("AWS::SQS::Queue"):
        attributes = sqs.get_queue_attributes(QueueUrl=queue.ref, AttributeNames=["All"])["Attributes"]
        keys[queue.logical_id] = attributes.get("KmsMasterKeyId")
    for topic in cloud.resources.of_type("AWS::SNS::Topic"):
        keys[topic.logical_id] = sns.get_topic_attributes(TopicArn=topic.ref)["Attributes"].get(
            "KmsMasterKeyId"
        )
    for table_ in cloud.resources.of_type("AWS::DynamoDB::Table"):
        description = dynamodb.describe_table(TableName=table_.ref)["Table"]
        keys[table_.logical_id] = description.get("SSEDescription", {}).get("KMSMasterKeyArn")
    return keys


# --- what the role allows -------------------------------------------------------------------------


def allowed(cloud: LocalCloud, function: str, service: str, operation: str, params: dict[str, Any]) -> bool:
    """Whether the function's role, as resolved from the template, allows this request."""
    action = IAM_ACTIONS.get((service, operation), f"{service}:{operation}")
    resource, keys = target(cloud, service, operation, params)
    role = cloud.resources.find_by_attribute("Arn", cloud.resources[function].properties["Role"])
    for policy in role.properties["Policies"]:
        for statement in as_list(policy["PolicyDocument"]["Statement"]):
            if (
                statement["Effect"] == "Allow"
                and any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in as_list(statement["Action"]))
                and any(fnmatch.fnmatchcase(resource, r) for r in as_list(statement["Resource"]))
                and condition_holds(statement.get("Condition"), keys)
            ):
                return True
    return False


def target(
    cloud: LocalCloud, service: str, operation: str, params: dict[str, Any]
) -> tuple[str, list[str] | None]:
    """The resource ARN a request acts on and, for DynamoDB items, the partition keys it touches."""
    if service == "dynamodb":
        return dynamodb_target(cloud, operation, params)
    if service == "sns":
        return params["TopicArn"], None
    if service == "sqs":  # https://sqs.<region>.amazonaws.com/<account>/<name>
        account, name = params["QueueUrl"].rstrip("/").split("/")[-2:]
        return f"arn:aws:sqs:{cloud.region}:{account}:{name}", None
    if service == "secretsmanager":
        return params["SecretId"], None
    raise AssertionError(f"a call this test does not know how to authorize: {service}.{operation}")


def dynamodb_target(
    cloud: LocalCloud, operation: str, params: dict[str, Any]
) -> tuple[str, list[str] | None]:
    tables = {t.ref: t.attributes["Arn"] for t in cloud.resources.of_type("AWS::DynamoDB::Table")}
    if operation in ("BatchGetItem", "BatchWriteItem"):
        ((name, request),) = params["RequestItems"].items()
        if operation == "BatchGetItem":
            items = request["Keys"]
        else:
            items = [r.get("PutRequest", {}).get("Item") or r["DeleteRequest"]["Key"] for r in request]
        return tables[name], [item["pk"]["S"] for item in items]
    arn = tables[params["TableName"]]
    if operation == "Query" and "IndexName" in params:  # no leading keys: a fenced statement refuses it
        return f"{arn}/index/{params['IndexName']}", None
    if operation == "Query":  # on the table: the partition its key condition names is the leading key
        return arn, [queried_partition(params)]
    item = params.get("Key") or params["Item"]
    return arn, [item["pk"]["S"]]


def queried_partition(params: dict[str, Any]) -> str:
    """The pk value a table Query's KeyConditionExpression sets (``<pk name> = <value>``)."""
    names = params.get("ExpressionAttributeNames", {})
    for clause in params["KeyConditionExpression"].split(" AND "):
        name, equals, value = clause.partition("=")
        if equals and names.get(name.strip(), name.strip()) == "pk":
            return params["ExpressionAttributeValues"][value.strip()]["S"]
    raise AssertionError(f"a Query this test cannot read the partition of: {params}")


def condition_holds(condition: dict[str, Any] | None, keys: list[str] | None) -> bool:
    if condition is None:
        return True
    ((operator, values),) = condition.items()
    ((name, patterns),) = values.items()
    assert name == "dynamodb:LeadingKeys", f"a condition this test cannot evaluate: {condition}"
    if keys is None:
        return False
    if operator == "ForAllValues:StringEquals":
        return all(key in patterns for key in keys)
    assert operator == "ForAllValues:StringLike", f"a condition this test cannot evaluate: {condition}"
    return all(any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns) for key in keys)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
