"""The template's outreach wiring: the deploy-time Rules, and the queue the default channel lands in.

The Rules are evaluated over parameter sets by the local runner's evaluator
(``devtools.local_runner.template.broken_rules``, which ``LocalCloud`` applies at bring-up as
CloudFormation would). Planted wrong rules show that the table catches a rule refusing too much or
too little; cfn-lint checks that the Rules are well-formed, and catches malformed ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint

from devtools.local_runner.template import broken_rules, load_sam_template, resolve_parameters, transform
from leap_tracker.config import load_settings

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
LEAP_KEY_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:leap/api-key-AbCdEf"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:leap/outreach-webhook-secret-AbCdEf"
URL = "https://partner.example/outreach"
CHANNEL_RULE = "WebhookChannelNeedsUrlAndSecret"
URL_RULE = "WebhookUrlNeedsWebhookChannel"

# (id, outreach parameters, the refusals expected: (rule, the parameter its description names))
CASES: list[tuple[str, dict[str, str], list[tuple[str, str]]]] = [
    ("defaults", {}, []),
    ("topic", {"OutreachChannels": "topic"}, []),
    ("topic, a secret left over", {"OutreachWebhookSecretArn": SECRET_ARN}, []),
    (
        "webhook with url and secret",
        {"OutreachChannels": "webhook", "OutreachWebhookUrl": URL, "OutreachWebhookSecretArn": SECRET_ARN},
        [],
    ),
    (
        "both with url and secret",
        {
            "OutreachChannels": "webhook,topic",
            "OutreachWebhookUrl": URL,
            "OutreachWebhookSecretArn": SECRET_ARN,
        },
        [],
    ),
    (
        "webhook without url",
        {"OutreachChannels": "webhook", "OutreachWebhookSecretArn": SECRET_ARN},
        [(CHANNEL_RULE, "OutreachWebhookUrl must")],
    ),
    (
        "webhook without secret",
        {"OutreachChannels": "webhook", "OutreachWebhookUrl": URL},
        [(CHANNEL_RULE, "OutreachWebhookSecretArn must")],
    ),
    (
        "webhook without either",
        {"OutreachChannels": "webhook"},
        [(CHANNEL_RULE, "OutreachWebhookUrl must"), (CHANNEL_RULE, "OutreachWebhookSecretArn must")],
    ),
    (
        "both without secret",
        {"OutreachChannels": "webhook,topic", "OutreachWebhookUrl": URL},
        [(CHANNEL_RULE, "OutreachWebhookSecretArn must")],
    ),
    (
        "topic with a webhook url (it would never be called)",
        {"OutreachWebhookUrl": URL, "OutreachWebhookSecretArn": SECRET_ARN},
        [(URL_RULE, "OutreachChannels=webhook")],
    ),
]


def sam_template() -> dict[str, Any]:
    return load_sam_template(TEMPLATE)


def parameters(template: dict[str, Any], outreach: dict[str, str]) -> dict[str, Any]:
    return resolve_parameters(template["Parameters"], {"LeapApiKeySecretArn": LEAP_KEY_ARN, **outreach})


def mismatches(template: dict[str, Any]) -> list[str]:
    """Each case whose refusals differ from the table's, with what the Rules said instead."""
    wrong = []
    for case, outreach, expected in CASES:
        failures = broken_rules(template, parameters(template, outreach))
        matches = len(failures) == len(expected) and all(
            failure.startswith(f"{rule}: ") and words in failure
            for failure, (rule, words) in zip(failures, expected, strict=True)
        )
        if not matches:
            wrong.append(f"{case}: {failures}")
    return wrong


def test_the_rules_refuse_exactly_the_webhook_without_url_or_secret() -> None:
    assert mismatches(sam_template()) == []


def _drop_secret_assertion(rules: dict[str, Any]) -> None:
    del rules[CHANNEL_RULE]["Assertions"][1]


def _forget_both_channels(rules: dict[str, Any]) -> None:
    rules[CHANNEL_RULE]["RuleCondition"] = {"Fn::Equals": [{"Ref": "OutreachChannels"}, "webhook"]}


def _invert_url_assertion(rules: dict[str, Any]) -> None:
    assertion = rules[CHANNEL_RULE]["Assertions"][0]
    assertion["Assert"] = assertion["Assert"]["Fn::Not"][0]


def _url_rule_always_applies(rules: dict[str, Any]) -> None:
    del rules[URL_RULE]["RuleCondition"]


@pytest.mark.parametrize(
    "plant",
    [_drop_secret_assertion, _forget_both_channels, _invert_url_assertion, _url_rule_always_applies],
    ids=lambda plant: plant.__name__.strip("_"),
)
def test_a_planted_wrong_rule_fails_the_table(plant: Callable[[dict[str, Any]], None]) -> None:
    template = sam_template()
    plant(template["Rules"])

    assert mismatches(template)


def test_the_sam_transform_keeps_the_rules() -> None:
    template = sam_template()

    transformed = transform(template, parameters(template, {}), "us-east-1")

    assert transformed["Rules"] == template["Rules"]


def test_cfn_lint_finds_the_rules_well_formed_and_catches_malformed_ones() -> None:
    assert [str(match) for match in lint(TEMPLATE.read_text(encoding="utf-8"), regions=["us-east-1"])] == []

    malformed = sam_template()
    rules = malformed["Rules"]
    rules[CHANNEL_RULE]["Assertions"][1]["Assert"] = {"Fn::Not": [{"Fn::Equals": [{"Ref": "NoSuch"}, ""]}]}
    rules[URL_RULE]["Assertions"][0]["Assert"] = {"Fn::If": ["IsFifo", True, False]}
    rules["NoAssertions"] = {"RuleCondition": {"Fn::Equals": ["a", "a"]}}
    found = {
        (match.rule.id[:3], match.path[1]) for match in lint(json.dumps(malformed), regions=["us-east-1"])
    }

    assert {("E10", CHANNEL_RULE), ("E17", URL_RULE), ("E17", "NoAssertions")} <= found


# --- the default channel's queue ------------------------------------------------------------------


def test_the_default_channel_is_the_topic_in_the_code_the_template_and_the_docs() -> None:
    default = sam_template()["Parameters"]["OutreachChannels"]["Default"]
    documented = [
        line.split("|")[2].strip()
        for doc in (REPO / "README.md", REPO / "docs" / "outreach.md")
        for line in doc.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `OUTREACH_CHANNELS`")
    ]

    assert default == "topic"
    assert ",".join(load_settings({}).outreach.channels) == default
    assert documented == [f"`{default}`"] * 2


def test_the_outreach_topic_delivers_to_a_durable_queue_the_partner_reads() -> None:
    resources = sam_template()["Resources"]
    queue = resources["OutreachRequestsQueue"]["Properties"]
    dead_letters = {"Fn::GetAtt": ["OutreachRequestsDeadLetterQueue", "Arn"]}
    subscriptions = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::SNS::Subscription" and r["Properties"]["TopicArn"] == {"Ref": "OutreachTopic"}
    ]
    policies = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::SQS::QueuePolicy"
        and {"Ref": "OutreachRequestsQueue"} in r["Properties"]["Queues"]
    ]

    assert queue["MessageRetentionPeriod"] == 1209600  # encryption: tests/unit/test_template_security.py
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == dead_letters
    assert resources["OutreachRequestsDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 1209600
    (subscription,) = subscriptions
    assert subscription["Endpoint"] == {"Fn::GetAtt": ["OutreachRequestsQueue", "Arn"]}
    assert (subscription["Protocol"], subscription["RawMessageDelivery"]) == ("sqs", True)
    assert "FilterPolicy" not in subscription  # every outreach request
    assert subscription["RedrivePolicy"]["deadLetterTargetArn"] == dead_letters
    ((statement,),) = [
        [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"] for policy in policies
    ]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "sqs:SendMessage")
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "OutreachTopic"}}}
    assert {"Fn::GetAtt": ["OutreachRequestsQueue", "Arn"]} in statement["Resource"]
    outputs = sam_template()["Outputs"]
    assert outputs["OutreachRequestsQueueUrl"]["Value"] == {"Ref": "OutreachRequestsQueue"}
    assert outputs["OutreachRequestsQueueArn"]["Value"] == {"Fn::GetAtt": ["OutreachRequestsQueue", "Arn"]}
