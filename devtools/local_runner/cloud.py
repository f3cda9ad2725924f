"""LocalCloud: template.yaml brought up in moto, with Lambda's part played in-process."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from devtools.local_runner import shapes
from devtools.local_runner.aws_calls import CallCounter
from devtools.local_runner.clock import ClockListener, SimulatedClock
from devtools.local_runner.lambda_runtime import (
    Handler,
    InvocationRecord,
    LocalFunction,
    RemainingTime,
)
from devtools.local_runner.mappings import Outcome, SqsMapping, StreamMapping
from devtools.local_runner.resources import PLAYED_BY_RUNNER, Provisioner, Resource, Resources
from devtools.local_runner.template import (
    Resolver,
    TemplateError,
    check_rules,
    load_sam_template,
    local_code_path,
    resolve_parameters,
    transform,
)

DEFAULT_START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)  # a Monday morning, fixed for repeatable runs
DEFAULT_STACK_NAME = "leap-connect-tracker"
DEFAULT_REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# Lambda retries a failed asynchronous invocation twice by default, after about 1 and then 2 minutes.
ASYNC_DEFAULT_RETRIES = 2
ASYNC_RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=2))
# Variables only a local run needs: there is no X-Ray daemon, and moto's streams need this mode.
LOCAL_ONLY_ENVIRONMENT = {"POWERTOOLS_TRACE_DISABLED": "true", "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled"}

logger = logging.getLogger(__name__)


class RunnerLoopError(RuntimeError):
    """drain() went round more times than allowed: something keeps producing work."""


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
class PartnerMessage:
    """A message drained from a queue: the event, its attributes and (without raw delivery) the envelope."""

    body: Any
    attributes: dict[str, str]
    message_id: str
    envelope: dict[str, Any] | None = None


@dataclass
class _AsyncEvent:
    function: LocalFunction
    payload: Any
    attempts: int
    due: datetime
    last_error: BaseException | None = None


@dataclass
class _AsyncConfig:
    max_retries: int = ASYNC_DEFAULT_RETRIES
    on_failure_arn: str | None = None
    dead_letter_arn: str | None = None


@dataclass
class _State:
    """What exists only while the cloud is up."""

    mock: Any
    session: boto3.session.Session
    clients: dict[str, Any] = field(default_factory=dict)
    added_paths: list[str] = field(default_factory=list)


class LocalCloud:
    """template.yaml in moto, with event source mappings, schedules and handlers run in-process.

    Use as a context manager: entering starts moto (``mock_aws``) and the simulated clock, creates the
    resources and loads the functions; leaving undoes all of it.
    """

    def __init__(
        self,
        template_path: str | Path = "template.yaml",
        *,
        parameters: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        start: datetime = DEFAULT_START,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str = DEFAULT_REGION,
        max_drain_rounds: int = 10_000,
    ) -> None:
        self.template_path = Path(template_path).resolve()
        self.project_root = self.template_path.parent
        self._parameter_overrides = dict(parameters or {})
        self._secret_parameters = dict(secrets or {})
        self._env = dict(env or {})
        self.stack_name = stack_name
        self.region = region
        self.max_drain_rounds = max_drain_rounds
        self.clock = SimulatedClock(start)
        self.calls = CallCounter()
        self.resources = Resources()
        self.functions: dict[str, LocalFunction] = {}
        self.stream_mappings: dict[str, StreamMapping] = {}
        self.sqs_mappings: dict[str, SqsMapping] = {}
        self.schedules: dict[str, Schedule] = {}
        self.outputs: dict[str, Any] = {}
        self.parameters: dict[str, Any] = {}
        self.invocations: list[InvocationRecord] = []
        self.dropped_async_events: list[dict[str, Any]] = []
        self._async_config: dict[str, _AsyncConfig] = {}
        self._async_queue: list[_AsyncEvent] = []
        self._partner_queues = 0
        self._state: _State | None = None

    # ------------------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalCloud:
        from moto import mock_aws  # deferred: development tool, heavy import

        mock = mock_aws()
        mock.start()
        self._sqs_speed_up = _linear_sqs_receive()
        self._sqs_speed_up.start()
        self.clock.start()
        self.calls.install()
        self._state = _State(mock=mock, session=_runner_session(self.region))
        try:
            self._bring_up()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_: object) -> None:
        state, self._state = self._state, None
        if state is None:
            return
        for path in state.added_paths:
            if path in sys.path:
                sys.path.remove(path)
        self.calls.uninstall()
        self.clock.stop()
        self._sqs_speed_up.stop()
        state.mock.stop()

    def client(self, service: str) -> Any:
        """A boto3 client on the local cloud for tests and tools (its calls are not counted)."""
        state = self._running()
        if service not in state.clients:
            config = Config(
                account_id_endpoint_mode="disabled", retries={"mode": "standard", "max_attempts": 1}
            )
            state.clients[service] = state.session.client(service, config=config)
        return state.clients[service]

    # --------------------------------------------------------------------------- the clock
    def now(self) -> datetime:
        return self.clock.now()

    def advance(
        self, *, seconds: float = 0, minutes: float = 0, hours: float = 0, days: float = 0
    ) -> datetime:
        """Move the simulated clock forward (nothing runs: call drain() to deliver what became due)."""
        return self.clock.advance(timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds))

    def on_advance(self, listener: ClockListener) -> None:
        """``listener(now, delta)`` after every advance, e.g. to move the Leap simulator's clock."""
        self.clock.on_advance(listener)

    # ---------------------------------------------------------------------------- invoking
    def invoke(self, logical_id: str, event: Any = None, *, asynchronous: bool = False) -> Any:
        """Invoke a function directly. Synchronous: returns its result or raises its exception.

        Asynchronous (``InvocationType=Event``): runs now, and a failure is retried like Lambda's
        asynchronous invocations (see :meth:`fire_schedule`); returns None.
        """
        function = self._function(logical_id)
        payload = {} if event is None else event
        if asynchronous:
            self._invoke_async(function, payload, "direct-async")
            return None
        outcome = self._invoke(function, payload, "direct")
        if outcome.error is not None:
            raise outcome.error
        return outcome.result

    def fire_schedule(
        self, logical_id: str, schedule_id: str | None = None, scheduled_time: datetime | None = None
    ) -> InvocationRecord:
        """What the schedule does when it comes round: invoke its target with its Input, now.

        ``<aws.scheduler.scheduled-time>`` and the other context attributes in the Input are filled
        in (the scheduled time defaults to the simulated now).

        The Scheduler invokes Lambda asynchronously, so a handler exception is retried by Lambda
        (twice by default, 1 then 2 minutes later on the simulated clock: drain() after advancing
        runs them), then goes to the function's on-failure destination or dead-letter queue when the
        template declares one, else is dropped (see :attr:`dropped_async_events`). The schedule's own
        RetryPolicy and dead-letter queue cover only failures to hand the event to Lambda, which
        cannot happen locally.
        """
        schedule = self._schedule_for(logical_id, schedule_id)
        payload = schedule.payload(scheduled_time or self.now())
        return self._invoke_async(self.functions[schedule.function], payload, "schedule")

    def pump(self) -> int:
        """One round: every mapping delivers at most one batch, due async retries run. Invocations made."""
        return self._round()[1]

    def drain(self, max_rounds: int | None = None) -> int:
        """Deliver until nothing is left at the current simulated time. Returns the invocations made."""
        limit = self.max_drain_rounds if max_rounds is None else max_rounds
        total = 0
        for _ in range(limit):
            worked, invocations = self._round()
            total += invocations
            if not worked:
                return total
        raise RunnerLoopError(f"still delivering after {limit} rounds: {self.summary()}")

    # ------------------------------------------------------------------------------ test hooks
    def override_handler(self, logical_id: str, handler: Handler | None) -> None:
        """Run ``handler(event, context)`` in place of the template's (None restores it)."""
        self._function(logical_id).handler_override = handler

    def wrap_handler(self, logical_id: str, wrapper: Callable[[Handler], Handler]) -> None:
        function = self._function(logical_id)
        function.handler_override = wrapper(function.handler())

    def fail_next(self, logical_id: str, times: int = 1, error: BaseException | None = None) -> None:
        """The next ``times`` invocations of the function raise (default: InjectedFailure)."""
        self._function(logical_id).fail_next(times, error)

    def set_remaining_time(self, logical_id: str, millis: RemainingTime | None) -> None:
        """Fix what context.get_remaining_time_in_millis() answers (a number or a callable); None resets."""
        self._function(logical_id).remaining_time_override = millis

    def set_env(self, logical_id: str | None = None, **values: str) -> None:
        """Override environment variables of one function (or all); the next invocation is a cold start."""
        targets = self.functions.values() if logical_id is None else [self._function(logical_id)]
        for function in targets:
            function.overrides.update({name: str(value) for name, value in values.items()})
            function.needs_cold_start = True

    def cold_start(self, logical_id: str | None = None) -> None:
        targets = self.functions.values() if logical_id is None else [self._function(logical_id)]
        for function in targets:
            function.needs_cold_start = True

    # -------------------------------------------------------------------------- partner helpers
    def subscribe_queue(
        self,
        topic_logical_id: str,
        filter_policy: Mapping[str, Any] | None = None,
        scope: str = "MessageAttributes",
        raw: bool = True,
        name: str | None = None,
    ) -> str:
        """Create a queue and subscribe it to a topic the way a partner would. Returns the queue URL."""
        topic = self.resources[topic_logical_id]
        fifo = topic.ref.endswith(".fifo")
        self._partner_queues += 1
        queue_name = name or f"partner-{self._partner_queues}" + (".fifo" if fifo else "")
        sqs, sns = self.client("sqs"), self.client("sns")
        attributes = {"FifoQueue": "true"} if fifo else {}
        url = sqs.create_queue(QueueName=queue_name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sqs.set_queue_attributes(
            QueueUrl=url, Attributes={"Policy": json.dumps(_sns_may_send(arn, topic.ref))}
        )
        subscription = {"RawMessageDelivery": "true" if raw else "false", "FilterPolicyScope": scope}
        if filter_policy is not None:
            subscription["FilterPolicy"] = json.dumps(filter_policy)
        sns.subscribe(TopicArn=topic.ref, Protocol="sqs", Endpoint=arn, Attributes=subscription)
        return url

    def drain_queue(self, queue: str, *, delete: bool = True) -> list[PartnerMessage]:
        """Every visible message of a queue (URL or logical id), parsed; deleted unless told not to."""
        url = queue if queue.startswith("http") else self.resources.queue_url(queue)
        sqs = self.client("sqs")
        drained: list[PartnerMessage] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not messages:
                return drained
            drained.extend(_partner_message(message) for message in messages)
            if delete:
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                    ],
                )

    # --------------------------------------------------------------------------------- counters
    @property
    def aws_calls(self) -> Counter[tuple[str, str]]:
        """(service, operation) -> calls the handlers made."""
        return self.calls.totals()

    @property
    def aws_calls_by_function(self) -> dict[str, Counter[tuple[str, str]]]:
        return self.calls.by_function

    @property
    def invocation_counts(self) -> Counter[str]:
        return Counter(record.function for record in self.invocations)

    @property
    def errors(self) -> list[InvocationRecord]:
        return [record for record in self.invocations if record.failed]

    def summary(self) -> dict[str, Any]:
        """Plain numbers for the demo and the benchmarks."""
        return {
            "now": self.now().isoformat(),
            "invocations": dict(self.invocation_counts),
            "failed_invocations": len(self.errors),
            "aws_calls": {f"{s}.{op}": n for (s, op), n in sorted(self.aws_calls.items())},
            "stream_records_filtered_out": sum(m.filtered_out for m in self.stream_mappings.values()),
            "stream_records_sent_to_on_failure": sum(
                m.sent_to_on_failure for m in self.stream_mappings.values()
            ),
            "sqs_messages_filtered_out": sum(m.filtered_out for m in self.sqs_mappings.values()),
            "async_events_dropped": len(self.dropped_async_events),
        }

    # ------------------------------------------------------------------------------- internals
    def _round(self) -> tuple[bool, int]:
        before = len(self.invocations)
        worked = False
        for mapping in self.stream_mappings.values():
            worked |= mapping.step(self._invoke)
        for sqs_mapping in self.sqs_mappings.values():
            worked |= sqs_mapping.step(self._invoke)
        worked |= self._run_due_async()
        return worked, len(self.invocations) - before

    def _running(self) -> _State:
        if self._state is None:
            raise RuntimeError("the LocalCloud is not running: use it as a context manager")
        return self._state

    def _function(self, logical_id: str) -> LocalFunction:
        try:
            return self.functions[logical_id]
        except KeyError:
            raise KeyError(f"no function {logical_id!r}; the template has {sorted(self.functions)}") from None

    def _invoke(self, function: LocalFunction, event: Any, source: str) -> Outcome:
        batch = len(event.get("Records", [])) if isinstance(event, dict) else 1
        record = InvocationRecord(function.logical_id, source, self.now(), batch)
        self.calls.current_function = function.logical_id
        try:
            record.result = function.run(event, self.now)
        except Exception as exc:  # a handler error is data for the mapping, as in Lambda
            record.error = exc
            logger.warning("%s failed (%s): %r", function.logical_id, source, exc, exc_info=exc)
        finally:
            self.calls.current_function = None
        self.invocations.append(record)
        return Outcome(record.result, record.error)

    def _invoke_async(self, function: LocalFunction, payload: Any, source: str) -> InvocationRecord:
        outcome = self._invoke(function, payload, source)
        if outcome.error is not None:
            self._async_failed(_AsyncEvent(function, payload, 1, self.now(), outcome.error))
        return self.invocations[-1]

    def _async_failed(self, event: _AsyncEvent) -> None:
        config = self._async_config.get(event.function.logical_id, _AsyncConfig())
        if event.attempts <= config.max_retries:
            delay = ASYNC_RETRY_DELAYS[min(event.attempts, len(ASYNC_RETRY_DELAYS)) - 1]
            event.due = self.now() + delay
            self._async_queue.append(event)
            return
        error = event.last_error or RuntimeError("unknown error")
        if config.on_failure_arn:
            record = shapes.async_on_failure_record(
                payload=event.payload,
                function_arn=event.function.arn,
                invoke_count=event.attempts,
                error=error,
                now=self.now(),
            )
            self._send_to(config.on_failure_arn, record)
        elif config.dead_letter_arn:
            attributes = {
                "RequestID": str(uuid.uuid4()),
                "ErrorCode": "200",
                "ErrorMessage": str(error)[:1000] or type(error).__name__,
            }
            self._send_to(config.dead_letter_arn, event.payload, attributes)
        else:
            self.dropped_async_events.append(
                {"function": event.function.logical_id, "payload": event.payload}
            )

    def _run_due_async(self) -> bool:
        now = self.now()
        due = [event for event in self._async_queue if event.due <= now]
        for event in due:
            self._async_queue.remove(event)
            outcome = self._invoke(event.function, event.payload, "async-retry")
            if outcome.error is not None:
                event.attempts += 1
                event.last_error = outcome.error
                self._async_failed(event)
        return bool(due)

    def _send_to(self, arn: str, body: Any, attributes: Mapping[str, str] | None = None) -> None:
        """Deliver a record to an SQS queue or SNS topic destination, by ARN."""
        text = body if isinstance(body, str) else json.dumps(body)
        message_attributes = {
            name: {"DataType": "String", "StringValue": value} for name, value in (attributes or {}).items()
        }
        if ":sqs:" in arn:
            url = self.resources.find_by_attribute("Arn", arn).ref
            self.client("sqs").send_message(
                QueueUrl=url, MessageBody=text, MessageAttributes=message_attributes
            )
        elif ":sns:" in arn:
            self.client("sns").publish(TopicArn=arn, Message=text, MessageAttributes=message_attributes)
        else:
            raise TemplateError(f"destination {arn} is neither a queue nor a topic")

    def _schedule_for(self, function_id: str, schedule_id: str | None) -> Schedule:
        if schedule_id is not None:
            return self.schedules[schedule_id]
        matching = [s for s in self.schedules.values() if s.function == function_id]
        if len(matching) != 1:
            raise KeyError(f"{function_id} has {len(matching)} schedules {[s.logical_id for s in matching]}")
        return matching[0]

    # ----------------------------------------------------------------------------- bring-up
    def _bring_up(self) -> None:
        state = self._running()
        sam = load_sam_template(self.template_path)
        overrides = dict(self._parameter_overrides)
        secrets_manager = self.client("secretsmanager")
        for parameter, secret_string in self._secret_parameters.items():
            name = f"{self.stack_name}/{parameter}"
            overrides[parameter] = secrets_manager.create_secret(Name=name, SecretString=secret_string)["ARN"]
        self.parameters = resolve_parameters(sam.get("Parameters", {}), overrides)
        cfn = transform(sam, self.parameters, self.region)
        check_rules(cfn, self.parameters)  # the SAM transform keeps Rules; CloudFormation checks them first
        provisioner = Provisioner(
            self.client, stack_name=self.stack_name, region=self.region, account_id=ACCOUNT_ID
        )
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": provisioner.arn("cloudformation", f"stack/{self.stack_name}/{uuid.uuid4()}"),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
        }
        creating: set[str] = set()

        def lookup(logical_id: str, attribute: str | None) -> Any:
            if logical_id not in self.resources and logical_id not in self.resources.not_emulated:
                if logical_id in creating:
                    raise TemplateError(f"circular reference through {logical_id}")
                creating.add(logical_id)
                self._create(logical_id, cfn, resolver, provisioner)
            if logical_id in self.resources.not_emulated:
                return logical_id
            resource = self.resources[logical_id]
            if attribute is None:
                return resource.ref
            if attribute not in resource.attributes:
                raise TemplateError(f"{logical_id} ({resource.type}) has no attribute {attribute} locally")
            return resource.attributes[attribute]

        resolver = Resolver(cfn, self.parameters, pseudo, lookup)
        for logical_id in cfn["Resources"]:
            if resolver.resource_enabled(logical_id):
                lookup(logical_id, None)
        self.outputs = {
            name: resolver.resolve(output["Value"])
            for name, output in cfn.get("Outputs", {}).items()
            if "Condition" not in output or resolver.condition(output["Condition"])
        }
        self._add_code_paths(state)
        self._wire_runner_resources()

    def _create(
        self, logical_id: str, cfn: Mapping[str, Any], resolver: Resolver, provisioner: Provisioner
    ) -> None:
        definition = cfn["Resources"][logical_id]
        resource_type = definition["Type"]
        for dependency in _as_list(definition.get("DependsOn")):
            resolver.resolve({"Ref": dependency})
        properties = resolver.resolve(definition.get("Properties", {}))
        created = provisioner.create(logical_id, resource_type, properties)
        if created is None and resource_type in PLAYED_BY_RUNNER:
            created = self._runner_played(logical_id, resource_type, properties, provisioner)
        if created is None:
            self.resources.not_emulated[logical_id] = resource_type
            return
        self.resources.add(created)

    def _runner_played(
        self, logical_id: str, resource_type: str, properties: Mapping[str, Any], provisioner: Provisioner
    ) -> Resource:
        if resource_type == "AWS::Lambda::Function":
            name = properties.get("FunctionName") or provisioner.physical_name(logical_id, limit=64)
            arn = provisioner.arn("lambda", f"function:{name}")
            return Resource(logical_id, resource_type, name, {"Arn": arn}, properties)
        if resource_type == "AWS::IAM::Role":
            arn = f"arn:aws:iam::{ACCOUNT_ID}:role/{provisioner.physical_name(logical_id, limit=64)}"
            return Resource(
                logical_id, resource_type, logical_id, {"Arn": arn, "RoleId": logical_id}, properties
            )
        if resource_type == "AWS::Lambda::LayerVersion":
            arn = provisioner.arn("lambda", f"layer:{properties.get('LayerName', logical_id)}:1")
            return Resource(logical_id, resource_type, arn, {}, properties)
        if resource_type == "AWS::Scheduler::Schedule":
            name = properties.get("Name", logical_id)
            arn = provisioner.arn("scheduler", f"schedule/default/{name}")
            return Resource(logical_id, resource_type, name, {"Arn": arn}, properties)
        return Resource(logical_id, resource_type, str(uuid.uuid4()), {}, properties)

    def _add_code_paths(self, state: _State) -> None:
        """Handlers import as packages from the project root; layer code is importable as in /opt/python."""
        paths = [self.project_root]
        for resource in self.resources.of_type("AWS::Lambda::LayerVersion"):
            content = local_code_path(resource.properties.get("Content"))
            if content is not None:
                layer = self.project_root / content
                paths.append(layer / "python" if (layer / "python").is_dir() else layer)
        for path in map(str, paths):
            if path not in sys.path:
                sys.path.append(path)
                state.added_paths.append(path)

    def _wire_runner_resources(self) -> None:
        for resource in self.resources.of_type("AWS::Lambda::Function"):
            self.functions[resource.logical_id] = self._local_function(resource)
        by_name = {function.name: function for function in self.functions.values()}
        by_arn = {function.arn: function for function in self.functions.values()}
        for resource in self.resources.of_type("AWS::Lambda::EventSourceMapping"):
            self._add_mapping(resource, by_name)
        for resource in self.resources.of_type("AWS::Scheduler::Schedule"):
            self._add_schedule(resource, by_arn)
        for resource in self.resources.of_type("AWS::Lambda::EventInvokeConfig"):
            function = by_name[_function_name(resource.properties["FunctionName"])]
            config = self._async_config.setdefault(function.logical_id, _AsyncConfig())
            config.max_retries = int(resource.properties.get("MaximumRetryAttempts", ASYNC_DEFAULT_RETRIES))
            destination = resource.properties.get("DestinationConfig", {}).get("OnFailure", {})
            config.on_failure_arn = destination.get("Destination")
        for function in self.functions.values():
            target = (
                self.resources[function.logical_id].properties.get("DeadLetterConfig", {}).get("TargetArn")
            )
            if target:
                self._async_config.setdefault(function.logical_id, _AsyncConfig()).dead_letter_arn = target

    def _local_function(self, resource: Resource) -> LocalFunction:
        p = resource.properties
        code = local_code_path(p.get("Code"))
        if code is None:
            raise TemplateError(f"{resource.logical_id}: only local CodeUri directories can run locally")
        handler_module, handler_name = p["Handler"].rsplit(".", 1)
        package = ".".join(Path(code).parts)
        module_name = f"{package}.{handler_module}" if package else handler_module
        memory = int(p.get("MemorySize", 128))
        template_env = {
            name: _env_text(value) for name, value in p.get("Environment", {}).get("Variables", {}).items()
        }
        lambda_env = {
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_LAMBDA_FUNCTION_NAME": resource.ref,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{resource.ref}",
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
            environment={**lambda_env, **LOCAL_ONLY_ENVIRONMENT, **template_env, **self._env},
        )

    def _add_mapping(self, resource: Resource, by_name: Mapping[str, LocalFunction]) -> None:
        p = dict(resource.properties)
        function = by_name[_function_name(p["FunctionName"])]
        source = p["EventSourceArn"]
        if ":dynamodb:" in source:
            self.stream_mappings[resource.logical_id] = StreamMapping(
                logical_id=resource.logical_id,
                function=function,
                stream_arn=source,
                properties=p,
                streams=self.client("dynamodbstreams"),
                send_on_failure=self._send_to,
                now=self.now,
                region=self.region,
            )
        elif ":sqs:" in source:
            queue = self.resources.find_by_attribute("Arn", source)
            self.sqs_mappings[resource.logical_id] = SqsMapping(
                logical_id=resource.logical_id,
                function=function,
                queue_arn=source,
                queue_url=queue.ref,
                properties=p,
                sqs=self.client("sqs"),
                region=self.region,
            )
        else:
            self.resources.not_emulated[resource.logical_id] = f"{resource.type} on {source}"

    def _add_schedule(self, resource: Resource, by_arn: Mapping[str, LocalFunction]) -> None:
        target = resource.properties["Target"]
        function = by_arn.get(target["Arn"])
        if function is None:
            self.resources.not_emulated[resource.logical_id] = f"{resource.type} targeting {target['Arn']}"
            return
        self.schedules[resource.logical_id] = Schedule(
            logical_id=resource.logical_id,
            arn=resource.attributes["Arn"],
            function=function.logical_id,
            expression=resource.properties["ScheduleExpression"],
            input_text=target.get("Input", "{}"),
            max_retries=int(target.get("RetryPolicy", {}).get("MaximumRetryAttempts", 185)),
            dead_letter_arn=target.get("DeadLetterConfig", {}).get("Arn"),
        )


@cache
def _runner_session(region: str) -> boto3.session.Session:
    """One session for the runner's own clients: botocore then loads each service model once."""
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _function_name(value: str) -> str:
    """FunctionName may be a name or an ARN."""
    return value.rsplit(":", 1)[-1] if value.startswith("arn:") else value


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _sns_may_send(queue_arn: str, topic_arn: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }


def _partner_message(message: Mapping[str, Any]) -> PartnerMessage:
    body = _json_or_text(message["Body"])
    if isinstance(body, dict) and body.get("Type") == "Notification" and "TopicArn" in body:
        attributes = {name: value["Value"] for name, value in body.get("MessageAttributes", {}).items()}
        return PartnerMessage(_json_or_text(body["Message"]), attributes, message["MessageId"], body)
    attributes = {
        name: value.get("StringValue", "") for name, value in message.get("MessageAttributes", {}).items()
    }
    return PartnerMessage(body, attributes, message["MessageId"])


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _linear_sqs_receive() -> Any:
    """A patcher making moto's ReceiveMessage linear in the queue's depth instead of quadratic.

    moto checks each message's retention by computing ALL the queue's attributes, and that counts every
    message in the queue: receiving from a deep queue costs O(depth) per message (the demo spent ~20%
    of its time there). Same rule, reading the one attribute it needs; active only inside the cloud.
    """
    from unittest import mock

    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention_period = int(self.get_queue(queue_name).message_retention_period)
        return retention_period + message.sent_timestamp / 1000 > unix_time()

    return mock.patch.object(
        SQSBackend, "is_message_valid_based_on_retention_period", is_message_valid_based_on_retention_period
    )
