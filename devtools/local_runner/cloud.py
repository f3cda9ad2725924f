"""LocalCloud: template.yaml brought up in moto, with Lambda's part played in-process.

The facade the demo and the tests use. It sequences the parts: the bring-up (stack.py: resources from
the template, then the functions, mappings and schedules the runner plays), subscriber stacks deployed
next to it from subscriber/template.yaml the same way, the delivery rounds (the event source mappings
of mappings.py and the asynchronous retries of async_invocations.py), the simulated clock (clock.py),
the call counter (aws_calls.py), the usage meter (usage.py), a partner's hand-made queues (partner.py)
and the SQS alarms the runner evaluates (alarms.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from devtools.local_runner import function_urls, partner
from devtools.local_runner.alarms import AlarmEvaluation, evaluate_queue_alarms
from devtools.local_runner.async_invocations import AsyncInvocations, Destinations
from devtools.local_runner.aws_calls import CallCounter
from devtools.local_runner.clock import ClockListener, SimulatedClock
from devtools.local_runner.function_invokes import FunctionInvokes
from devtools.local_runner.lambda_client import LocalLambdaClient
from devtools.local_runner.lambda_runtime import (
    Handler,
    InvocationRecord,
    LocalFunction,
    RemainingTime,
)
from devtools.local_runner.mappings import Outcome, SqsMapping, StreamMapping
from devtools.local_runner.partner import PartnerMessage
from devtools.local_runner.resources import Resources
from devtools.local_runner.stack import (
    ACCOUNT_ID,
    Schedule,
    SubscriberStack,
    add_code_paths,
    create_resources,
    event_source_mappings,
    local_functions,
    runner_schedules,
    stack_parameters,
)
from devtools.local_runner.template import load_sam_template
from devtools.local_runner.usage import UsageMeter

DEFAULT_START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)  # a Monday morning, fixed for repeatable runs
DEFAULT_STACK_NAME = "leap-connect-tracker"
DEFAULT_REGION = "us-east-1"
SUBSCRIBER_TEMPLATE = Path("subscriber") / "template.yaml"  # relative to the main template's directory

logger = logging.getLogger(__name__)


class RunnerLoopError(RuntimeError):
    """drain() went round more times than allowed: something keeps producing work."""


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
        self.usage = UsageMeter(ACCOUNT_ID, region)  # billable quantities per invocation (docs/cost.md)
        self.resources = Resources()
        self.functions: dict[str, LocalFunction] = {}
        self.stream_mappings: dict[str, StreamMapping] = {}
        self.sqs_mappings: dict[str, SqsMapping] = {}
        self.schedules: dict[str, Schedule] = {}
        self.outputs: dict[str, Any] = {}
        self.parameters: dict[str, Any] = {}
        self.subscribers: dict[str, SubscriberStack] = {}  # by stack name
        self.invocations: list[InvocationRecord] = []
        self.dropped_async_events: list[dict[str, Any]] = []
        self._destinations = Destinations(self.resources, self.client)
        self._async = AsyncInvocations(self._invoke, self._destinations, self.now, self.dropped_async_events)
        self.function_invokes = FunctionInvokes(
            lambda: self.functions, lambda: self.calls.current_function, self._async.enqueue
        )
        self._partner_queues = 0
        self._state: _State | None = None

    # ------------------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalCloud:
        from moto import mock_aws  # deferred: development tool, heavy import

        mock = mock_aws()
        mock.start()
        self._moto_patches = [
            _linear_sqs_receive(),
            _visibility_from_the_receive(),
            _bucket_policy_over_tls(),
            _query_without_sorting_the_table(),
            *_table_writes_one_at_a_time(),
        ]
        for patch in self._moto_patches:
            patch.start()
        self.clock.start()
        self.calls.install()
        self.usage.install()
        self.function_invokes.install()
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
        self.usage.uninstall()
        self.function_invokes.uninstall()
        self.clock.stop()
        for patch in reversed(self._moto_patches):
            patch.stop()
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

    def lambda_client(self) -> LocalLambdaClient:
        """A Lambda client whose ``invoke`` runs the function here (moto cannot run the template's
        functions): for tools such as ``leap-tracker poll`` (devtools/local_runner/lambda_client.py)."""
        self._running()
        return LocalLambdaClient(self)

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

    def function_url(self, logical_id: str) -> str:
        """The URL of the function's FunctionUrlConfig, as the stack output gives it."""
        function = self._function(logical_id)
        for url in self.resources.of_type("AWS::Lambda::Url"):
            if url.attributes["FunctionArn"] == function.arn:
                return str(url.attributes["FunctionUrl"])
        raise KeyError(f"{logical_id} has no FunctionUrlConfig")

    def call_function_url(
        self, url: str, method: str, headers: Mapping[str, str], body: bytes = b""
    ) -> function_urls.HttpAnswer:
        """An HTTP request to a function URL, as Lambda's front end handles it: the payload format 2.0
        event (timed on the simulated clock), a synchronous invocation recorded like any other, and
        (status, headers, body) from its result; an unhandled error (a timeout too) is a 502.
        devtools/local_runner/function_urls.py says what is not emulated."""
        wanted = function_urls.parse_url(url).url_id
        for resource in self.resources.of_type("AWS::Lambda::Url"):
            if function_urls.url_id(resource.attributes["FunctionArn"]) == wanted:
                function = next(
                    f for f in self.functions.values() if f.arn == resource.attributes["FunctionArn"]
                )
                break
        else:
            raise KeyError(f"no function URL of this cloud answers {url!r}")
        event = function_urls.request_event(url, method, headers, body, self.now())
        outcome = self._invoke(function, event, "function-url")
        return function_urls.http_answer(outcome.result, outcome.error)

    def pump(self) -> int:
        """One round: every mapping delivers at most one batch, due async retries run. Invocations made."""
        return self._round()[1]

    def next_due(self) -> datetime | None:
        """The earliest later moment at which something waiting becomes deliverable: a delayed or
        invisible message of a queue an event source mapping reads, or a due asynchronous retry (None:
        nothing waits). A caller stepping the clock goes there instead of polling at a fixed pace."""
        moments = [event.due for event in self._async.pending()]
        urls = {mapping.queue_url for mapping in self.sqs_mappings.values() if mapping.enabled}
        moments += [_waiting_until(url) for url in urls]
        later = [moment for moment in moments if moment is not None and moment > self.now()]
        return min(later, default=None)

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

    # -------------------------------------------------------------------------- subscriber stacks
    def deploy_subscriber(
        self,
        name: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        template: str | Path | None = None,
    ) -> SubscriberStack:
        """Deploy a subscriber stack next to this one, from subscriber/template.yaml (or ``template``),
        exactly as the main stack is brought up: parameters checked, the SAM transform, the resources
        in moto, and the sample consumer with its SQS event source mapping when the parameters deploy
        it (drain() delivers to it). ``EventsTopicArn`` defaults to this stack's output.

        Its functions and mappings are known as ``<name>/<logical id>`` (``invocations``,
        ``fail_next``, ``sqs_mappings``...); its resources, outputs and parameters are in the returned
        :class:`SubscriberStack`, also kept in :attr:`subscribers`.
        """
        state = self._running()
        if name in self.subscribers or name == self.stack_name:
            raise ValueError(f"a stack named {name!r} is already deployed")
        path = Path(template).resolve() if template else self.project_root / SUBSCRIBER_TEMPLATE
        sam = load_sam_template(path)
        given = dict(parameters or {})
        if "EventsTopicArn" in sam.get("Parameters", {}) and "EventsTopicArn" in self.outputs:
            given.setdefault("EventsTopicArn", self.outputs["EventsTopicArn"])
        resolved = stack_parameters(sam, given, {}, self.client, stack_name=name)
        resources = Resources()
        outputs = create_resources(sam, resolved, resources, self.client, stack_name=name, region=self.region)
        package = self._package_of(path.parent, state)
        functions = {
            f"{name}/{logical_id}": dataclasses.replace(function, logical_id=f"{name}/{logical_id}")
            for logical_id, function in local_functions(
                resources, region=self.region, env=self._env, package=package
            ).items()
        }
        streams, queues = event_source_mappings(
            resources,
            functions,
            self.client,
            send_on_failure=self._destinations.send,
            now=self.now,
            region=self.region,
        )
        self.functions.update(functions)
        self.stream_mappings.update({f"{name}/{key}": mapping for key, mapping in streams.items()})
        self.sqs_mappings.update({f"{name}/{key}": mapping for key, mapping in queues.items()})
        stack = SubscriberStack(name, path, resolved, outputs, resources, functions)
        self.subscribers[name] = stack
        return stack

    # ------------------------------------------------------------------------------------ alarms
    def evaluate_alarms(self) -> list[AlarmEvaluation]:
        """Evaluate every alarm on an SQS queue metric now, as CloudWatch would (moto evaluates none).

        Each metric's value is read from its queue at the simulated instant; a changed state is set
        with SetAlarmState and notified to the alarm's topics (docs/local-runner.md says what is
        emulated). Nothing calls this by itself: a test or tool does, after the moment it cares about.
        """
        return evaluate_queue_alarms(
            self.client("cloudwatch"),
            self.client("sqs"),
            self.client("sns"),
            now=self.now(),
            region=self.region,
            account=ACCOUNT_ID,
        )

    # -------------------------------------------------------------------------- partner helpers
    def subscribe_queue(
        self,
        topic_logical_id: str,
        filter_policy: Mapping[str, Any] | None = None,
        scope: str = "MessageAttributes",
        raw: bool = True,
        name: str | None = None,
    ) -> str:
        """Create a queue and subscribe it to a topic the way a partner would. Returns the queue URL.

        ``topic_logical_id``: a topic of this stack, or any topic's ARN (a subscriber stack's alarm topic).
        """
        topic_arn = (
            topic_logical_id
            if topic_logical_id.startswith("arn:")
            else self.resources.topic_arn(topic_logical_id)
        )
        fifo = topic_arn.endswith(".fifo")
        self._partner_queues += 1
        queue_name = name or f"partner-{self._partner_queues}" + (".fifo" if fifo else "")
        return partner.subscribe_queue(
            self.client("sqs"),
            self.client("sns"),
            topic_arn,
            queue_name,
            fifo=fifo,
            filter_policy=filter_policy,
            scope=scope,
            raw=raw,
        )

    def drain_queue(self, queue: str, *, delete: bool = True) -> list[PartnerMessage]:
        """Every visible message of a queue (URL or logical id), parsed; deleted unless told not to."""
        url = queue if queue.startswith("http") else self.resources.queue_url(queue)
        return partner.drain_queue(self.client("sqs"), url, delete=delete)

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
    def current_invocation(self) -> InvocationRecord | None:
        """The invocation running now (None between invocations): where its usage is counted."""
        current = self.usage.current
        return current if isinstance(current, InvocationRecord) else None

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
        worked |= self._async.run_due()
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
        self.usage.current = record
        self.usage.count_event_source(record, source, event)
        started = time.perf_counter()
        try:
            record.result = function.run(event, self.now)
        except Exception as exc:  # a handler error is data for the mapping, as in Lambda
            record.error = exc
            logger.warning("%s failed (%s): %r", function.logical_id, source, exc, exc_info=exc)
        finally:
            record.duration_seconds = time.perf_counter() - started
            self.calls.current_function = None
            self.usage.current = None
        self.invocations.append(record)
        return Outcome(record.result, record.error)

    def _invoke_async(self, function: LocalFunction, payload: Any, source: str) -> InvocationRecord:
        self._async.invoke(function, payload, source)
        return self.invocations[-1]

    def _package_of(self, directory: Path, state: _State) -> tuple[str, ...]:
        """A template directory as a package of the project root; one outside it goes on sys.path."""
        if directory.is_relative_to(self.project_root):
            return directory.relative_to(self.project_root).parts
        if str(directory) not in sys.path:
            sys.path.append(str(directory))
            state.added_paths.append(str(directory))
        return ()

    def _schedule_for(self, function_id: str, schedule_id: str | None) -> Schedule:
        if schedule_id is not None:
            return self.schedules[schedule_id]
        matching = [s for s in self.schedules.values() if s.function == function_id]
        if len(matching) != 1:
            raise KeyError(f"{function_id} has {len(matching)} schedules {[s.logical_id for s in matching]}")
        return matching[0]

    # ----------------------------------------------------------------------------- bring-up
    def _bring_up(self) -> None:
        """template.yaml into moto, then what the runner plays (devtools/local_runner/stack.py)."""
        state = self._running()
        sam = load_sam_template(self.template_path)
        self.parameters = stack_parameters(
            sam, self._parameter_overrides, self._secret_parameters, self.client, stack_name=self.stack_name
        )
        self.outputs = create_resources(
            sam, self.parameters, self.resources, self.client, stack_name=self.stack_name, region=self.region
        )
        state.added_paths.extend(add_code_paths(self.project_root, self.resources))
        self.functions.update(local_functions(self.resources, region=self.region, env=self._env))
        streams, queues = event_source_mappings(
            self.resources,
            self.functions,
            self.client,
            send_on_failure=self._destinations.send,
            now=self.now,
            region=self.region,
        )
        self.stream_mappings.update(streams)
        self.sqs_mappings.update(queues)
        self.schedules.update(runner_schedules(self.resources, self.functions))
        self._async.configure(self.resources, self.functions)


@cache
def _runner_session(region: str) -> boto3.session.Session:
    """One session for the runner's own clients: botocore then loads each service model once."""
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    )


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


def _waiting_until(queue_url: str) -> datetime | None:
    """When the queue's first waiting message (delayed, or received and not yet visible again) becomes
    visible, from moto's own bookkeeping (milliseconds on the simulated clock): SQS does not say."""
    from moto.sqs.models import sqs_backends

    region, name = queue_url.split("//", 1)[1].split(".")[1], queue_url.rstrip("/").rsplit("/", 1)[1]
    queue = sqs_backends[ACCOUNT_ID][region].queues.get(name)
    if queue is None:
        return None
    waiting = [max(m.delayed_until, m.visible_at) for m in queue._messages if m.delayed or not m.visible]
    return datetime.fromtimestamp(min(waiting) / 1000, UTC) if waiting else None


def _table_writes_one_at_a_time() -> list[Any]:
    """A handler may send a page's batch calls from several threads (the poller does, as on Lambda).
    DynamoDB takes them at once; moto's table numbers its stream records by ``len(records)`` before it
    appends, so two writes in two threads could share a sequence number. One lock around a table's
    writes keeps moto's stream as DynamoDB's would be: every record once, in an order."""
    import threading
    from unittest import mock

    from moto.dynamodb.models.table import Table

    lock = threading.RLock()

    def serialised(original: Any) -> Any:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(self, *args, **kwargs)

        return write

    return [
        mock.patch.object(Table, name, serialised(getattr(Table, name)))
        for name in ("put_item", "delete_item")
    ]


def _query_without_sorting_the_table() -> Any:
    """moto's Query starts from every item of the table, sorted (``Table.all_items``), then keeps the
    key's and sorts those again: a sort of the whole table per Query, most of a demo's time once the
    table holds history and outreach items. Its results do not depend on that first order (they are
    sorted by the table's or the index's keys, which order them totally), so a Query here starts from
    the items of its partition (a table Query) or from every item unsorted (an index Query)."""
    from unittest import mock

    from moto.dynamodb.models.table import Table

    original = Table.query
    index_position = 6  # index_name, after hash_key: how moto's backend passes it

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[index_position] if len(args) > index_position else None)

        def candidates() -> list[Any]:
            if index_name is None and hash_key is not None:
                found = self.items.get(hash_key)
                if found is None:
                    return []
                return list(found.values()) if self.range_key_attr else [found]
            return [
                item
                for hash_set in self.items.values()
                for item in (hash_set.values() if self.range_key_attr else [hash_set])
            ]

        self.all_items = candidates  # this call only: the instance attribute shadows the method
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    return mock.patch.object(Table, "query", query)


def _visibility_from_the_receive() -> Any:
    """A patcher making moto's ChangeMessageVisibility count SQS's 12-hour limit from the receive.

    moto counts it from when the message was SENT, so on the simulated clock a message sent days ago
    (a failure record an operator reads a week later) could never be made visible again; SQS counts
    the 12 hours from the ReceiveMessage that gave the receipt handle. moto keeps no receive time
    per handle, so this checks the one bound a fresh receive has: the timeout itself. A timeout of 0
    makes the message visible at once, as in SQS (moto's "visible after now" never comes on a clock
    that stands still between advances)."""
    from unittest import mock

    from moto.sqs.exceptions import InvalidParameterValue, ReceiptHandleIsInvalid
    from moto.sqs.models import SQSBackend

    def change_message_visibility(
        self: Any, queue_name: str, receipt_handle: str, visibility_timeout: int
    ) -> None:
        queue = self.get_queue(queue_name)
        for message in queue._messages:
            if message.had_receipt_handle(receipt_handle):
                if int(visibility_timeout) > 43200:
                    raise InvalidParameterValue(
                        f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. Reason: "
                        "Total VisibilityTimeout for the message is beyond the limit [43200 seconds]"
                    )
                message.change_visibility(visibility_timeout)
                if int(visibility_timeout) == 0:
                    message.visible_at -= 1  # milliseconds: strictly before now
                if message.visible and message in queue.pending_messages:
                    queue.pending_messages.remove(message)
                return
        raise ReceiptHandleIsInvalid

    return mock.patch.object(SQSBackend, "change_message_visibility", change_message_visibility)


def _bucket_policy_over_tls() -> Any:
    """A patcher making moto's bucket policies judge conditions as S3 does, for requests over TLS.

    moto evaluates a bucket policy with no request context and treats a statement whose condition
    does not hold as a denial, whatever its effect: the TLS-only statement (Deny when
    ``aws:SecureTransport`` is false) then denies every request. In S3 a statement whose condition does
    not hold does not apply; and boto3 talks TLS to AWS, so ``aws:SecureTransport`` is true here."""
    from unittest import mock

    from moto.iam.access_control import IAMPolicyStatement, PermissionResult
    from moto.s3.models import FakeBucket

    context = {"aws:SecureTransport": "true"}

    def applies(statement: dict[str, Any]) -> bool:
        """Whether the statement's conditions hold (``Bool`` on a key this context knows; any other
        condition is taken to hold, so a Deny the runner cannot judge still denies)."""
        for operator, pairs in (statement.get("Condition") or {}).items():
            if operator != "Bool":
                continue
            for key, expected in pairs.items():
                wanted = expected if isinstance(expected, list) else [expected]
                if key in context and context[key] not in {str(w).lower() for w in wanted}:
                    return False
        return True

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        statements = json.loads(self.policy.decode())["Statement"]
        results = [
            IAMPolicyStatement({k: v for k, v in statement.items() if k != "Condition"}).is_action_permitted(
                action, resource
            )
            for statement in (statements if isinstance(statements, list) else [statements])
            if applies(statement)
        ]
        if PermissionResult.DENIED in results:
            return PermissionResult.DENIED
        return (
            PermissionResult.PERMITTED if PermissionResult.PERMITTED in results else PermissionResult.NEUTRAL
        )

    return mock.patch.object(FakeBucket, "get_permission", get_permission)
