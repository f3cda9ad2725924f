"""Lambda's asynchronous invocations (a schedule's, ``invoke(asynchronous=True)``), as the runner plays them.

A failed event is retried ``MaximumRetryAttempts`` times (the function's AWS::Lambda::EventInvokeConfig;
twice by default), about 1 and then 2 minutes later on the simulated clock: a retry runs in the first
round at or after its due time. Then the event goes to the EventInvokeConfig's on-failure destination
(Lambda's on-failure record), else to the function's DeadLetterConfig queue or topic (the event itself,
with Lambda's RequestID/ErrorCode/ErrorMessage attributes), else it is dropped and recorded.

:class:`Destinations` delivers to an on-failure destination or dead-letter target by ARN (an SQS
queue or an SNS topic); a stream mapping's ``OnFailure`` destination goes through it too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from devtools.local_runner import shapes
from devtools.local_runner.lambda_runtime import LocalFunction
from devtools.local_runner.mappings import Outcome
from devtools.local_runner.resources import Resources
from devtools.local_runner.stack import ClientFactory, function_name
from devtools.local_runner.template import TemplateError

# Lambda retries a failed asynchronous invocation twice by default, after about 1 and then 2 minutes.
ASYNC_DEFAULT_RETRIES = 2
ASYNC_RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=2))

# (function, event, source) -> outcome; the cloud records and counts the invocation
AsyncInvoker = Callable[[LocalFunction, Any, str], Outcome]


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


class Destinations:
    """Delivers a record to an SQS queue or SNS topic destination, by ARN."""

    def __init__(self, resources: Resources, client: ClientFactory) -> None:
        self._resources = resources
        self._client = client

    def send(self, arn: str, body: Any, attributes: Mapping[str, str] | None = None) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        message_attributes = {
            name: {"DataType": "String", "StringValue": value} for name, value in (attributes or {}).items()
        }
        if ":sqs:" in arn:
            url = self._resources.find_by_attribute("Arn", arn).ref
            self._client("sqs").send_message(
                QueueUrl=url, MessageBody=text, MessageAttributes=message_attributes
            )
        elif ":sns:" in arn:
            self._client("sns").publish(TopicArn=arn, Message=text, MessageAttributes=message_attributes)
        else:
            raise TemplateError(f"destination {arn} is neither a queue nor a topic")


class AsyncInvocations:
    """The retry queue of asynchronous events, and where an event goes once its retries are used up.

    ``dropped`` collects ``{"function": logical id, "payload": event}`` for every event Lambda would
    drop (no destination and no dead-letter target).
    """

    def __init__(
        self,
        invoke: AsyncInvoker,
        destinations: Destinations,
        now: Callable[[], datetime],
        dropped: list[dict[str, Any]],
    ) -> None:
        self._invoke = invoke
        self._destinations = destinations
        self._now = now
        self.dropped = dropped
        self._configs: dict[str, _AsyncConfig] = {}
        self._queue: list[_AsyncEvent] = []

    def configure(self, resources: Resources, functions: Mapping[str, LocalFunction]) -> None:
        """Read each function's EventInvokeConfig (retries, on-failure destination) and DeadLetterConfig."""
        by_name = {function.name: function for function in functions.values()}
        for resource in resources.of_type("AWS::Lambda::EventInvokeConfig"):
            function = by_name[function_name(resource.properties["FunctionName"])]
            config = self._configs.setdefault(function.logical_id, _AsyncConfig())
            config.max_retries = int(resource.properties.get("MaximumRetryAttempts", ASYNC_DEFAULT_RETRIES))
            destination = resource.properties.get("DestinationConfig", {}).get("OnFailure", {})
            config.on_failure_arn = destination.get("Destination")
        for function in functions.values():
            target = resources[function.logical_id].properties.get("DeadLetterConfig", {}).get("TargetArn")
            if target:
                self._configs.setdefault(function.logical_id, _AsyncConfig()).dead_letter_arn = target

    def invoke(self, function: LocalFunction, payload: Any, source: str) -> None:
        """The first attempt, now; a failure is queued for its retry."""
        outcome = self._invoke(function, payload, source)
        if outcome.error is not None:
            self._failed(_AsyncEvent(function, payload, 1, self._now(), outcome.error))

    def enqueue(self, function: LocalFunction, payload: Any) -> None:
        """An invocation a function's own code asked for (``function_invokes``): its first attempt
        runs in the next round, at the simulated now, as Lambda takes it up within seconds."""
        self._queue.append(_AsyncEvent(function, payload, 0, self._now()))

    def pending(self) -> list[_AsyncEvent]:
        """The invocations and retries waiting for their due time."""
        return list(self._queue)

    def run_due(self) -> bool:
        """Run the retries due at the simulated now; True when there were any."""
        now = self._now()
        due = [event for event in self._queue if event.due <= now]
        for event in due:
            self._queue.remove(event)
            outcome = self._invoke(
                event.function, event.payload, "async-retry" if event.attempts else "async"
            )
            if outcome.error is not None:
                event.attempts += 1
                event.last_error = outcome.error
                self._failed(event)
        return bool(due)

    def _failed(self, event: _AsyncEvent) -> None:
        config = self._configs.get(event.function.logical_id, _AsyncConfig())
        if event.attempts <= config.max_retries:
            delay = ASYNC_RETRY_DELAYS[min(event.attempts, len(ASYNC_RETRY_DELAYS)) - 1]
            event.due = self._now() + delay
            self._queue.append(event)
            return
        error = event.last_error or RuntimeError("unknown error")
        if config.on_failure_arn:
            record = shapes.async_on_failure_record(
                payload=event.payload,
                function_arn=event.function.arn,
                invoke_count=event.attempts,
                error=error,
                now=self._now(),
            )
            self._destinations.send(config.on_failure_arn, record)
        elif config.dead_letter_arn:
            attributes = {
                "RequestID": str(uuid.uuid4()),
                "ErrorCode": "200",
                "ErrorMessage": str(error)[:1000] or type(error).__name__,
            }
            self._destinations.send(config.dead_letter_arn, event.payload, attributes)
        else:
            self.dropped.append({"function": event.function.logical_id, "payload": event.payload})
