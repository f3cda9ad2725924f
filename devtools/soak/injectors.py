"""How each fault is applied, seeded by the plan and recorded in the timeline when it takes effect.

- AWS: a botocore hook (the way devtools/local_runner/aws_calls.py counts calls) on every session the
  functions create: ``before-call`` answers in place of moto (an error, or a partial answer after doing
  part of the work through the runner's own client) or raises a crash; ``after-call`` notes side effects.
- Lambda: a wrapper around every function's handler (duplicate delivery, visibility expiring mid-run,
  a crash after a side effect, a poller pass run that sees its time limit after a few page checks:
  ``cloud.set_remaining_time`` for that run only); a timeout is simulated time passing inside a call,
  past the function's Timeout, which the runner then treats as a failed invocation with its side
  effects kept.
- Leap: the simulator's own faults (devtools/leap_simulator/faults.py); a slow answer moves the
  simulated clock instead of sleeping. A fault aimed at one caller (the webhook processor's Meters
  confirmation, a targeted poll's Connect request, a poller continuation's) is handed out by the
  lookup when that caller asks.
- Webhook: the receiver's planned answers (fail, hang, delay).

``time.sleep`` inside an invocation moves the simulated clock (retry backoffs, Retry-After), on the
invocation's own threads too (the poller fetches its next Leap page and sends its DynamoDB batches from
worker threads): the product's waits cost simulated time, not wall time. Concurrent waits add up
where Lambda would overlap them, which only makes the run's time limit come sooner.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore import handlers
from botocore.awsrequest import AWSResponse

from devtools.leap_simulator import LeapSimulator
from devtools.leap_simulator import faults as leap_faults
from devtools.local_runner import LocalCloud, shapes
from devtools.soak.plan import (
    CONNECT,
    CONNECT_CONTINUATION,
    CONNECT_TARGETED,
    LEAP_KINDS,
    METERS_CONFIRMATION,
    POLLER,
    PROCESSOR,
    RECEIVER,
    TARGETED_POLL,
    WEBHOOK_KINDS,
    Fault,
    FaultKind,
)
from devtools.soak.timeline import Timeline
from devtools.webhook_receiver import WebhookReceiver
from leap_tracker.leap import wire

_PARAMS = "before-parameter-build.*.*"
_BEFORE = "before-call.*.*"
_AFTER = "after-call.*.*"
_STASH = "soak_api_params"
_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
_PUBLISHES = frozenset({"Publish", "PublishBatch"})
_SEND = "SendMessage"
# Besides a publish, what counts as a side effect (a crash after it, at the next call, repeats work):
# the poller's and the processor's table writes, an enqueue of the receiver or the processor.
_SIDE_EFFECTS: dict[str, frozenset[str]] = {
    POLLER: _WRITES,
    PROCESSOR: _WRITES | {_SEND},
    RECEIVER: frozenset({_SEND}),
}
_LEAP_KIND = {
    leap_faults.FaultKind.RATE_LIMITED: FaultKind.LEAP_RATE_LIMITED,
    leap_faults.FaultKind.SERVER_ERROR: FaultKind.LEAP_SERVER_ERROR,
    leap_faults.FaultKind.HTTP_ERROR: FaultKind.LEAP_UNAVAILABLE,
    leap_faults.FaultKind.SLOW: FaultKind.LEAP_SLOW,
    leap_faults.FaultKind.TRUNCATED_BODY: FaultKind.LEAP_TRUNCATED_BODY,
    leap_faults.FaultKind.DROPPED_CONNECTION: FaultKind.LEAP_CONNECTION_RESET,
    leap_faults.FaultKind.EXPIRED_PAGE_TOKEN: FaultKind.LEAP_EXPIRED_PAGE_TOKEN,
}
REPLAY_KEEP = 20  # emitter batches kept for a later replay


class InjectedCrash(RuntimeError):
    """The function's process died (the soak's crash after a side effect)."""


class _ProcessCrash(BaseException):
    """Raised inside the handler so no ``except Exception`` of the product swallows it; the wrapper
    turns it into :class:`InjectedCrash` for the runner."""


@dataclass
class _Armed:
    fault: Fault
    left: int  # hits left
    seen: int = 0  # matching calls so far
    leap: leap_faults.Fault | None = None  # what a Leap fault aimed at one caller answers


@dataclass
class _Invocation:
    """What the hook knows of the invocation running now."""

    record: Any = None
    side_effect: bool = False
    crash_pending: bool = False
    write_fails_pending: bool = False
    sent: list[str] = field(default_factory=list)  # queues (logical ids) it sent a message to, accepted


@dataclass(frozen=True, slots=True)
class Handled:
    """One invocation as the wrapper saw it: the items it was given and those it reported failed."""

    index: int  # position in cloud.invocations
    function: str
    items: tuple[str, ...]  # SQS message ids, stream sequence numbers, a webhook's id, or the payload's JSON
    failed_items: tuple[str, ...] | None  # None: the whole invocation failed (or no partial report)
    sent: tuple[str, ...] = ()  # the queues (logical ids) of the SendMessage calls that succeeded
    ended: datetime | None = None  # simulated time when the handler returned or raised
    connect: tuple[dict[str, list[str]], ...] = ()  # a poller run's Connect requests (their queries)


class Injectors:
    """Everything the soak injects into one running world. Use as a context manager."""

    def __init__(
        self, cloud: LocalCloud, leap: LeapSimulator, webhook: WebhookReceiver, timeline: Timeline
    ) -> None:
        self.cloud, self.leap, self.webhook, self.timeline = cloud, leap, webhook, timeline
        self._aws: list[_Armed] = []
        self._lambda: list[_Armed] = []
        self._leap_scoped: list[_Armed] = []  # Leap faults aimed at one caller
        self._queues = {q.ref: q.logical_id for q in cloud.resources.of_type("AWS::SQS::Queue")}
        self._current = _Invocation()
        self._reentrant = False
        self._webhook_armed: list[Fault] = []
        self._time_limits: list[_Armed] = []  # the poller's, aimed at the hour's pass runs
        self._continuing = False  # a poller continuation is running (CONNECT_CONTINUATION's scope)
        self._clock = threading.Lock()  # the soak's own clock moves, from any thread
        self.handled: list[Handled] = []
        self.stream_batches: list[dict[str, Any]] = []
        self._real_sleep = time.sleep
        self._original_take = leap.faults.take

    # ------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> Injectors:
        handlers.BUILTIN_HANDLERS.extend(
            [(_PARAMS, self._stash), (_BEFORE, self._before), (_AFTER, self._after)]
        )
        time.sleep = self._sleep  # type: ignore[assignment]
        self.leap.faults.take = self._take  # type: ignore[method-assign]
        for logical_id, function in list(self.cloud.functions.items()):
            # The handler is looked up at each call, inside the function's environment: importing the
            # module here, outside it, would build its Powertools objects without their settings.
            current = function.handler_override or (
                lambda event, context, f=function: f.original_handler()(event, context)
            )
            function.handler_override = self._wrapped(logical_id, current)
        return self

    def __exit__(self, *_: object) -> None:
        for entry in [(_PARAMS, self._stash), (_BEFORE, self._before), (_AFTER, self._after)]:
            if entry in handlers.BUILTIN_HANDLERS:
                handlers.BUILTIN_HANDLERS.remove(entry)
        time.sleep = self._real_sleep  # type: ignore[assignment]
        self.leap.faults.take = self._original_take  # type: ignore[method-assign]

    # ------------------------------------------------------------------------------ arming
    def arm(self, faults: list[Fault]) -> None:
        for fault in faults:
            if fault.kind in LEAP_KINDS:
                self._arm_leap(fault)
            elif fault.kind in WEBHOOK_KINDS:
                self._arm_webhook(fault)
            elif fault.kind in (FaultKind.DUPLICATE_DELIVERY, FaultKind.VISIBILITY_EXPIRED):
                self._lambda.append(_Armed(fault, fault.times))
            elif fault.kind is FaultKind.POLLER_TIME_LIMIT:
                self._time_limits.append(_Armed(fault, fault.times))
            elif fault.kind is FaultKind.STREAM_REPLAY:
                self._replay(fault)
            else:
                self._aws.append(_Armed(fault, fault.times))

    def disarm(self) -> None:
        """The hour is over: what was not used is dropped (so the timeline holds what happened)."""
        self._aws.clear()
        self._lambda.clear()
        self._time_limits.clear()
        self._leap_scoped.clear()
        self.leap.clear_faults()
        unused = self.webhook.clear_planned()
        used = sum(f.times for f in self._webhook_armed) - unused
        for fault in self._webhook_armed:
            take = min(used, fault.times)
            used -= take
            for _ in range(take):
                self.timeline.add(
                    self.cloud.now(), fault.kind, fault.target, f"(this hour) {fault.describe()}"
                )
        self._webhook_armed.clear()

    def _arm_leap(self, fault: Fault) -> None:
        path = self.leap.connect_wire.path if fault.target == CONNECT else wire.METERS_SEARCH_PATH
        simulated = {
            FaultKind.LEAP_RATE_LIMITED: lambda: leap_faults.rate_limited(int(fault.amount)),
            FaultKind.LEAP_SERVER_ERROR: leap_faults.server_error,
            FaultKind.LEAP_UNAVAILABLE: lambda: leap_faults.http_error(503),
            FaultKind.LEAP_SLOW: lambda: leap_faults.slow(fault.amount),
            FaultKind.LEAP_TRUNCATED_BODY: leap_faults.truncated_body,
            FaultKind.LEAP_CONNECTION_RESET: leap_faults.dropped_connection,
            FaultKind.LEAP_EXPIRED_PAGE_TOKEN: leap_faults.expired_page_token,
            FaultKind.LEAP_OUTAGE: leap_faults.server_error,
        }[fault.kind]()
        if fault.kind is FaultKind.LEAP_OUTAGE:  # every request of both APIs, for the whole hour
            self.leap.inject(simulated, times=None, path=None)
            self.timeline.add(self.cloud.now(), fault.kind, "connect+meters", "for the hour")
        elif fault.target in (METERS_CONFIRMATION, CONNECT_TARGETED, CONNECT_CONTINUATION):  # by _take
            self._leap_scoped.append(_Armed(fault, fault.times, leap=simulated))
        else:
            self.leap.inject(simulated, times=fault.times, path=path)

    def _arm_webhook(self, fault: Fault) -> None:
        if fault.kind is FaultKind.WEBHOOK_ERROR:
            self.webhook.fail_next(fault.times, status=500)
        elif fault.kind is FaultKind.WEBHOOK_TIMEOUT:
            self.webhook.hang_next(fault.times)
        else:
            self.webhook.delay_next(fault.amount, fault.times)
        self._webhook_armed.append(fault)

    def _take(self, path: str, carries_page_token: bool) -> leap_faults.Fault | None:
        """The simulator's fault lookup, recorded; a slow answer costs simulated time, not wall time."""
        fault = self._original_take(path, carries_page_token)
        where = path
        if fault is None:
            fault, where = self._scoped_take(path, carries_page_token), f"{path} ({self._scope(path)})"
        if fault is None:
            return None
        self.timeline.add(self.cloud.now(), _LEAP_KIND[fault.kind], where, _leap_detail(fault))
        if fault.kind is leap_faults.FaultKind.SLOW:
            self._advance(fault.delay_seconds)  # the caller waits on the socket meanwhile
            return leap_faults.slow(0)
        return fault

    def _scope(self, path: str) -> str | None:
        """Which one caller's request this is (METERS_CONFIRMATION, CONNECT_TARGETED,
        CONNECT_CONTINUATION), if any. Asked on the simulator's thread while the invocation waits for
        its answer."""
        function, record = self.cloud.calls.current_function, self.cloud.current_invocation
        if function == PROCESSOR and path == wire.METERS_SEARCH_PATH:
            return METERS_CONFIRMATION
        if function == POLLER and record is not None and record.source == "sqs":
            return CONNECT_TARGETED if path == self.leap.connect_wire.path else None
        if function == POLLER and self._continuing and path == self.leap.connect_wire.path:
            return CONNECT_CONTINUATION
        return None

    def _scoped_take(self, path: str, carries_page_token: bool) -> leap_faults.Fault | None:
        scope = self._scope(path) if self._leap_scoped else None
        if scope is None:
            return None
        for armed in self._leap_scoped:
            if not carries_page_token and _expires_tokens(armed):  # as the simulator's own plan
                continue
            if armed.left and armed.fault.target == scope:
                armed.seen += 1
                if armed.seen >= armed.fault.nth:
                    armed.left -= 1
                    return armed.leap
        return None

    def _aimed(self, target: str, function: str) -> bool:
        """Whether a fault aimed at ``target`` strikes this call of ``function``."""
        if target == TARGETED_POLL:
            record = self.cloud.current_invocation
            return function == POLLER and record is not None and record.source == "sqs"
        return target == function

    def _replay(self, fault: Fault) -> None:
        """Deliver an emitter batch again, as a stream replay would (records seen before, re-sent)."""
        if not self.stream_batches:
            return
        batch = self.stream_batches[(fault.nth - 1) % len(self.stream_batches)]
        self.timeline.add(self.cloud.now(), fault.kind, fault.target, f"{len(batch['Records'])} records")
        try:
            self.cloud.invoke(fault.target, copy.deepcopy(batch))
        except Exception as exc:
            self.timeline.add(self.cloud.now(), "phase", fault.target, f"replay failed: {exc!r}")

    # ------------------------------------------------------------------------- simulated sleep
    def _sleep(self, seconds: float) -> None:
        """Simulated while an invocation runs, whichever thread waits: the main one, or one the
        invocation started (the poller's page prefetch, its concurrent batch calls). The servers'
        threads never wait here: a slow Leap answer is simulated in ``_take``, the endpoint waits on
        an Event."""
        if self.cloud.current_invocation is not None:
            if seconds > 0:
                self._advance(seconds)
            return
        self._real_sleep(seconds)

    def _advance(self, seconds: float) -> None:
        with self._clock:
            self.cloud.advance(seconds=seconds)

    # ------------------------------------------------------------------------------ AWS hook
    def _stash(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if self.cloud.calls.current_function is not None:
            context[_STASH] = copy.deepcopy(params)

    def _invocation(self) -> _Invocation:
        record = self.cloud.current_invocation
        if self._current.record is not record:
            self._current = _Invocation(record)
        return self._current

    def _before(self, model: Any, context: dict[str, Any], **_: Any) -> Any:
        function = self.cloud.calls.current_function
        if function is None or self._reentrant:
            return None
        state = self._invocation()
        service, operation = model.service_model.service_name, model.name
        if state.crash_pending:
            state.crash_pending = False
            self.timeline.add(
                self.cloud.now(), FaultKind.CRASH_AFTER_SIDE_EFFECT, function, f"before {operation}"
            )
            raise _ProcessCrash(f"crash in {function} before {service}.{operation}")
        if state.write_fails_pending and service == "dynamodb":
            state.write_fails_pending = False
            self.timeline.add(self.cloud.now(), FaultKind.WRITE_AFTER_SIDE_EFFECT_FAILS, function, operation)
            return _error(500, "InternalServerError", "injected after a side effect")
        for armed in self._aws:
            if (
                armed.left
                and self._aimed(armed.fault.target, function)
                and _matches(armed.fault.kind, service, operation)
            ):
                armed.seen += 1
                if armed.seen >= armed.fault.nth:
                    answer = self._apply(armed, function, service, operation, context)
                    if answer is not None:
                        return answer
        return None

    def _apply(
        self, armed: _Armed, function: str, service: str, operation: str, context: dict[str, Any]
    ) -> Any:
        kind = armed.fault.kind
        if kind in (FaultKind.CRASH_AFTER_SIDE_EFFECT, FaultKind.WRITE_AFTER_SIDE_EFFECT_FAILS):
            return None  # these wait for a side effect (after-call)
        armed.left -= 1
        self.timeline.add(self.cloud.now(), kind, armed.fault.target, f"{service}.{operation}")
        match kind:
            case FaultKind.DYNAMO_THROTTLED:
                return _error(400, "ProvisionedThroughputExceededException", "injected throttling")
            case FaultKind.DYNAMO_ERROR:
                return _error(500, "InternalServerError", "injected error")
            case FaultKind.SNS_ERROR:
                return _error(500, "InternalError", "injected error")
            case FaultKind.SQS_ERROR:
                return _error(500, "InternalError", "injected error")
            case FaultKind.FUNCTION_TIMEOUT:
                self._advance(self.cloud.functions[function].timeout_seconds + 1)
                return None  # the call itself then answers: the run is past its Timeout
            case _:
                return self._partly(kind, context.get(_STASH) or {})

    def _partly(self, kind: FaultKind, params: dict[str, Any]) -> Any:
        """Do the first half of the work through the runner's client; answer the rest as left over."""
        self._reentrant = True
        try:
            if kind is FaultKind.BATCH_WRITE_UNPROCESSED:
                [(name, requests)] = params["RequestItems"].items()
                done, rest = _halves(requests)
                if done:
                    self.cloud.client("dynamodb").batch_write_item(RequestItems={name: done})
                return _ok({"UnprocessedItems": {name: rest} if rest else {}})
            if kind is FaultKind.BATCH_GET_UNPROCESSED:
                responses: dict[str, list[Any]] = {}
                unprocessed: dict[str, Any] = {}
                for name, request in params["RequestItems"].items():
                    done, rest = _halves(request["Keys"])
                    if done:
                        answer = self.cloud.client("dynamodb").batch_get_item(
                            RequestItems={name: {**request, "Keys": done}}
                        )
                        responses[name] = answer["Responses"].get(name, [])
                    if rest:
                        unprocessed[name] = {**request, "Keys": rest}
                return _ok({"Responses": responses, "UnprocessedKeys": unprocessed})
            entries = params["PublishBatchRequestEntries"]
            done, rest = _halves(entries)
            successful: list[Any] = []
            if done:
                request = {**params, "PublishBatchRequestEntries": done}
                successful = self.cloud.client("sns").publish_batch(**request).get("Successful", [])
            failed = [
                {"Id": e["Id"], "Code": "InternalError", "Message": "injected", "SenderFault": False}
                for e in rest
            ]
            return _ok({"Successful": successful, "Failed": failed})
        finally:
            self._reentrant = False

    def _after(self, model: Any, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        function = self.cloud.calls.current_function
        if function is None or self._reentrant or http_response.status_code >= 300:
            return
        operation = model.name
        state = self._invocation()
        if operation == _SEND:
            url = str((context.get(_STASH) or {}).get("QueueUrl", ""))
            state.sent.append(self._queues.get(url, url.rsplit("/", 1)[-1]))
        if operation not in _PUBLISHES and operation not in _SIDE_EFFECTS.get(function, ()):
            return
        state.side_effect = True
        for armed in self._aws:
            if armed.left and self._aimed(armed.fault.target, function):
                if armed.fault.kind is FaultKind.CRASH_AFTER_SIDE_EFFECT:
                    armed.left -= 1
                    state.crash_pending = True
                elif armed.fault.kind is FaultKind.WRITE_AFTER_SIDE_EFFECT_FAILS and operation in _PUBLISHES:
                    armed.left -= 1
                    state.write_fails_pending = True

    # ---------------------------------------------------------------------------- the wrapper
    def _wrapped(self, name: str, inner: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def handler(event: Any, context: Any) -> Any:
            index = len(self.cloud.invocations)  # the runner appends this invocation's record next
            items = _items(event)
            requests_before = self.leap.request_total
            if name == "EmitterFunction" and isinstance(event, dict) and event.get("Records"):
                self.stream_batches = [*self.stream_batches[-(REPLAY_KEEP - 1) :], copy.deepcopy(event)]

            def note(failed: tuple[str, ...] | None) -> None:
                connect = self._connect_queries(requests_before) if name == POLLER else ()
                seen = Handled(index, name, items, failed, self._sent(), self.cloud.now(), connect)
                self.handled.append(seen)

            try:
                result = self._run(name, inner, event, context)
            except _ProcessCrash as crash:
                note(None)
                raise InjectedCrash(str(crash)) from None
            except BaseException:
                note(None)
                raise
            if self._current.record is self.cloud.current_invocation and self._current.crash_pending:
                self._current.crash_pending = False  # the side effect was the run's last call
                self.timeline.add(self.cloud.now(), FaultKind.CRASH_AFTER_SIDE_EFFECT, name, "at the end")
                note(None)
                raise InjectedCrash(f"crash in {name} after its last side effect")
            note(_reported(result))
            return result

        return handler

    def _connect_queries(self, total_before: int) -> tuple[dict[str, list[str]], ...]:
        """The Connect requests Leap got since ``request_total`` was ``total_before`` (one invocation
        runs at a time: a poller run's own)."""
        path = self.leap.connect_wire.path
        return tuple(r.query for r in self.leap.requests_since(total_before) if r.path == path)

    def _sent(self) -> tuple[str, ...]:
        """The queues the invocation running now sent to (nothing when it made no AWS call)."""
        current = self._current
        return tuple(current.sent) if current.record is self.cloud.current_invocation else ()

    def _run(self, name: str, inner: Callable[[Any, Any], Any], event: Any, context: Any) -> Any:
        for armed in self._lambda:
            if not armed.left or not self._aimed(armed.fault.target, name) or not _is_batch(event):
                continue
            armed.left -= 1
            records = f"{len(event['Records'])} records"
            self.timeline.add(self.cloud.now(), armed.fault.kind, armed.fault.target, records)
            if armed.fault.kind is FaultKind.DUPLICATE_DELIVERY:
                inner(copy.deepcopy(event), context)  # delivered once more: at least once, not exactly once
            elif event["Records"][0].get("eventSource") == "aws:sqs":
                self._another_consumer(name, inner, event["Records"][0], context)
        if name == POLLER and isinstance(event, dict) and not _is_batch(event):
            return self._pass_run(inner, event, context)
        return inner(event, context)

    def _pass_run(self, inner: Callable[[Any, Any], Any], event: dict[str, Any], context: Any) -> Any:
        """A poller pass run (scheduled, a continuation, a retry): cut by the time limit when an armed
        POLLER_TIME_LIMIT aims at it, the remaining time fixed for this run only."""
        continuation = int(event.get("continuation") or 0)
        armed = self._time_limit_for_this_run()
        self._continuing = continuation > 0
        try:
            if armed is None:
                return inner(event, context)
            pages = int(armed.fault.amount)
            detail = f"after {pages} page(s), continuation {continuation}"
            limit = _PageChecks(
                pages,
                self.cloud.functions[POLLER].timeout_seconds * 1000,
                lambda: self.timeline.add(self.cloud.now(), armed.fault.kind, POLLER, detail),
            )
            self.cloud.set_remaining_time(POLLER, limit)
            try:
                return inner(event, context)
            finally:
                self.cloud.set_remaining_time(POLLER, None)
        finally:
            self._continuing = False

    def _time_limit_for_this_run(self) -> _Armed | None:
        for armed in self._time_limits:
            if armed.left:
                armed.seen += 1
                if armed.seen >= armed.fault.nth:
                    armed.left -= 1
                    return armed
        return None

    def _another_consumer(
        self, name: str, inner: Callable[[Any, Any], Any], record: dict[str, Any], context: Any
    ) -> None:
        """The record's visibility runs out mid-run: another poller receives it and processes it first."""
        sqs = self.cloud.client("sqs")
        url = sqs.get_queue_url(QueueName=record["eventSourceARN"].rsplit(":", 1)[-1])["QueueUrl"]
        self._reentrant = True
        try:
            sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
            )
            answer = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        finally:
            self._reentrant = False
        region = self.cloud.region
        for message in answer.get("Messages", []):
            if message["MessageId"] != record["messageId"]:
                sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
                continue
            again = shapes.sqs_record(message, record["eventSourceARN"], region)
            result = inner({"Records": [again]}, context)
            if not _reported(result):
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


class _PageChecks:
    """A remaining time with room for ``pages`` of the poller's page checks, then none: the run reads
    that many pages and stops near its time limit (noted once, when it first sees it)."""

    def __init__(self, pages: int, full_ms: int, on_limit: Callable[[], None]) -> None:
        self._left, self._full_ms, self._on_limit = pages, full_ms, on_limit
        self._seen = False

    def __call__(self) -> int:
        self._left -= 1
        if self._left >= 0:
            return self._full_ms
        if not self._seen:
            self._seen = True
            self._on_limit()
        return 0


@contextmanager
def webhook_timeout(cloud: LocalCloud, seconds: float) -> Iterator[None]:
    """A short webhook timeout, so a hung endpoint costs the soak little wall time."""
    cloud.set_env("OutreachFunction", OUTREACH_WEBHOOK_TIMEOUT_SECONDS=str(seconds))
    yield


def _matches(kind: FaultKind, service: str, operation: str) -> bool:
    match kind:
        case FaultKind.DYNAMO_THROTTLED | FaultKind.DYNAMO_ERROR:
            return service == "dynamodb"
        case FaultKind.BATCH_WRITE_UNPROCESSED:
            return operation == "BatchWriteItem"
        case FaultKind.BATCH_GET_UNPROCESSED:
            return operation == "BatchGetItem"
        case FaultKind.SNS_BATCH_PARTLY_FAILED:
            return operation == "PublishBatch"
        case FaultKind.SNS_ERROR:
            return service == "sns" and operation in _PUBLISHES
        case FaultKind.SQS_ERROR:
            return service == "sqs"
        case _:
            return True  # timeouts and crashes count every call


def _halves(items: list[Any]) -> tuple[list[Any], list[Any]]:
    middle = len(items) // 2
    return items[:middle], items[middle:]


def _response(status: int) -> AWSResponse:
    return AWSResponse("https://soak.invalid/", status, {}, None)


def _error(status: int, code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    return _response(status), {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "soak"},
    }


def _ok(parsed: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
    return _response(200), {**parsed, "ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": "soak"}}


def _leap_detail(fault: leap_faults.Fault) -> str:
    if fault.kind is leap_faults.FaultKind.RATE_LIMITED:
        return f"Retry-After {fault.retry_after_seconds}"
    if fault.kind is leap_faults.FaultKind.SLOW:
        return f"{fault.delay_seconds:g} s"
    return str(fault.status)


def _expires_tokens(armed: _Armed) -> bool:
    return armed.leap is not None and armed.leap.kind is leap_faults.FaultKind.EXPIRED_PAGE_TOKEN


def _is_batch(event: Any) -> bool:
    return isinstance(event, dict) and bool(event.get("Records"))


def _items(event: Any) -> tuple[str, ...]:
    if _is_batch(event):
        first = event["Records"][0]
        if "messageId" in first:
            return tuple(record["messageId"] for record in event["Records"])
        if "dynamodb" in first:
            return tuple(record["dynamodb"]["SequenceNumber"] for record in event["Records"])
    event_id = _webhook_event_id(event)
    return (event_id,) if event_id else (json.dumps(event, sort_keys=True, default=str),)


def _webhook_event_id(event: Any) -> str | None:
    """The webhook_event_id of a function URL request carrying one of Leap's deliveries (Leap retries
    a call by that id: the item a failed call is accounted by)."""
    if not (isinstance(event, dict) and event.get("version") == "2.0" and "requestContext" in event):
        return None
    raw = event.get("body") or ""
    try:
        body = json.loads(base64.b64decode(raw) if event.get("isBase64Encoded") else raw)
    except ValueError:
        return None
    event_id = body.get(wire.WEBHOOK_EVENT_ID) if isinstance(body, dict) else None
    return event_id if isinstance(event_id, str) else None


def _reported(result: Any) -> tuple[str, ...]:
    if isinstance(result, dict) and result.get("batchItemFailures"):
        return tuple(str(item.get("itemIdentifier")) for item in result["batchItemFailures"])
    return ()
