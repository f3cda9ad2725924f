"""The Lambda side of a handler test: the context it gets and what it printed (JSON logs, EMF)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aws_lambda_powertools import Logger


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


@contextmanager
def logs_in_capture(logger: Logger) -> Iterator[None]:
    """Point a handler's log stream (bound to stdout at import) at the test's captured stdout."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.stream
    handler.setStream(sys.stdout)
    try:
        yield
    finally:
        handler.setStream(previous)


def printed(captured: pytest.CaptureFixture[str]) -> tuple[str, list[dict[str, Any]]]:
    """Everything printed since the last read (stdout and stderr), and its JSON lines parsed."""
    out = captured.readouterr()
    text = out.out + out.err
    return text, [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def emf_metrics(lines: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Metric name -> every value published, from the EMF lines Powertools printed."""
    values: dict[str, list[float]] = {}
    for line in lines:
        if "_aws" in line:
            for definition in line["_aws"]["CloudWatchMetrics"]:
                assert definition["Namespace"] == "LeapConnectTracker"
                for metric in definition["Metrics"]:
                    value = line[metric["Name"]]
                    values.setdefault(metric["Name"], []).extend(
                        value if isinstance(value, list) else [value]
                    )
    return values


def emf_units(lines: list[dict[str, Any]]) -> dict[str, str]:
    """Metric name -> its unit, from the EMF lines Powertools printed."""
    return {
        metric["Name"]: metric["Unit"]
        for line in lines
        if "_aws" in line
        for definition in line["_aws"]["CloudWatchMetrics"]
        for metric in definition["Metrics"]
    }
