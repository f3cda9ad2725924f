"""Bringing template.yaml up: resources created in moto from the template, then the parts the runner plays.

In the order :class:`~devtools.local_runner.cloud.LocalCloud` calls them: ``stack_parameters``
(defaults, overrides and secrets stored in Secrets Manager, each checked), ``create_resources`` (the
SAM transform, the template's Rules, then every resource created the first time something refers to
it, so dependencies come first; returns the resolved outputs), ``add_code_paths`` (handlers and layers
importable), ``local_functions``, ``event_source_mappings`` and ``runner_schedules`` (what the runner
plays itself, built from the created resources). docs/local-runner.md describes each step.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from devtools.local_runner import function_urls, shapes
from devtools.local_runner.lambda_runtime import LocalFunction
from devtools.local_runner.mappings import SqsMapping, StreamMapping
from devtools.local_runner.resources import PLAYED_BY_RUNNER, Provisioner, Resource, Resources
from devtools.local_runner.template import (
    Resolver,
    TemplateError,
    check_rules,
    local_code_path,
    resolve_parameters,
    transform,
)

ACCOUNT_ID = "123456789012"  # moto's default account
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# Variables only a local run needs: there is no X-Ray daemon, and moto's streams need this mode.
LOCAL_ONLY_ENVIRONMENT = {"POWERTOOLS_TRACE_DISABLED": "true", "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled"}

ClientFactory = Callable[[str], Any]  # service name -> a boto3 client on the local cloud


@dataclass(frozen=True)
class Schedule:
    """An AWS::Scheduler::Schedule (SAM ScheduleV2 event) targeting a function of the template."""

    logical_id: str
    arn: str
    function: str  # logical id of the target function
    expression: str
    input_text: str  # the target Input, context attributes not yet filled in
    max_retries: int
    dead_letter_arn: str | None

    def payload(self, scheduled_time: datetime) -> Any:
        """The event the Scheduler sends, with its context attributes filled in."""
        context = {
            "<aws.scheduler.schedule-arn>": self.arn,
            "<aws.scheduler.scheduled-time>": shapes.iso_seconds(scheduled_time),
            "<aws.scheduler.execution-id>": str(uuid.uuid4()),
            "<aws.scheduler.attempt-number>": "1",
        }
        text = self.input_text
        for placeholder, value in context.items():
            text = text.replace(placeholder, value)
        return json.loads(text)


@dataclass(frozen=True)
class SubscriberStack:
    """A stack deployed next to the main one (``LocalCloud.deploy_subscriber``)."""

    name: str
    template_path: Path
    parameters: Mapping[str, Any]
    outputs: Mapping[str, Any]
    resources: Resources
    functions: Mapping[str, LocalFunction]  # by "<stack name>/<logical id>", as the cloud knows them

    @property
    def queue_url(self) -> str:
        return str(self.outputs["QueueUrl"])

    def function_id(self, logical_id: str) -> str:
        """How the cloud names one of this stack's functions (or mappings)."""
        return f"{self.name}/{logical_id}"


# ------------------------------------------------------------------------- resources in moto


def stack_parameters(
    sam: Mapping[str, Any],
    overrides: Mapping[str, Any],
    secrets: Mapping[str, str],
    client: ClientFactory,
    *,
    stack_name: str,
) -> dict[str, Any]:
    """The template's parameters resolved; each secret is stored first and its parameter set to its ARN."""
    given = dict(overrides)
    secrets_manager = client("secretsmanager")
    for parameter, secret_string in secrets.items():
        name = f"{stack_name}/{parameter}"
        given[parameter] = secrets_manager.create_secret(Name=name, SecretString=secret_string)["ARN"]
    return resolve_parameters(sam.get("Parameters", {}), given)


def create_resources(
    sam: Mapping[str, Any],
    parameters: Mapping[str, Any],
    resources: Resources,
    client: ClientFactory,
    *,
    stack_name: str,
    region: str,
) -> dict[str, Any]:
    """Create the transformed template's resources into ``resources``; returns the resolved Outputs."""
    cfn = transform(sam, parameters, region)
    check_rules(cfn, parameters)  # the SAM transform keeps Rules; CloudFormation checks them first
    provisioner = Provisioner(client, stack_name=stack_name, region=region, account_id=ACCOUNT_ID)
    pseudo = {
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::StackName": stack_name,
        "AWS::StackId": provisioner.arn("cloudformation", f"stack/{stack_name}/{uuid.uuid4()}"),
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NotificationARNs": [],
    }
    creating: set[str] = set()

    def lookup(logical_id: str, attribute: str | None) -> Any:
        if logical_id not in resources and logical_id not in resources.not_emulated:
            if logical_id in creating:
                raise TemplateError(f"circular reference through {logical_id}")
            creating.add(logical_id)
            _create(logical_id, cfn, resolver, provisioner, resources)
        if logical_id in resources.not_emulated:
            return logical_id
        resource = resources[logical_id]
        if attribute is None:
            return resource.ref
        if attribute not in resource.attributes:
            raise TemplateError(f"{logical_id} ({resource.type}) has no attribute {attribute} locally")
        return resource.attributes[attribute]

    resolver = Resolver(cfn, parameters, pseudo, lookup)
    for logical_id in cfn["Resources"]:
        if resolver.resource_enabled(logical_id):
            lookup(logical_id, None)
    return {
        name: resolver.resolve(output["Value"])
        for name, output in cfn.get("Outputs", {}).items()
        if "Condition" not in output or resolver.condition(output["Condition"])
    }


def _create(
    logical_id: str,
    cfn: Mapping[str, Any],
    resolver: Resolver,
    provisioner: Provisioner,
    resources: Resources,
) -> None:
    definition = cfn["Resources"][logical_id]
    resource_type = definition["Type"]
    for dependency in _as_list(definition.get("DependsOn")):
        resolver.resolve({"Ref": dependency})
    properties = resolver.resolve(definition.get("Properties", {}))
    created = provisioner.create(logical_id, resource_type, properties)
    if created is None and resource_type in PLAYED_BY_RUNNER:
        created = _runner_played(logical_id, resource_type, properties, provisioner)
    if created is None:
        resources.not_emulated[logical_id] = resource_type
        return
    resources.add(created)


def _runner_played(
    logical_id: str, resource_type: str, properties: Mapping[str, Any], provisioner: Provisioner
) -> Resource:
    if resource_type == "AWS::Lambda::Function":
        name = properties.get("FunctionName") or provisioner.physical_name(logical_id, limit=64)
        arn = provisioner.arn("lambda", f"function:{name}")
        return Resource(logical_id, resource_type, name, {"Arn": arn}, properties)
    if resource_type == "AWS::IAM::Role":
        arn = f"arn:aws:iam::{ACCOUNT_ID}:role/{provisioner.physical_name(logical_id, limit=64)}"
        return Resource(logical_id, resource_type, logical_id, {"Arn": arn, "RoleId": logical_id}, properties)
    if resource_type == "AWS::Lambda::LayerVersion":
        arn = provisioner.arn("lambda", f"layer:{properties.get('LayerName', logical_id)}:1")
        return Resource(logical_id, resource_type, arn, {}, properties)
    if resource_type == "AWS::Scheduler::Schedule":
        name = properties.get("Name", logical_id)
        arn = provisioner.arn("scheduler", f"schedule/default/{name}")
        return Resource(logical_id, resource_type, name, {"Arn": arn}, properties)
    if resource_type == "AWS::Lambda::Url":  # a FunctionUrlConfig: the runner answers its calls
        target = str(properties["TargetFunctionArn"])  # the function's Ref (its name) or its ARN
        function_arn = (
            target if target.startswith("arn:") else provisioner.arn("lambda", f"function:{target}")
        )
        url = function_urls.function_url(function_arn, function_arn.split(":")[3])
        attributes = {"FunctionUrl": url, "FunctionArn": function_arn}
        return Resource(logical_id, resource_type, function_arn, attributes, properties)
    if resource_type == "AWS::Logs::LogGroup":  # what the function's role may write to: name and ARN only
        name = properties.get("LogGroupName") or provisioner.physical_name(logical_id, limit=512)
        arn = provisioner.arn("logs", f"log-group:{name}:*")
        return Resource(logical_id, resource_type, name, {"Arn": arn}, properties)
    return Resource(logical_id, resource_type, str(uuid.uuid4()), {}, properties)


# ---------------------------------------------------------------------- what the runner plays


def add_code_paths(project_root: Path, resources: Resources) -> list[str]:
    """Handlers import as packages from the project root; layer code is importable as in /opt/python.

    Returns the paths added to ``sys.path`` (to take off again when the cloud stops).
    """
    paths = [project_root]
    for resource in resources.of_type("AWS::Lambda::LayerVersion"):
        content = local_code_path(resource.properties.get("Content"))
        if content is not None:
            layer = project_root / content
            paths.append(layer / "python" if (layer / "python").is_dir() else layer)
    added: list[str] = []
    for path in map(str, paths):
        if path not in sys.path:
            sys.path.append(path)
            added.append(path)
    return added


def local_functions(
    resources: Resources, *, region: str, env: Mapping[str, str], package: tuple[str, ...] = ()
) -> dict[str, LocalFunction]:
    """Every AWS::Lambda::Function, by logical id, with its resolved environment (``env`` added last).

    ``package``: where the template's directory is as a package of the project root (a CodeUri is
    relative to its template: ``consumer/`` of subscriber/template.yaml is ``subscriber.consumer``).
    """
    return {
        resource.logical_id: _local_function(resource, region, env, package)
        for resource in resources.of_type("AWS::Lambda::Function")
    }


def _local_function(
    resource: Resource, region: str, env: Mapping[str, str], template_package: tuple[str, ...]
) -> LocalFunction:
    p = resource.properties
    code = local_code_path(p.get("Code"))
    if code is None:
        raise TemplateError(f"{resource.logical_id}: only local CodeUri directories can run locally")
    handler_module, handler_name = p["Handler"].rsplit(".", 1)
    package = ".".join((*template_package, *Path(code).parts))
    module_name = f"{package}.{handler_module}" if package else handler_module
    memory = int(p.get("MemorySize", 128))
    template_env = {
        name: _env_text(value) for name, value in p.get("Environment", {}).get("Variables", {}).items()
    }
    log_group = p.get("LoggingConfig", {}).get("LogGroup") or f"/aws/lambda/{resource.ref}"  # or the default
    lambda_env = {
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_LAMBDA_FUNCTION_NAME": resource.ref,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": log_group,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{p.get('Runtime', 'python3.13')}",
        "_HANDLER": p["Handler"],
        **FAKE_CREDENTIALS,
    }
    return LocalFunction(
        logical_id=resource.logical_id,
        name=resource.ref,
        arn=resource.attributes["Arn"],
        module_name=module_name,
        handler_name=handler_name,
        timeout_seconds=int(p.get("Timeout", 3)),
        memory_mb=memory,
        environment={**lambda_env, **LOCAL_ONLY_ENVIRONMENT, **template_env, **env},
    )


def event_source_mappings(
    resources: Resources,
    functions: Mapping[str, LocalFunction],
    client: ClientFactory,
    *,
    send_on_failure: Callable[[str, dict[str, Any]], None],
    now: Callable[[], datetime],
    region: str,
) -> tuple[dict[str, StreamMapping], dict[str, SqsMapping]]:
    """The DynamoDB stream and SQS mappings, by logical id; any other source is listed as not emulated."""
    by_name = {function.name: function for function in functions.values()}
    streams: dict[str, StreamMapping] = {}
    queues: dict[str, SqsMapping] = {}
    for resource in resources.of_type("AWS::Lambda::EventSourceMapping"):
        p = dict(resource.properties)
        function = by_name[function_name(p["FunctionName"])]
        source = p["EventSourceArn"]
        if ":dynamodb:" in source:
            streams[resource.logical_id] = StreamMapping(
                logical_id=resource.logical_id,
                function=function,
                stream_arn=source,
                properties=p,
                streams=client("dynamodbstreams"),
                send_on_failure=send_on_failure,
                now=now,
                region=region,
            )
        elif ":sqs:" in source:
            queue = resources.find_by_attribute("Arn", source)
            queues[resource.logical_id] = SqsMapping(
                logical_id=resource.logical_id,
                function=function,
                queue_arn=source,
                queue_url=queue.ref,
                properties=p,
                sqs=client("sqs"),
                region=region,
            )
        else:
            resources.not_emulated[resource.logical_id] = f"{resource.type} on {source}"
    return streams, queues


def runner_schedules(resources: Resources, functions: Mapping[str, LocalFunction]) -> dict[str, Schedule]:
    """The schedules targeting a function of the template, by logical id; others are not emulated."""
    by_arn = {function.arn: function for function in functions.values()}
    schedules: dict[str, Schedule] = {}
    for resource in resources.of_type("AWS::Scheduler::Schedule"):
        target = resource.properties["Target"]
        function = by_arn.get(target["Arn"])
        if function is None:
            resources.not_emulated[resource.logical_id] = f"{resource.type} targeting {target['Arn']}"
            continue
        schedules[resource.logical_id] = Schedule(
            logical_id=resource.logical_id,
            arn=resource.attributes["Arn"],
            function=function.logical_id,
            expression=resource.properties["ScheduleExpression"],
            input_text=target.get("Input", "{}"),
            max_retries=int(target.get("RetryPolicy", {}).get("MaximumRetryAttempts", 185)),
            dead_letter_arn=target.get("DeadLetterConfig", {}).get("Arn"),
        )
    return schedules


def function_name(value: str) -> str:
    """FunctionName may be a name or an ARN."""
    return value.rsplit(":", 1)[-1] if value.startswith("arn:") else value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
