"""Poller Lambda: hourly by EventBridge Scheduler ({"mode": "scheduled"}), or on demand.

Input: {"mode": "scheduled" | "incremental" | "full"}, {"mode": "ref_id", "ref_id": "..."}, or an
EventBridge "Scheduled Event" (a classic rule: a scheduled run).
Output: the run summary (see docs/poller.md). The work is ``leap_tracker.poller.run_poll``. A run that
could not do its work raises (``PollFailed``), so Lambda counts it in Errors, retries the asynchronous
invocation (which resumes from the checkpoint) and finally hands it to the failure destination.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from leap_tracker.adapters.aws import aws_client
from leap_tracker.adapters.leap_http import LeapHttpClient
from leap_tracker.adapters.poller_store import DynamoPollerStore
from leap_tracker.config import Settings, load_settings, require
from leap_tracker.poller.request import InvalidPollRequest, parse_request
from leap_tracker.poller.run import PollEnvironment, PollFailed, run_poll
from leap_tracker.timeutil import utc_now

logger = Logger()
metrics = Metrics()


@dataclass(frozen=True, slots=True)
class Dependencies:
    settings: Settings
    leap: LeapHttpClient
    store: DynamoPollerStore


@cache
def dependencies() -> Dependencies:
    """Built on the first invocation (cold start) and reused while the environment is warm."""
    settings = load_settings()
    table_name = require(settings.connections_table, "CONNECTIONS_TABLE")
    return Dependencies(
        settings=settings,
        leap=LeapHttpClient(settings.leap),
        store=DynamoPollerStore(aws_client("dynamodb"), table_name),
    )


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = parse_request(event)
    except InvalidPollRequest:
        metrics.add_metric(name="InvalidInput", unit=MetricUnit.Count, value=1)
        raise
    deps = dependencies()
    env = PollEnvironment(
        source=deps.leap,
        store=deps.store,
        metrics=metrics,
        now=utc_now,
        remaining_ms=context.get_remaining_time_in_millis,
        retry_count=lambda: deps.leap.stats.retries,
    )
    run_id = getattr(context, "aws_request_id", "") or uuid.uuid4().hex
    try:
        summary = run_poll(request, run_id, env, deps.settings.poller)
    except PollFailed as failure:
        # One ERROR line with the summary; the run's metrics (PollFailed among them) are already
        # added, and log_metrics flushes them on the way out of an exception too.
        logger.error(str(failure), extra=failure.summary.for_log())
        raise
    return summary.as_dict()
