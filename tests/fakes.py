"""Test doubles shared across the test suite."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from devtools.leap_simulator import LeapSimulator
from leap_tracker.config import LeapApiSettings


@dataclass
class FakeLambdaContext:
    """The parts of the Lambda context the handlers and Powertools read."""

    remaining_ms: int = 300_000
    function_name: str = "test-function"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "6f3c2b2e-0000-4000-8000-000000000001"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def fast_leap_settings(simulator: LeapSimulator, **overrides: Any) -> LeapApiSettings:
    """Client settings pointing at a Leap simulator, with test-sized timeouts and backoff; override any."""
    fast = LeapApiSettings(
        base_url=simulator.base_url,
        api_key=simulator.api_key,
        connect_timeout_seconds=1.0,
        read_timeout_seconds=2.0,
        max_retries=3,
        max_retry_seconds=5.0,
        backoff_factor=0.001,
    )
    return replace(fast, **overrides)
