"""The local runner's template reading: parameters, conditions, intrinsics and the SAM transform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools.local_runner.template import (
    Resolver,
    TemplateError,
    broken_rules,
    check_rules,
    load_sam_template,
    local_code_path,
    resolve_parameters,
    transform,
)

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::StackName": "stack"}
SMALL = {
    "Conditions": {
        "IsFifo": {"Fn::Equals": [{"Ref": "Fifo"}, "true"]},
        "NotFifo": {"Fn::Not": [{"Condition": "IsFifo"}]},
        "Both": {"Fn::And": [{"Condition": "IsFifo"}, {"Fn::Equals": ["a", "a"]}]},
        "Either": {"Fn::Or": [{"Condition": "NotFifo"}, {"Fn::Equals": ["a", "b"]}]},
    },
    "Mappings": {"Sizes": {"small": {"memory": 128}}},
    "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}, "Table": {"Type": "AWS::DynamoDB::Table"}},
}


def resolver(fifo: str = "true", parameters: dict[str, Any] | None = None) -> Resolver:
    def lookup(logical_id: str, attribute: str | None) -> str:
        return f"{logical_id}.{attribute}" if attribute else f"physical-{logical_id}"

    return Resolver(SMALL, {"Fifo": fifo, "Names": ["x", "y"], **(parameters or {})}, PSEUDO, lookup)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"Ref": "Queue"}, "physical-Queue"),
        ({"Ref": "AWS::Region"}, "us-east-1"),
        ({"Fn::GetAtt": ["Table", "StreamArn"]}, "Table.StreamArn"),
        ({"Fn::GetAtt": "Table.Arn"}, "Table.Arn"),
        ({"Fn::Sub": "${AWS::StackName}-events.fifo"}, "stack-events.fifo"),
        ({"Fn::Sub": "${Queue}/${Table.Arn}/${!Literal}"}, "physical-Queue/Table.Arn/${Literal}"),
        ({"Fn::Sub": ["${Name}-x", {"Name": {"Ref": "Fifo"}}]}, "true-x"),
        ({"Fn::If": ["IsFifo", "yes", "no"]}, "yes"),
        ({"Fn::Join": [",", ["a", {"Ref": "Fifo"}]]}, "a,true"),
        ({"Fn::Select": [1, {"Ref": "Names"}]}, "y"),
        ({"Fn::Split": ["|", "a|b"]}, ["a", "b"]),
        ({"Fn::FindInMap": ["Sizes", "small", "memory"]}, 128),
        ({"Fn::ToJsonString": {"a": [1]}}, '{"a":[1]}'),
        ({"List": [1, {"Ref": "AWS::NoValue"}, 2]}, {"List": [1, 2]}),
        ({"Keep": 1, "Drop": {"Fn::If": ["IsFifo", {"Ref": "AWS::NoValue"}, 2]}}, {"Keep": 1}),
    ],
)
def test_intrinsic_functions(expression: Any, expected: Any) -> None:
    assert resolver().resolve(expression) == expected


def test_conditions_combine() -> None:
    fifo, standard = resolver("true"), resolver("false")
    assert (fifo.condition("IsFifo"), fifo.condition("NotFifo"), fifo.condition("Both")) == (
        True,
        False,
        True,
    )
    assert (standard.condition("IsFifo"), standard.condition("Either")) == (False, True)


@pytest.mark.parametrize(
    "expression", [{"Ref": "Nope"}, {"Fn::GetAtt": ["Nope", "Arn"]}, {"Fn::If": ["Nope", 1, 2]}]
)
def test_unknown_names_are_errors(expression: Any) -> None:
    with pytest.raises(TemplateError):
        resolver().resolve(expression)


def test_parameters_take_defaults_overrides_and_are_checked() -> None:
    declared = {
        "Mode": {"Type": "String", "Default": "a", "AllowedValues": ["a", "b"]},
        "Count": {"Type": "Number", "Default": 3, "MinValue": 1},
        "Url": {"Type": "String", "AllowedPattern": "^https?://.+"},
        "Names": {"Type": "CommaDelimitedList", "Default": "x,y"},
        # On a list the pattern applies to each value, as CloudFormation applies it.
        "Ids": {"Type": "CommaDelimitedList", "Default": "", "AllowedPattern": "^([0-9]{3})?$"},
    }
    values = resolve_parameters(declared, {"Url": "http://127.0.0.1:1", "Count": 5})
    assert values == {"Mode": "a", "Count": "5", "Url": "http://127.0.0.1:1", "Names": ["x", "y"], "Ids": []}
    assert resolve_parameters(declared, {"Url": "http://x", "Ids": "123,456"})["Ids"] == ["123", "456"]
    for overrides, message in (
        ({"Url": "ftp://x"}, "Url"),
        ({"Url": "http://x", "Ids": "123,45"}, "Ids"),
        ({"Url": "http://x", "Mode": "c"}, "Mode"),
        ({"Url": "http://x", "Count": 0}, "Count"),
        ({}, "Url"),
        ({"Url": "http://x", "Typo": "1"}, "Typo"),
    ):
        with pytest.raises(TemplateError, match=message):
            resolve_parameters(declared, overrides)


def test_the_sam_transform_yields_the_mappings_and_schedules_that_deploy() -> None:
    sam = load_sam_template(TEMPLATE)
    cfn = transform(
        sam,
        resolve_parameters(sam["Parameters"], {"LeapApiKeySecretArn": "arn:aws:secretsmanager:x"}),
        "us-east-1",
    )
    resources = cfn["Resources"]
    declared_stream = sam["Resources"]["EmitterFunction"]["Properties"]["Events"]["TableStream"]["Properties"]
    mapping = resources["EmitterFunctionTableStream"]
    assert mapping["Type"] == "AWS::Lambda::EventSourceMapping"
    for name in ("BatchSize", "FilterCriteria", "FunctionResponseTypes", "BisectBatchOnFunctionError"):
        assert mapping["Properties"][name] == declared_stream[name]
    assert resources["PollerFunctionHourly"]["Type"] == "AWS::Scheduler::Schedule"
    assert resources["PollerFunctionHourlyQueue"]["Type"] == "AWS::SQS::Queue"  # the schedule's own DLQ
    poller = resources["PollerFunction"]["Properties"]
    assert local_code_path(poller["Code"]) == "functions/poller/"
    # Globals merged in by SAM itself.
    assert poller["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "leap-connect-tracker"


# --- Rules ------------------------------------------------------------------------------------------

RULE_PARAMETERS = {"Mode": "webhook", "Url": "", "Names": ["a", "b"]}


@pytest.mark.parametrize(
    ("expression", "holds"),
    [
        ({"Fn::Equals": [{"Ref": "Mode"}, "webhook"]}, True),
        ({"Fn::Equals": [{"Ref": "Url"}, "x"]}, False),
        ({"Fn::Equals": [{"Ref": "Names"}, ["a", "b"]]}, True),
        ({"Fn::Not": [{"Fn::Equals": [{"Ref": "Url"}, ""]}]}, False),
        ({"Fn::And": [{"Fn::Equals": ["a", "a"]}, {"Fn::Equals": ["a", "b"]}]}, False),
        ({"Fn::Or": [{"Fn::Equals": ["a", "b"]}, {"Fn::Equals": ["b", "b"]}]}, True),
        ({"Fn::Contains": [["webhook", "webhook,topic"], {"Ref": "Mode"}]}, True),
        ({"Fn::Contains": [["topic"], {"Ref": "Mode"}]}, False),
        ({"Fn::Contains": [{"Ref": "Names"}, "b"]}, True),
        ({"Fn::EachMemberEquals": [{"Ref": "Names"}, "a"]}, False),
        ({"Fn::EachMemberIn": [{"Ref": "Names"}, ["a", "b", "c"]]}, True),
        ({"Fn::EachMemberIn": [["a", "z"], {"Ref": "Names"}]}, False),
    ],
)
def test_rule_functions(expression: Any, holds: bool) -> None:
    rules = {"Rules": {"R": {"Assertions": [{"Assert": expression, "AssertDescription": "said no"}]}}}

    assert broken_rules(rules, RULE_PARAMETERS) == ([] if holds else ["R: said no"])


def test_a_rule_applies_only_when_its_condition_holds() -> None:
    def rule(mode: str) -> dict[str, Any]:
        return {
            "RuleCondition": {"Fn::Equals": [{"Ref": "Mode"}, mode]},
            "Assertions": [{"Assert": {"Fn::Equals": ["a", "b"]}}],
        }

    rules = {"Rules": {"Off": rule("topic"), "On": rule("webhook")}}

    assert broken_rules(rules, RULE_PARAMETERS) == ["On: assertion failed"]
    with pytest.raises(TemplateError, match="On: assertion failed"):
        check_rules(rules, RULE_PARAMETERS)
    check_rules({"Resources": {}}, RULE_PARAMETERS)  # no Rules: nothing to refuse


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ({"Ref": "Mode"}, "must be a boolean"),
        ({"Fn::Equals": [{"Ref": "Queue"}, "x"]}, "parameters only"),
        ({"Fn::If": ["IsFifo", True, False]}, "Fn::If in Rules"),
        ({"Fn::ValueOf": ["Mode", "Tags"]}, "not emulated"),
        ({"Fn::Contains": ["webhook", {"Ref": "Mode"}]}, "list of strings"),
    ],
)
def test_what_rules_cannot_say_is_an_error(expression: Any, message: str) -> None:
    rules = {"Rules": {"R": {"Assertions": [{"Assert": expression}]}}}

    with pytest.raises(TemplateError, match=message):
        broken_rules(rules, RULE_PARAMETERS)
