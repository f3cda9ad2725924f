"""The template's security posture (docs/security.md), read from the TRANSFORMED template: what deploys.

- No wildcard, no AWS managed policy: every Allow statement of every IAM policy, each ``Fn::If`` taken
  both ways, names exact actions on exact resources, except the actions AWS gives no resource-level
  permission (:data:`NO_RESOURCE_LEVEL_PERMISSION`, with the reason). Planted wildcards are reported.
- Least privilege per function: each role grants exactly what the function's code calls
  (:func:`code_grants`, item families by ``leap_tracker.table`` prefix) plus what Lambda does with the
  role on its behalf (:func:`lambda_grants`: logs, traces, the event source mapping, destinations,
  the key), each on the exact resource; schedule roles invoke one function and feed one queue.
- Encryption: ``KmsKeyArn`` reaches every table, topic, queue, log group and schedule; empty keeps
  AWS managed keys. Transport: every queue and topic refuses non-TLS requests. Partner accounts:
  ``SubscriberAccountIds`` may ``sns:Subscribe`` their sqs and lambda endpoints, nothing else.

The e2e counterpart (tests/e2e/test_security_e2e.py) checks every AWS call the functions really make
against these roles as the local runner resolved them.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cfnlint.api import lint

from devtools.local_runner.template import (
    TemplateError,
    broken_rules,
)
from leap_tracker import table
from tests.templates import (
    CONFIGURATIONS,
    KEY_ARN,
    LEAP_KEY_ARN,
    PARTNERS,
    PSEUDO,
    REGION,
    as_list,
    configurations,
    deployed,
    of_type,
    parameters,
    sam_template,
    stack,
)

# The only Allow statements that may name Resource "*": AWS offers no resource-level permission.
NO_RESOURCE_LEVEL_PERMISSION = {
    "xray:PutTraceSegments": "no resource-level permission in X-Ray (Lambda's active tracing sends segments)",
    "xray:PutTelemetryRecords": "no resource-level permission in X-Ray",
    "dynamodb:ListStreams": "no resource-level permission; the stream mapping lists stream ARNs (no data)",
}

# Item families, as dynamodb:LeadingKeys patterns over the partition key (leap_tracker.table).
CONNECTIONS = table.CONNECTION_PREFIX + "*"
QUARANTINE = table.QUARANTINE_PREFIX + "*"
OUTREACH = table.OUTREACH_PREFIX + "*"
WATCHES = table.WATCH_PREFIX + "*"
HISTORY = table.HISTORY_PREFIX + "*"
FAILURE_MARKERS = table.EMITTER_FAILURE_PK
POLLER = table.POLLER_PK
TARGETED = table.TARGETED_PREFIX + "*"
WEBHOOK_RECORDS = table.WEBHOOK_PREFIX + "*"
REMEMBERED_METERS = table.REMEMBERED_METER_PREFIX + "*"
TABLE = "ConnectionsTable.Arn"
DUE_INDEX = f"{TABLE}/index/{table.DUE_INDEX}"
FUNNEL_INDEX = f"{TABLE}/index/{table.FUNNEL_INDEX}"
REF_INDEX = f"{TABLE}/index/{table.REF_INDEX}"

INSIGHT_FILES = "InsightBucket.Arn/insight/*"  # the one object prefix the insight function writes
# The only Allow statements whose resource may hold a "*": an S3 object prefix of the stack's bucket.
OBJECT_PREFIXES = {("s3:PutObject",): "${InsightBucket.Arn}/insight/*"}

Grant = tuple[str, str, tuple[str, ...] | None]  # (action, resource, leading keys or None)
LOG_HASH_KEY: Grant = ("secretsmanager:GetSecretValue", "LogHashKeySecret", None)


def code_grants(parameters: dict[str, Any]) -> dict[str, set[Grant]]:
    """What each function's code calls (functions/<name>/app.py and the adapters it uses)."""

    def on_table(actions: str, *families: str) -> set[Grant]:
        return {(f"dynamodb:{action}", TABLE, tuple(sorted(families))) for action in actions.split()}

    webhook_secret = parameters["OutreachWebhookSecretArn"]
    grants = {
        "PollerFunction": on_table("BatchGetItem BatchWriteItem", CONNECTIONS, QUARANTINE, HISTORY)
        | on_table("GetItem PutItem UpdateItem DeleteItem", POLLER)
        | on_table("GetItem UpdateItem", TARGETED)  # targeted polls' marks (adapters/poll_requests.py)
        | {
            ("dynamodb:Query", FUNNEL_INDEX, None),  # the funnel count (adapters/funnel.py)
            ("secretsmanager:GetSecretValue", LEAP_KEY_ARN, None),
            ("sqs:ChangeMessageVisibility", "PollRequestQueue.Arn", None),  # a request not due yet
            ("sqs:SendMessage", "PollRequestQueue.Arn", None),  # a request requeued (webhooks.targeted)
        },
        "EmitterFunction": on_table("Query BatchWriteItem", FAILURE_MARKERS)  # its failure markers
        | {("sns:Publish", "EventsTopic", None)},
        "OutreachFunction": on_table("GetItem BatchGetItem", CONNECTIONS, OUTREACH)
        | on_table("PutItem UpdateItem", OUTREACH)
        | {
            ("dynamodb:Query", DUE_INDEX, None),
            ("sqs:ChangeMessageVisibility", "OutreachQueue.Arn", None),  # a deferral
            ("sns:Publish", "EventsTopic", None),  # audit events
            ("sns:Publish", "OutreachTopic", None),  # the topic channel
        }
        | ({("secretsmanager:GetSecretValue", webhook_secret, None)} if webhook_secret else set()),
        "MeterWatchFunction": on_table("GetItem PutItem", WATCHES)
        | on_table("Query", REMEMBERED_METERS)  # a watch opening satisfied (adapters/remembered_meters.py)
        | {("sns:Publish", "EventsTopic", None)},  # its meter.appeared
        "WebhookProcessorFunction": on_table("GetItem PutItem", WATCHES, WEBHOOK_RECORDS)
        | on_table("BatchWriteItem", REMEMBERED_METERS)
        | {
            ("dynamodb:Query", REF_INDEX, None),  # the watches of a Reference ID (adapters/watch_store.py)
            ("sns:Publish", "EventsTopic", None),
            ("secretsmanager:GetSecretValue", LEAP_KEY_ARN, None),
            ("sqs:ChangeMessageVisibility", "WebhookQueue.Arn", None),  # an unconfirmed meter deferred
            ("sqs:SendMessage", "PollRequestQueue.Arn", None),  # adapters/poll_requests.py
        },
        "MeterSweepFunction": on_table("BatchGetItem", CONNECTIONS)
        | on_table("PutItem", WATCHES)
        | {
            ("dynamodb:Query", DUE_INDEX, None),
            ("sns:Publish", "EventsTopic", None),
            ("secretsmanager:GetSecretValue", LEAP_KEY_ARN, None),
        },
    }
    # Every function that logs a customer reads the stack's log hash key once per cold start
    # (adapters/secrets.py); the insight function logs counts only.
    grants = {function: wanted | {LOG_HASH_KEY} for function, wanted in grants.items()}
    grants["InsightFunction"] = {("dynamodb:Scan", TABLE, None), ("s3:PutObject", INSIGHT_FILES, None)}
    # The webhook receiver logs no customer (no log hash key): it reads its secret's versions and sends
    # accepted deliveries to its queue, authenticated bodies it refused as malformed to its rejected queue.
    grants["WebhookReceiverFunction"] = {
        ("secretsmanager:GetSecretValue", "WebhookSecret", None),
        ("sqs:SendMessage", "WebhookQueue.Arn", None),
        ("sqs:SendMessage", "WebhookRejectedQueue.Arn", None),
    }
    return grants


# --- the template as it deploys -------------------------------------------------------------------


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role.get("Policies", []) for s in as_list(policy["PolicyDocument"]["Statement"])]


def grants(role: dict[str, Any]) -> set[Grant]:
    """The role's Allow statements as (action, resource, leading keys) triples."""
    found: set[Grant] = set()
    for statement in statements(role):
        assert statement["Effect"] == "Allow", statement
        keys = leading_keys(statement.get("Condition"))
        for action, resource in itertools.product(
            as_list(statement["Action"]), as_list(statement["Resource"])
        ):
            found.add((action, resource, keys))
    return found


def leading_keys(condition: dict[str, Any] | None) -> tuple[str, ...] | None:
    """The dynamodb:LeadingKeys patterns of a condition, the only condition a function role uses."""
    if condition is None:
        return None
    ((operator, keys),) = condition.items()
    assert operator in ("ForAllValues:StringLike", "ForAllValues:StringEquals"), condition
    assert list(keys) == ["dynamodb:LeadingKeys"], condition
    values = tuple(sorted(keys["dynamodb:LeadingKeys"]))
    exact = all("*" not in value for value in values)
    assert exact == (operator == "ForAllValues:StringEquals"), f"patterns need StringLike: {condition}"
    return values


def role_of(properties: dict[str, Any], key: str = "Role") -> str:
    reference = properties[key]
    assert reference.endswith(".Arn"), f"{key} must be a role of the stack, not {reference!r}"
    return reference.removesuffix(".Arn")


def lambda_grants(resources: dict[str, dict[str, Any]], function: str, key: str | None) -> set[Grant]:
    """What Lambda does with the function's role: logs, traces, its mappings, its destinations, the key."""
    properties = resources[function]["Properties"]
    found: set[Grant] = {
        ("logs:CreateLogStream", f"{properties['LoggingConfig']['LogGroup']}.Arn", None),
        ("logs:PutLogEvents", f"{properties['LoggingConfig']['LogGroup']}.Arn", None),
    }
    if properties.get("TracingConfig", {}).get("Mode") == "Active":
        found |= {(action, "*", None) for action in ("xray:PutTraceSegments", "xray:PutTelemetryRecords")}
    destinations = []
    for mapping in of_type(resources, "AWS::Lambda::EventSourceMapping").values():
        if mapping["FunctionName"] != function:
            continue
        source = mapping["EventSourceArn"]
        if source.endswith("StreamArn"):
            found |= {
                (f"dynamodb:{a}", source, None) for a in ("DescribeStream", "GetRecords", "GetShardIterator")
            }
            found.add(("dynamodb:ListStreams", "*", None))
        else:
            found |= {
                (f"sqs:{a}", source, None) for a in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")
            }
        destinations.append(mapping.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"))
    for config in of_type(resources, "AWS::Lambda::EventInvokeConfig").values():
        if config["FunctionName"] == function:
            destinations.append(config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"))
    found |= {("sqs:SendMessage", destination, None) for destination in destinations if destination}
    if key:
        found.add(("kms:Decrypt", key, None))  # the table, its stream, the queues it reads
    return found


def needs_data_keys(role_grants: set[Grant]) -> bool:
    """A role that sends to a queue or publishes to a topic encrypts: it needs kms:GenerateDataKey."""
    return any(action in ("sqs:SendMessage", "sns:Publish") for action, _, _ in role_grants)


# --- least privilege ------------------------------------------------------------------------------


@configurations
def test_each_function_role_grants_what_its_code_calls_and_what_lambda_does_for_it(
    overrides: dict[str, str],
) -> None:
    resources = stack(overrides)
    key = overrides.get("KmsKeyArn")
    expected = code_grants(parameters(sam_template(), overrides))
    functions = of_type(resources, "AWS::Lambda::Function")

    assert set(functions) == set(expected)
    for function, properties in functions.items():
        wanted = expected[function] | lambda_grants(resources, function, key)
        if key and needs_data_keys(wanted):
            wanted.add(("kms:GenerateDataKey", key, None))
        role = resources[role_of(properties)]["Properties"]

        assert grants(role) == wanted, function
        assert role["AssumeRolePolicyDocument"]["Statement"] == [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]


@configurations
def test_each_schedule_role_invokes_its_function_and_feeds_its_own_dead_letter_queue(
    overrides: dict[str, str],
) -> None:
    resources = stack(overrides)
    key = overrides.get("KmsKeyArn")
    schedules = of_type(resources, "AWS::Scheduler::Schedule")
    functions = of_type(resources, "AWS::Lambda::Function")

    assert len(schedules) == 4
    for name, schedule in schedules.items():
        target = schedule["Target"]
        dead_letters = target["DeadLetterConfig"]["Arn"]
        wanted = {("lambda:InvokeFunction", target["Arn"], None), ("sqs:SendMessage", dead_letters, None)}
        if key:
            wanted |= {("kms:Decrypt", key, None), ("kms:GenerateDataKey", key, None)}
        role = resources[role_of(target, "RoleArn")]["Properties"]

        assert grants(role) == wanted, name
        assert role["AssumeRolePolicyDocument"]["Statement"] == [
            {
                "Effect": "Allow",
                "Principal": {"Service": "scheduler.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": PSEUDO["AWS::AccountId"]}},
            }
        ]
        assert schedule.get("KmsKeyArn") == key
        assert resources[dead_letters.removesuffix(".Arn")]["Type"] == "AWS::SQS::Queue"  # the stack's own
    roles = set(of_type(resources, "AWS::IAM::Role"))
    used = {role_of(p) for p in functions.values()} | {
        role_of(s["Target"], "RoleArn") for s in schedules.values()
    }
    assert roles == used  # no role the template does not account for


def test_queries_name_one_index_each_and_nothing_scans() -> None:
    """dynamodb:LeadingKeys cannot fence a GSI (its partition key is not pk): a Query is limited to one
    index ARN instead, the due-index for the two sweeps that read it, the funnel-index for the poller's
    count, the ref-index for the webhook processor's lookup of a Reference ID's watches. On the table
    itself only the emitter's, fenced to its failure markers' one partition, and the meter watch's,
    fenced to the remembered meters (LeadingKeys holds a Query to its key condition's partition key;
    each Reference ID's meters are one partition). One Scan, the daily insight
    function's (read only, on the table alone): LeadingKeys cannot fence a Scan, whose request names no
    partition key (the condition would hold vacuously), so it is the one unfenced table grant."""
    scans = {"InsightFunctionRole"}
    allowed = {"OutreachFunctionRole": DUE_INDEX, "MeterSweepFunctionRole": DUE_INDEX}
    allowed["PollerFunctionRole"] = FUNNEL_INDEX
    allowed["EmitterFunctionRole"] = TABLE
    allowed["MeterWatchFunctionRole"] = TABLE
    allowed["WebhookProcessorFunctionRole"] = REF_INDEX
    for overrides in CONFIGURATIONS.values():
        resources = stack(overrides)
        for name, role in of_type(resources, "AWS::IAM::Role").items():
            for action, resource, _ in grants(role):
                assert action != "dynamodb:PartiQLSelect", name
                if action == "dynamodb:Scan":
                    assert name in scans, name
                    assert resource == TABLE, name
                    continue
                if action == "dynamodb:Query":
                    assert resource == allowed.get(name), name
                if resource == TABLE:
                    assert _table_grant_is_fenced(role, action), f"{name}: {action} without LeadingKeys"


def _table_grant_is_fenced(role: dict[str, Any], action: str) -> bool:
    return all(
        leading_keys(s.get("Condition"))
        for s in statements(role)
        if action in as_list(s["Action"]) and TABLE in as_list(s["Resource"])
    )


# --- wildcards and managed policies ---------------------------------------------------------------


def permission_findings(cfn: dict[str, Any]) -> list[str]:
    """Every wildcard, negated element or AWS managed policy in the template's permissions, each
    ``Fn::If`` taken both ways. Deny statements may be broad (they only take away)."""
    findings: set[str] = set()
    for name, resource in cfn["Resources"].items():
        properties = resource.get("Properties", {})
        for arn in as_list(properties.get("ManagedPolicyArns", [])):
            findings.add(f"{name}: managed policy {arn}")
        for where, document in _policy_documents(name, resource["Type"], properties):
            for variant in _expansions(document):
                for statement in as_list(variant.get("Statement", [])):
                    findings |= _statement_findings(where, statement, resource["Type"].endswith("Policy"))
    return sorted(findings)


IDENTITY_POLICIES = {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"}
RESOURCE_POLICIES = {"AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy", "AWS::S3::BucketPolicy"}


def _policy_documents(name: str, kind: str, properties: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    if kind == "AWS::IAM::Role":
        for policies in _expansions(properties.get("Policies", [])):
            for policy in policies:
                yield f"{name}/{policy.get('PolicyName')}", policy["PolicyDocument"]
    elif kind in IDENTITY_POLICIES | RESOURCE_POLICIES:
        yield name, properties["PolicyDocument"]


_DROPPED = object()


def _expansions(value: Any) -> Iterator[Any]:
    """Every value ``value`` can take: each Fn::If both ways; AWS::NoValue drops the key or item."""
    if isinstance(value, list):
        for combination in itertools.product(*(list(_expansions(item)) for item in value)):
            yield [item for item in combination if item is not _DROPPED]
    elif isinstance(value, dict) and list(value) == ["Fn::If"]:
        _, when_true, when_false = value["Fn::If"]
        yield from _expansions(when_true)
        yield from _expansions(when_false)
    elif value == {"Ref": "AWS::NoValue"}:
        yield _DROPPED
    elif isinstance(value, dict):
        keys = list(value)
        for combination in itertools.product(*(list(_expansions(value[k])) for k in keys)):
            yield {k: v for k, v in zip(keys, combination, strict=True) if v is not _DROPPED}
    else:
        yield value


def _statement_findings(where: str, statement: dict[str, Any], resource_policy: bool) -> set[str]:
    if statement.get("Effect") != "Allow":
        return set()
    found = {
        f"{where}: {element}"
        for element in ("NotAction", "NotResource", "NotPrincipal")
        if element in statement
    }
    actions = as_list(statement.get("Action", []))
    resources = as_list(statement.get("Resource", []))
    wild_actions = [a for a in actions if not isinstance(a, str) or "*" in a]
    if wild_actions:
        found.add(f"{where}: wildcard action {wild_actions}")
    wild_resources = [r for r in resources if any("*" in text for text in _literal_texts(r))]
    exempt = resources == ["*"] and set(actions) <= set(NO_RESOURCE_LEVEL_PERMISSION)
    exempt = exempt or resources == [{"Fn::Sub": OBJECT_PREFIXES.get(tuple(actions))}]
    if wild_resources and not exempt:
        found.add(f"{where}: wildcard resource {wild_resources} for {actions}")
    if resource_policy:
        principal = statement.get("Principal")
        if principal == "*" or (isinstance(principal, dict) and "*" in as_list(principal.get("AWS", []))):
            found.add(f"{where}: allows any principal {actions}")
    return found


def _literal_texts(expression: Any) -> Iterator[str]:
    """The literal text of a value (the names in Ref and GetAtt are not text; a Sub's template is)."""
    if isinstance(expression, str):
        yield expression
    elif isinstance(expression, list):
        for item in expression:
            yield from _literal_texts(item)
    elif isinstance(expression, dict):
        for function, argument in expression.items():
            if function in ("Ref", "Fn::GetAtt"):
                continue
            if function == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                yield text
                yield from _literal_texts(list(variables.values()))
            else:
                yield from _literal_texts(argument)


@configurations
def test_no_wildcard_and_no_managed_policy_in_the_deployed_template(overrides: dict[str, str]) -> None:
    assert permission_findings(deployed(overrides)) == []


def _statement(sam: dict[str, Any], role: str, sid: str) -> dict[str, Any]:
    """A statement of a role in the SAM template itself (to plant into), by Sid."""
    for policy in sam["Resources"][role]["Properties"]["Policies"]:
        branches = policy["Fn::If"][1:] if "Fn::If" in policy else [policy]
        for branch in branches:
            for statement in branch.get("PolicyDocument", {}).get("Statement", []):
                if statement.get("Sid") == sid:
                    return statement
    raise KeyError(f"{role} has no statement {sid}")


def _any_resource(sam: dict[str, Any]) -> None:
    _statement(sam, "OutreachFunctionRole", "PublishAuditAndRequests")["Resource"] = "*"


def _any_table_action(sam: dict[str, Any]) -> None:
    _statement(sam, "PollerFunctionRole", "SnapshotsAndQuarantine")["Action"] = "dynamodb:*"


def _any_key_when_one_is_given(sam: dict[str, Any]) -> None:
    policy = sam["Resources"]["MeterWatchFunctionRole"]["Properties"]["Policies"][-1]
    policy["Fn::If"][1]["PolicyDocument"]["Statement"][0]["Resource"] = "*"


def _queue_arn_pattern(sam: dict[str, Any]) -> None:
    statement = _statement(sam, "EmitterFunctionRole", "StreamFailures")
    statement["Resource"] = {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:*"}


def _back_to_sam_policy_templates(sam: dict[str, Any]) -> None:
    function = sam["Resources"]["MeterWatchFunction"]["Properties"]
    del function["Role"], sam["Resources"]["MeterWatchFunctionRole"]  # SAM generates the role again
    function["Policies"] = [{"DynamoDBCrudPolicy": {"TableName": {"Ref": "ConnectionsTable"}}}]


def _managed_policy_on_a_declared_role(sam: dict[str, Any]) -> None:
    role = sam["Resources"]["EmitterFunctionRole"]["Properties"]
    role["ManagedPolicyArns"] = ["arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole"]


def _anyone_may_send_to_a_subscriber_queue(sam: dict[str, Any]) -> None:
    allow = sam["Resources"]["SubscriberQueuesPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    allow["Principal"] = "*"


def _any_object_of_the_bucket(sam: dict[str, Any]) -> None:
    _statement(sam, "InsightFunctionRole", "InsightFiles")["Resource"] = {"Fn::Sub": "${InsightBucket.Arn}/*"}


PLANTS: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    (_any_object_of_the_bucket, "InsightFunctionRole/insight: wildcard resource [{'Fn::Sub'"),
    (_any_resource, "OutreachFunctionRole/outreach: wildcard resource ['*'] for ['sns:Publish']"),
    (_any_table_action, "PollerFunctionRole/poller: wildcard action ['dynamodb:*']"),
    (_any_key_when_one_is_given, "MeterWatchFunctionRole/partner-key: wildcard resource ['*']"),
    (_queue_arn_pattern, "EmitterFunctionRole/emitter: wildcard resource [{'Fn::Sub'"),
    (_back_to_sam_policy_templates, "MeterWatchFunctionRole: managed policy arn:aws:iam::aws:policy/"),
    (_managed_policy_on_a_declared_role, "EmitterFunctionRole: managed policy"),
    (
        _anyone_may_send_to_a_subscriber_queue,
        "SubscriberQueuesPolicy: allows any principal ['sqs:SendMessage']",
    ),
]


@pytest.mark.parametrize(("plant", "reported"), PLANTS, ids=lambda p: getattr(p, "__name__", "").strip("_"))
def test_a_planted_wildcard_or_managed_policy_is_reported(
    plant: Callable[[dict[str, Any]], None], reported: str
) -> None:
    sam = copy.deepcopy(sam_template())
    plant(sam)

    findings = permission_findings(deployed({}, sam))

    assert any(finding.startswith(reported) for finding in findings), findings


def test_the_sam_policy_templates_would_also_be_reported_for_their_index_wildcard() -> None:
    sam = copy.deepcopy(sam_template())
    _back_to_sam_policy_templates(sam)

    findings = permission_findings(deployed({}, sam))

    assert any("index/*" in finding for finding in findings), findings


# --- encryption -----------------------------------------------------------------------------------

# (resource type, where the key goes, the value with KmsKeyArn, the value without: None = absent)
ENCRYPTION: list[tuple[str, tuple[str, ...], Any, Any]] = [
    (
        "AWS::DynamoDB::Table",
        ("SSESpecification",),
        {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": KEY_ARN},
        {"SSEEnabled": True, "SSEType": "KMS"},
    ),
    ("AWS::SNS::Topic", ("KmsMasterKeyId",), KEY_ARN, "alias/aws/sns"),
    ("AWS::SQS::Queue", ("KmsMasterKeyId",), KEY_ARN, None),
    ("AWS::SQS::Queue", ("SqsManagedSseEnabled",), None, True),
    ("AWS::Logs::LogGroup", ("KmsKeyId",), KEY_ARN, None),
    ("AWS::Scheduler::Schedule", ("KmsKeyArn",), KEY_ARN, None),
    ("AWS::SecretsManager::Secret", ("KmsKeyId",), KEY_ARN, None),  # the log hash key
    (
        "AWS::S3::Bucket",
        ("BucketEncryption", "ServerSideEncryptionConfiguration"),
        [
            {
                "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY_ARN},
                "BucketKeyEnabled": True,
            }
        ],
        [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}],
    ),
]
# CloudWatch cannot publish to a topic under the AWS managed key (its key policy cannot grant it):
# without KmsKeyArn the alarm topic is unencrypted. It carries alarm names and states, no personal data.
UNENCRYPTED_WITHOUT_KEY = {"AlarmTopic"}


@pytest.mark.parametrize(
    ("kind", "path", "with_key", "without"), ENCRYPTION, ids=[f"{e[0]}.{e[1][0]}" for e in ENCRYPTION]
)
def test_the_key_reaches_every_resource_that_stores_data(
    kind: str, path: tuple[str, ...], with_key: Any, without: Any
) -> None:
    for overrides, expected in ((CONFIGURATIONS["key, partners and webhook"], with_key), ({}, without)):
        found = of_type(stack(overrides), kind)
        assert found, kind
        for name, properties in found.items():
            value: Any = properties
            for step in path:
                value = value.get(step) if isinstance(value, dict) else None
            keyless = not overrides.get("KmsKeyArn") and name in UNENCRYPTED_WITHOUT_KEY
            assert value == (None if keyless else expected), (name, overrides.get("KmsKeyArn"))


def test_every_function_logs_to_its_own_group_kept_for_the_retention_parameter() -> None:
    resources = stack({})
    groups = of_type(resources, "AWS::Logs::LogGroup")
    used = [p["LoggingConfig"]["LogGroup"] for p in of_type(resources, "AWS::Lambda::Function").values()]

    assert sorted(used) == sorted(groups)  # one each, none shared
    assert {g["RetentionInDays"] for g in groups.values()} == {"30"}  # issue 11: a month by default
    assert {stack({"LogRetentionDays": "365"})[g]["Properties"]["RetentionInDays"] for g in groups} == {"365"}


# --- transport and partner accounts ---------------------------------------------------------------

DENY_INSECURE = {"Bool": {"aws:SecureTransport": "false"}}


@configurations
def test_every_queue_and_topic_refuses_requests_without_tls(overrides: dict[str, str]) -> None:
    resources = stack(overrides)
    for kind, policy_kind, listed, actions in (
        ("AWS::SQS::Queue", "AWS::SQS::QueuePolicy", "Queues", {"sqs:*"}),
        ("AWS::SNS::Topic", "AWS::SNS::TopicPolicy", "Topics", {"sns:Publish", "sns:Subscribe"}),
    ):
        policies = of_type(resources, policy_kind)
        for name in of_type(resources, kind):
            holding = [p for p in policies.values() if name in p[listed]]
            assert len(holding) == 1, f"{name} needs exactly one {policy_kind}, has {len(holding)}"
            denies = [
                s
                for s in holding[0]["PolicyDocument"]["Statement"]
                if s["Effect"] == "Deny" and s["Principal"] == "*" and s.get("Condition") == DENY_INSECURE
            ]
            arn = f"{name}.Arn" if kind == "AWS::SQS::Queue" else name
            assert any(
                set(as_list(s["Action"])) >= actions and arn in as_list(s["Resource"]) for s in denies
            ), name


@configurations
def test_the_insight_bucket_is_private_tls_only_and_expires_its_dated_files(
    overrides: dict[str, str],
) -> None:
    resources = stack(overrides)
    (bucket,) = of_type(resources, "AWS::S3::Bucket")
    properties = resources[bucket]["Properties"]
    (policy,) = of_type(resources, "AWS::S3::BucketPolicy").values()

    assert properties["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert policy["Bucket"] == bucket
    assert {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"{bucket}.Arn", f"{bucket}.Arn/*"],
        "Condition": DENY_INSECURE,
    } in policy["PolicyDocument"]["Statement"]
    (expiry,) = [r for r in properties["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r]
    assert (expiry["Prefix"], expiry["ExpirationInDays"], expiry["Status"]) == ("insight/2", "400", "Enabled")
    assert not "insight/latest.json".startswith(expiry["Prefix"])  # rewritten daily, never expired
    assert (
        stack({"InsightRetentionDays": "30"})[bucket]["Properties"]["LifecycleConfiguration"]["Rules"][0][
            "ExpirationInDays"
        ]
        == "30"
    )


@configurations
def test_sns_may_still_deliver_to_every_subscribed_queue_and_its_redrive(overrides: dict[str, str]) -> None:
    resources = stack(overrides)
    policies = of_type(resources, "AWS::SQS::QueuePolicy").values()
    subscriptions = [
        s for s in of_type(resources, "AWS::SNS::Subscription").values() if s["Protocol"] == "sqs"
    ]

    assert subscriptions
    for subscription in subscriptions:
        endpoints = [subscription["Endpoint"]]
        endpoints += [subscription.get("RedrivePolicy", {}).get("deadLetterTargetArn")]
        for arn in filter(None, endpoints):
            (policy,) = [p for p in policies if arn.removesuffix(".Arn") in p["Queues"]]
            assert any(
                s["Effect"] == "Allow"
                and s["Principal"] == {"Service": "sns.amazonaws.com"}
                and s["Action"] == "sqs:SendMessage"
                and arn in as_list(s["Resource"])
                and s["Condition"] == {"ArnEquals": {"aws:SourceArn": subscription["TopicArn"]}}
                for s in policy["PolicyDocument"]["Statement"]
            ), arn


def test_partner_accounts_may_subscribe_their_queues_and_functions_and_nothing_more() -> None:
    def allows(overrides: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
        policies = of_type(stack(overrides), "AWS::SNS::TopicPolicy")
        return {
            topic: [s for s in p["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
            for p in policies.values()
            for topic in p["Topics"]
        }

    alarms_publish = {
        "Sid": "CloudWatchAlarmsPublish",
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Action": "sns:Publish",
        "Resource": "AlarmTopic",
        "Condition": {
            "StringEquals": {"aws:SourceAccount": PSEUDO["AWS::AccountId"]},
            "ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:stack-*"},
        },
    }
    assert allows({}) == {"EventsTopic": [], "OutreachTopic": [], "AlarmTopic": [alarms_publish]}
    assert allows({"SubscriberAccountIds": ",".join(PARTNERS)}) == {
        "EventsTopic": [
            {
                "Sid": "PartnerAccountsSubscribe",
                "Effect": "Allow",
                "Principal": {"AWS": PARTNERS},
                "Action": "sns:Subscribe",
                "Resource": "EventsTopic",
                "Condition": {"StringEquals": {"sns:Protocol": ["sqs", "lambda"]}},
            }
        ],
        "OutreachTopic": [],
        "AlarmTopic": [alarms_publish],  # the stack's own alarms, nobody else
    }


# --- the parameters, and the template's validity in both configurations ---------------------------


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("KmsKeyArn", "", True),
        ("KmsKeyArn", KEY_ARN, True),
        ("KmsKeyArn", "arn:aws:kms:us-east-1:123456789012:alias/leap", False),  # IAM needs the key ARN
        ("KmsKeyArn", "alias/aws/sqs", False),
        ("SubscriberAccountIds", "", True),
        ("SubscriberAccountIds", "111111111111", True),
        ("SubscriberAccountIds", ",".join(PARTNERS), True),
        ("SubscriberAccountIds", "11111111111", False),
        ("SubscriberAccountIds", "111111111111,partner", False),
        ("SubscriberAccountIds", "*", False),
    ],
)
def test_the_new_parameters_refuse_what_iam_could_not_use(name: str, value: str, accepted: bool) -> None:
    sam = sam_template()
    if accepted:
        parameters(sam, {name: value})
    else:
        with pytest.raises(TemplateError, match=name):
            parameters(sam, {name: value})


@pytest.mark.parametrize("name", ["LeapApiBaseUrl", "OutreachWebhookUrl"])
@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("https://api.staging.leap.energy", True),
        ("https://partner.example/outreach", True),
        ("http://127.0.0.1:8123", True),  # the Leap simulator or a local receiver: local runs only
        ("http://localhost/hook", True),
        ("http://api.leap.energy", False),  # the key or the signed messages would travel in clear
        ("http://127.0.0.1.attacker.example", False),
        ("http://10.0.0.8:8080", False),
        ("ftp://partner.example", False),
    ],
)
def test_the_url_parameters_take_https_and_loopback_http_only(name: str, value: str, accepted: bool) -> None:
    sam = sam_template()
    if accepted:
        assert parameters(sam, {name: value})[name] == value
    else:
        with pytest.raises(TemplateError, match=name):
            parameters(sam, {name: value})


def test_the_webhook_url_may_stay_empty_and_the_leap_url_may_not() -> None:
    sam = sam_template()

    assert parameters(sam, {"OutreachWebhookUrl": ""})["OutreachWebhookUrl"] == ""
    with pytest.raises(TemplateError, match="LeapApiBaseUrl"):
        parameters(sam, {"LeapApiBaseUrl": ""})


@configurations
def test_the_template_transforms_and_its_rules_accept_both_configurations(overrides: dict[str, str]) -> None:
    sam = sam_template()
    values = parameters(sam, overrides)

    assert broken_rules(deployed(overrides), values) == []


def test_cfn_lint_passes_with_the_key_partners_and_webhook_as_defaults() -> None:
    """cfn-lint takes no parameter values: the hardened configuration is linted as the defaults."""
    sam = sam_template()
    for name, value in {
        "LeapApiKeySecretArn": LEAP_KEY_ARN,
        **CONFIGURATIONS["key, partners and webhook"],
    }.items():
        sam["Parameters"][name]["Default"] = value

    assert [str(match) for match in lint(json.dumps(sam), regions=[REGION])] == []
