"""Where the stack's resources are, for every subcommand, in one order:

1. an explicit flag (``--key-secret-arn``);
2. ``--stack-name``: the stack's output (DescribeStacks), else its resource by logical id
   (DescribeStackResources: the physical id), so a resource without an output is found too;
3. the environment variable the functions read (``LOG_HASH_KEY_SECRET_ARN``), as on a machine set
   up like a function (or a local run).

A subcommand names what it needs as a :class:`Resource`; :class:`Discovery` answers with the value
and where it came from (shown by ``--json`` and in errors).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

ClientFactory = Callable[..., Any]  # (service, region_name=None) -> a boto3 client


class DiscoveryError(Exception):
    """A resource cannot be found, or the stack does not exist: the message says what to pass."""


@dataclass(frozen=True, slots=True)
class Resource:
    """How to find one resource of the stack."""

    what: str  # for messages: "the log hash key secret"
    flag: str  # the explicit option, e.g. "--key-secret-arn"
    output: str  # the stack output, e.g. "LogHashKeySecretArn"
    logical_id: str  # the template's resource, e.g. "LogHashKeySecret"
    variable: str  # the functions' environment variable, e.g. "LOG_HASH_KEY_SECRET_ARN"


@dataclass(frozen=True, slots=True)
class Located:
    value: str
    source: str  # "--key-secret-arn", "stack S output LogHashKeySecretArn", "LOG_HASH_KEY_SECRET_ARN"


@dataclass
class Discovery:
    """Answers for one invocation: its explicit flags, its stack (if named) and its environment."""

    client: ClientFactory
    environ: Mapping[str, str]
    stack_name: str | None = None
    explicit: Mapping[str, str | None] = field(default_factory=dict)  # flag -> value given

    def locate(self, resource: Resource) -> Located | None:
        """The resource by flag, then stack, then environment; None when nothing names it."""
        given = self.explicit.get(resource.flag)
        if given:
            return Located(given, resource.flag)
        if self.stack_name:
            return self._stack.find(resource)
        value = self.environ.get(resource.variable, "").strip()
        return Located(value, resource.variable) if value else None

    def require(self, resource: Resource) -> Located:
        found = self.locate(resource)
        if found is None:
            raise DiscoveryError(
                f"cannot find {resource.what}: pass --stack-name or {resource.flag}, "
                f"or set {resource.variable}"
            )
        return found

    def stack_parameter(self, name: str) -> Located | None:
        """A parameter of the stack named by --stack-name (None without one, or if it has none)."""
        if not self.stack_name:
            return None
        value = self._stack.parameters().get(name)
        return None if value is None else Located(value, f"stack {self.stack_name} parameter {name}")

    @cached_property
    def _stack(self) -> Stack:
        return Stack(self.client("cloudformation"), str(self.stack_name))


class Stack:
    """One deployed stack's outputs and resources, each read once."""

    def __init__(self, cloudformation: Any, name: str) -> None:
        self._cloudformation = cloudformation
        self.name = name
        self._description: dict[str, Any] | None = None
        self._resources: dict[str, str] | None = None

    def find(self, resource: Resource) -> Located:
        output = self.outputs().get(resource.output)
        if output:
            return Located(output, f"stack {self.name} output {resource.output}")
        physical = self.resources().get(resource.logical_id)
        if physical:
            return Located(physical, f"stack {self.name} resource {resource.logical_id}")
        raise DiscoveryError(
            f"stack {self.name} has neither an output {resource.output} nor a resource "
            f"{resource.logical_id} ({resource.what}): is it a leap-connect-tracker stack of this version?"
        )

    def outputs(self) -> dict[str, str]:
        return {o["OutputKey"]: o["OutputValue"] for o in self._described().get("Outputs", [])}

    def parameters(self) -> dict[str, str]:
        return {
            p["ParameterKey"]: p.get("ParameterValue", "") for p in self._described().get("Parameters", [])
        }

    def _described(self) -> dict[str, Any]:
        if self._description is None:
            self._description = self._call("describe_stacks")["Stacks"][0]
        return self._description

    def resources(self) -> dict[str, str]:
        if self._resources is None:
            found = self._call("describe_stack_resources")["StackResources"]
            self._resources = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in found}
        return self._resources

    def _call(self, operation: str) -> dict[str, Any]:
        from botocore.exceptions import ClientError  # imported with boto3, on first use

        try:
            return getattr(self._cloudformation, operation)(StackName=self.name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ValidationError":
                raise DiscoveryError(f"no stack {self.name!r} in this account and region") from None
            raise


def arn_region(arn: str) -> str | None:
    """The region of an ARN (``arn:aws:secretsmanager:<region>:...``); None when it has none."""
    parts = arn.split(":")
    return parts[3] or None if len(parts) > 5 and parts[0] == "arn" else None


def queue_region(url: str) -> str | None:
    """The region of a queue URL (``https://sqs.<region>.amazonaws.com/...``); None for another form."""
    match = re.match(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?/", url)
    return match.group(1) if match else None


def add_flag(parser: Any, resource: Resource, metavar: str = "NAME") -> None:
    """The resource's explicit option on an argparse parser (every RESOURCES entry needs one)."""
    parser.add_argument(
        resource.flag,
        metavar=metavar,
        help=f"{resource.what} (default: the stack's with --stack-name, else ${resource.variable})",
    )
