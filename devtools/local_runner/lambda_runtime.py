"""Running a template function's real handler in-process, the way the Lambda runtime would.

Each invocation gets the function's resolved environment (restored afterwards), a Lambda context
whose remaining time counts down from the function's Timeout, and a cold start on the first call
(and after any configuration change): the handler module's ``dependencies`` cache is cleared, as is
Powertools' parameter-provider cache, so clients and secrets are built again as in a new sandbox.
Two functions with the same handler module (a subscriber stack deployed twice) would share that
cache in one interpreter, so running the module for another function is a cold start too.
"""

from __future__ import annotations

import importlib
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Handler = Callable[[Any, Any], Any]
RemainingTime = int | Callable[[], int]

# Handler module -> ARN of the function whose "sandbox" it last ran in (its dependencies are that one's).
_WARM_FOR: dict[str, str] = {}


class FunctionTimeout(Exception):
    """The handler ran longer than the function's Timeout (Lambda would have stopped it)."""


class InjectedFailure(RuntimeError):
    """Raised in place of a handler by :meth:`LocalFunction.fail_next`."""


@dataclass
class LambdaContext:
    """The attributes and method handlers use from the Lambda runtime's context object."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: str  # the Python runtime passes it as text, from the environment
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    _remaining: Callable[[], int] = field(repr=False)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._remaining()))


@dataclass
class InvocationRecord:
    function: str  # logical id
    source: str  # "stream", "sqs", "schedule", "async-retry", "direct"
    at: datetime  # simulated time
    batch_size: int
    result: Any = None
    error: BaseException | None = None
    duration_seconds: float = 0.0  # wall time of the run, in this process (moto answering in-process)
    usage: Counter[str] = field(
        default_factory=Counter
    )  # billable quantities (devtools/local_runner/usage.py)

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass
class LocalFunction:
    """One AWS::Lambda::Function of the template, runnable in-process."""

    logical_id: str
    name: str
    arn: str
    module_name: str
    handler_name: str
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, str]
    overrides: dict[str, str] = field(default_factory=dict)
    handler_override: Handler | None = None
    remaining_time_override: RemainingTime | None = None
    pending_failures: list[BaseException] = field(default_factory=list)
    needs_cold_start: bool = True

    def module(self) -> Any:
        return importlib.import_module(self.module_name)

    def original_handler(self) -> Handler:
        return getattr(self.module(), self.handler_name)

    def handler(self) -> Handler:
        return self.handler_override or self.original_handler()

    def fail_next(self, times: int = 1, error: BaseException | None = None) -> None:
        """The next ``times`` invocations raise ``error`` instead of running the handler."""
        for _ in range(times):
            self.pending_failures.append(error or InjectedFailure(f"injected failure in {self.logical_id}"))

    def full_environment(self) -> dict[str, str]:
        return {**self.environment, **self.overrides}

    def run(self, event: Any, clock_now: Callable[[], datetime]) -> Any:
        """Invoke once; exceptions propagate (the caller maps them like Lambda would)."""
        if self.needs_cold_start or _WARM_FOR.get(self.module_name) != self.arn:
            self._cold_start()
        _WARM_FOR[self.module_name] = self.arn
        started = time.monotonic()
        simulated_start = clock_now()
        timeout_ms = self.timeout_seconds * 1000

        def remaining() -> int:
            override = self.remaining_time_override
            if override is not None:
                return override() if callable(override) else override
            simulated = (clock_now() - simulated_start).total_seconds()
            return int(timeout_ms - (time.monotonic() - started + simulated) * 1000)

        context = LambdaContext(
            function_name=self.name,
            function_version="$LATEST",
            invoked_function_arn=self.arn,
            memory_limit_in_mb=str(self.memory_mb),
            aws_request_id=str(uuid.uuid4()),
            log_group_name=f"/aws/lambda/{self.name}",
            log_stream_name=f"local/[$LATEST]{uuid.uuid4().hex}",
            _remaining=remaining,
        )
        with _environment(self.full_environment()):
            if self.pending_failures:
                raise self.pending_failures.pop(0)
            result = self.handler()(event, context)
        # Wall time plus simulated time that passed inside the run (a slow call advancing the clock):
        # past the Timeout, Lambda would have stopped it; what it did before stays done.
        elapsed = time.monotonic() - started + (clock_now() - simulated_start).total_seconds()
        if self.remaining_time_override is None and elapsed > self.timeout_seconds:
            raise FunctionTimeout(f"{self.logical_id} ran past its {self.timeout_seconds} s timeout")
        return result

    def _cold_start(self) -> None:
        with _environment(self.full_environment()):
            module = self.module()
            dependencies = getattr(module, "dependencies", None)
            if dependencies is not None and hasattr(dependencies, "cache_clear"):
                dependencies.cache_clear()
            _clear_powertools_providers()
        self.needs_cold_start = False


def _clear_powertools_providers() -> None:
    """Powertools keeps parameter providers (and their boto3 clients) per process."""
    try:
        from aws_lambda_powertools.utilities.parameters import base
    except ImportError:  # pragma: no cover - Powertools is a project dependency
        return
    base.DEFAULT_PROVIDERS.clear()


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous
