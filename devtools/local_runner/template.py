"""Reading ``template.yaml`` the way CloudFormation does, without AWS.

1. :func:`load_sam_template` parses YAML with the CloudFormation short-form tags (cfn-lint's loader).
2. :func:`transform` runs the AWS SAM transform (``samtranslator``, the library CloudFormation's
   ``AWS::Serverless-2016-10-31`` transform is built on): Globals are merged, and event sources become
   the very ``AWS::Lambda::EventSourceMapping`` / ``AWS::Scheduler::Schedule`` resources (and the
   implicit dead-letter queues) that deploy. Local ``CodeUri`` paths are kept in ``Code.S3Key``.
3. :func:`resolve_parameters` applies defaults and overrides and checks the declared constraints;
   :func:`check_rules` then refuses values the template's ``Rules`` refuse, as a deploy would.
4. :class:`Resolver` evaluates Conditions and intrinsic functions; resource references are answered
   by a callback, so this module stays pure (the runner answers with moto's physical ids).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

LOCAL_CODE_BUCKET = "local-code"  # stands in for the S3 bucket `sam package` would upload to
NO_VALUE = object()  # AWS::NoValue: the property or list item disappears


class TemplateError(ValueError):
    """The template (or a parameter value) cannot be loaded or resolved."""


def load_sam_template(path: Path) -> dict[str, Any]:
    """The template as plain dicts/lists, short-form tags turned into their ``Fn::`` form."""
    from cfnlint.decode.cfn_yaml import loads  # deferred: heavy import, development tool only

    return json.loads(json.dumps(loads(path.read_text(encoding="utf-8"), str(path))))


def transform(
    sam_template: Mapping[str, Any], parameter_values: Mapping[str, Any], region: str
) -> dict[str, Any]:
    """The CloudFormation template the SAM transform produces (cached: it is deterministic)."""
    text = json.dumps(sam_template, sort_keys=True)
    params = json.dumps(dict(parameter_values), sort_keys=True, default=str)
    key = hashlib.sha256(f"{text}\x1f{params}\x1f{region}".encode()).hexdigest()
    return copy.deepcopy(_transform_cached(key, text, params, region))


@cache
def _transform_cached(_key: str, text: str, params: str, region: str) -> dict[str, Any]:
    import boto3
    from samtranslator.metrics.metrics import Metrics
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template = _with_local_code_as_s3(json.loads(text))
    # The session only tells SAM the region; the empty policy map means no IAM look-up is made.
    session = boto3.session.Session(region_name=region)
    # SAM records usage metrics and warns when they are garbage-collected unpublished; its default
    # publisher discards them, so publishing here only keeps that warning out of the demo's output.
    metrics = Metrics()
    translator = Translator(managed_policy_map={}, sam_parser=Parser(), boto_session=session, metrics=metrics)
    try:
        return translator.translate(template, parameter_values=json.loads(params))
    except Exception as exc:  # samtranslator raises its own hierarchy; keep the message
        raise TemplateError(f"SAM transform failed: {exc}") from exc
    finally:
        metrics.publish()


def _with_local_code_as_s3(template: dict[str, Any]) -> dict[str, Any]:
    """SAM accepts only S3 code locations; local paths travel in the key (as `sam package` would)."""
    code_properties = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}
    globals_function = template.get("Globals", {}).get("Function", {})
    for resource in template.get("Resources", {}).values():
        name = code_properties.get(resource.get("Type"))
        if name is None:
            continue
        properties = resource.setdefault("Properties", {})
        uri = properties.get(name, globals_function.get(name) if name == "CodeUri" else None)
        if isinstance(uri, str) and not uri.startswith("s3://"):
            properties[name] = f"s3://{LOCAL_CODE_BUCKET}/{uri}"
    return template


def local_code_path(code: Any) -> str | None:
    """The local directory a transformed ``Code``/``Content`` property points to, if any."""
    if isinstance(code, Mapping) and code.get("S3Bucket") == LOCAL_CODE_BUCKET:
        return str(code["S3Key"])
    return None


# --------------------------------------------------------------------------------------- parameters


def resolve_parameters(
    declared: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Each parameter's value: the override, else the default; checked like CloudFormation checks it."""
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"unknown parameter(s) {unknown}; the template declares {sorted(declared)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in overrides:
            raw = overrides[name]
        elif "Default" in spec:
            raw = spec["Default"]
        else:
            raise TemplateError(f"parameter {name} has no default: pass a value")
        values[name] = _checked_parameter(name, spec, raw)
    return values


def _checked_parameter(name: str, spec: Mapping[str, Any], raw: Any) -> Any:
    kind = spec.get("Type", "String")
    text = _scalar_text(raw)
    if kind == "Number":
        try:
            number = float(text)
        except ValueError as exc:
            raise TemplateError(f"parameter {name}={text!r} is not a number") from exc
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateError(f"parameter {name}={text} is below MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateError(f"parameter {name}={text} is above MaxValue {spec['MaxValue']}")
    allowed = spec.get("AllowedValues")
    if allowed is not None and text not in [_scalar_text(v) for v in allowed]:
        raise TemplateError(f"parameter {name}={text!r} is not one of {allowed}")
    is_list = kind == "CommaDelimitedList" or kind.startswith("List<")
    items = [part.strip() for part in text.split(",")] if is_list else [text]
    pattern = spec.get("AllowedPattern")
    # On a list, CloudFormation matches the pattern against each value.
    for item in items if pattern is not None else []:
        if not re.fullmatch(pattern, item):
            raise TemplateError(f"parameter {name}={text!r} does not match {pattern!r}")
    if is_list:
        return items if text else []
    return text


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------------------- rules


def check_rules(template: Mapping[str, Any], parameters: Mapping[str, Any]) -> None:
    """Raise :class:`TemplateError` if any ``Rules`` assertion fails: CloudFormation refuses such a
    stack (or change set) before it creates anything."""
    failures = broken_rules(template, parameters)
    if failures:
        raise TemplateError("the template's Rules refuse these parameters: " + "; ".join(failures))


def broken_rules(template: Mapping[str, Any], parameters: Mapping[str, Any]) -> list[str]:
    """``<rule>: <AssertDescription>`` for every failing assertion of a rule whose condition holds."""
    evaluate = _RuleEvaluator(parameters).boolean
    failures: list[str] = []
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"]):
            continue
        for assertion in rule.get("Assertions", []):
            if not evaluate(assertion["Assert"]):
                failures.append(f"{name}: {assertion.get('AssertDescription', 'assertion failed')}")
    return failures


class _RuleEvaluator:
    """The rule-specific intrinsics over parameter values. Rules see parameters only (no resources,
    no conditions); a function CloudFormation allows in Rules but not written here is an error."""

    def __init__(self, parameters: Mapping[str, Any]) -> None:
        self._parameters = parameters

    def boolean(self, expression: Any) -> bool:
        value = self.value(expression)
        if not isinstance(value, bool):
            raise TemplateError(f"a rule condition or assertion must be a boolean, not {expression!r}")
        return value

    def value(self, expression: Any) -> Any:
        if isinstance(expression, list):
            return [self.value(item) for item in expression]
        if not isinstance(expression, dict):
            return expression
        if len(expression) != 1:
            raise TemplateError(f"not a rule function: {expression!r}")
        (name, argument), *_ = expression.items()
        function = self._FUNCTIONS.get(name)
        if function is None:
            raise TemplateError(f"{name} in Rules is not emulated (or not allowed there)")
        return function(self, argument)

    def _ref(self, name: str) -> Any:
        if name not in self._parameters:
            raise TemplateError(f"Rules may Ref parameters only, not {name!r}")
        return self._parameters[name]

    def _equals(self, argument: list[Any]) -> bool:
        left, right = (self.value(item) for item in argument)
        return _comparable(left) == _comparable(right)

    def _not(self, argument: list[Any]) -> bool:
        return not self.boolean(argument[0])

    def _and(self, argument: list[Any]) -> bool:
        return all([self.boolean(item) for item in argument])  # every operand is checked, as CFN does

    def _or(self, argument: list[Any]) -> bool:
        return any([self.boolean(item) for item in argument])

    def _contains(self, argument: list[Any]) -> bool:
        members, value = (self.value(item) for item in argument)
        return _scalar_text(value) in [_scalar_text(member) for member in _string_list(members)]

    def _each_member_equals(self, argument: list[Any]) -> bool:
        members, value = (self.value(item) for item in argument)
        return all(_scalar_text(member) == _scalar_text(value) for member in _string_list(members))

    def _each_member_in(self, argument: list[Any]) -> bool:
        members, allowed = (_string_list(self.value(item)) for item in argument)
        return set(map(_scalar_text, members)) <= set(map(_scalar_text, allowed))

    _FUNCTIONS: dict[str, Callable[[_RuleEvaluator, Any], Any]] = {
        "Ref": _ref,
        "Fn::Equals": _equals,
        "Fn::Not": _not,
        "Fn::And": _and,
        "Fn::Or": _or,
        "Fn::Contains": _contains,
        "Fn::EachMemberEquals": _each_member_equals,
        "Fn::EachMemberIn": _each_member_in,
    }


def _string_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TemplateError(f"a rule function expected a list of strings, got {value!r}")
    return value


def _comparable(value: Any) -> Any:
    return [_scalar_text(item) for item in value] if isinstance(value, list) else _scalar_text(value)


# --------------------------------------------------------------------------------------- intrinsics

# (logical id, attribute or None for Ref) -> the physical value
ResourceLookup = Callable[[str, str | None], Any]


class Resolver:
    """Evaluates Conditions and intrinsic functions over a CloudFormation template."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any],
        pseudo: Mapping[str, Any],
        lookup: ResourceLookup,
    ) -> None:
        self._template = template
        self._parameters = parameters
        self._pseudo = pseudo
        self._lookup = lookup
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            definitions = self._template.get("Conditions", {})
            if name not in definitions:
                raise TemplateError(f"unknown condition {name!r}")
            self._conditions[name] = bool(self.resolve(definitions[name]))
        return self._conditions[name]

    def resource_enabled(self, logical_id: str) -> bool:
        condition = self._template["Resources"][logical_id].get("Condition")
        return condition is None or self.condition(condition)

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic evaluated; AWS::NoValue removes the key or item."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (name, argument), *_ = value.items()
            function = self._FUNCTIONS.get(name)
            if function is not None:
                return function(self, argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    # -- functions ------------------------------------------------------------------------------
    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self._parameters:
            return self._parameters[name]
        if name in self._template.get("Resources", {}):
            return self._lookup(name, None)
        raise TemplateError(f"Ref to unknown name {name!r}")

    def _get_att(self, argument: Any) -> Any:
        logical_id, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
        attribute = self.resolve(attribute)
        if logical_id not in self._template.get("Resources", {}):
            raise TemplateError(f"Fn::GetAtt on unknown resource {logical_id!r}")
        return self._lookup(logical_id, attribute)

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {name: self.resolve(item) for name, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if expression in values:
                return _scalar_text(values[expression])
            if "." in expression and expression.split(".", 1)[0] in self._template.get("Resources", {}):
                return _scalar_text(self._get_att(expression))
            return _scalar_text(self._ref(expression))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def _if(self, argument: list[Any]) -> Any:
        name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(name) else when_false)

    def _equals(self, argument: list[Any]) -> bool:
        left, right = (self.resolve(item) for item in argument)
        return _scalar_text(left) == _scalar_text(right)

    def _not(self, argument: list[Any]) -> bool:
        return not self.resolve(argument[0])

    def _and(self, argument: list[Any]) -> bool:
        return all(self.resolve(item) for item in argument)

    def _or(self, argument: list[Any]) -> bool:
        return any(self.resolve(item) for item in argument)

    def _condition_ref(self, name: str) -> bool:
        return self.condition(name)

    def _join(self, argument: list[Any]) -> str:
        delimiter, items = argument
        return self.resolve(delimiter).join(_scalar_text(item) for item in self.resolve(items))

    def _select(self, argument: list[Any]) -> Any:
        index, items = argument
        return self.resolve(items)[int(self.resolve(index))]

    def _split(self, argument: list[Any]) -> list[str]:
        delimiter, text = argument
        return self.resolve(text).split(self.resolve(delimiter))

    def _find_in_map(self, argument: list[Any]) -> Any:
        name, first, second = (self.resolve(item) for item in argument)
        return self._template["Mappings"][name][first][second]

    def _get_azs(self, _argument: Any) -> list[str]:
        region = self._pseudo["AWS::Region"]
        return [f"{region}{zone}" for zone in "abc"]

    def _base64(self, argument: Any) -> str:
        import base64

        return base64.b64encode(self.resolve(argument).encode()).decode()

    def _to_json_string(self, argument: Any) -> str:
        return json.dumps(self.resolve(argument), separators=(",", ":"))

    def _import_value(self, argument: Any) -> Any:
        raise TemplateError(f"Fn::ImportValue {argument!r}: cross-stack imports are not emulated")

    _FUNCTIONS: dict[str, Callable[[Resolver, Any], Any]] = {
        "Ref": _ref,
        "Fn::GetAtt": _get_att,
        "Fn::Sub": _sub,
        "Fn::If": _if,
        "Fn::Equals": _equals,
        "Fn::Not": _not,
        "Fn::And": _and,
        "Fn::Or": _or,
        "Condition": _condition_ref,
        "Fn::Join": _join,
        "Fn::Select": _select,
        "Fn::Split": _split,
        "Fn::FindInMap": _find_in_map,
        "Fn::GetAZs": _get_azs,
        "Fn::Base64": _base64,
        "Fn::ToJsonString": _to_json_string,
        "Fn::ImportValue": _import_value,
    }
