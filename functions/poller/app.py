"""Poller Lambda: hourly by EventBridge Scheduler ({"mode": "scheduled"}), or on demand.

Input: {"mode": "scheduled" | "incremental" | "full"}, {"mode": "ref_id", "ref_id": "..."}, or an
EventBridge "Scheduled Event" (a classic rule: a scheduled run).
Output: the run summary (see docs/poller.md). The work is ``leap_tracker.poller.run_poll``; this
handler turns its summary into metrics (``run_metrics``). A run that could not do its work raises
(``PollFailed``), so Lambda counts it in Errors, retries the asynchronous invocation (which resumes
from the checkpoint) and finally hands it to the failure destination.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from leap_tracker.adapters.aws import aws_client
from leap_tracker.adapters.leap_http import LeapHttpClient
from leap_tracker.adapters.poller_store import DynamoPollerStore
from leap_tracker.adapters.secrets import log_pseudonyms
from leap_tracker.config import Settings, load_settings, plain_http_variables, require
from leap_tracker.poller.request import InvalidPollRequest, PollMode, parse_request
from leap_tracker.poller.run import PollEnvironment, PollFailed, RunStatus, RunSummary, run_poll
from leap_tracker.privacy import Pseudonyms
from leap_tracker.timeutil import utc_now

logger = Logger()
metrics = Metrics()


@dataclass(frozen=True, slots=True)
class Dependencies:
    settings: Settings
    leap: LeapHttpClient
    store: DynamoPollerStore
    pseudonyms: Pseudonyms


def build_dependencies(settings: Settings, client: Callable[[str], Any] = aws_client) -> Dependencies:
    """What the handler works with, from its settings; ``client`` makes the AWS clients by service.
    The log hash key is read here, once."""
    table_name = require(settings.connections_table, "CONNECTIONS_TABLE")
    for variable in plain_http_variables(settings):
        logger.warning(f"{variable} is a loopback http:// URL: accepted for local runs only")
    return Dependencies(
        settings=settings,
        leap=LeapHttpClient(settings.leap),
        store=DynamoPollerStore(client("dynamodb"), table_name),
        pseudonyms=log_pseudonyms(settings),
    )


@cache
def dependencies() -> Dependencies:
    """Built from the environment on the first invocation (cold start), reused while it is warm."""
    return build_dependencies(load_settings())


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, deps: Dependencies | None = None
) -> dict[str, Any]:
    """The Lambda entry point; without ``deps`` it uses the cold start's (tests pass their own)."""
    try:
        request = parse_request(event)
    except InvalidPollRequest:
        metrics.add_metric(name="InvalidInput", unit=MetricUnit.Count, value=1)
        raise
    deps = deps or dependencies()
    env = PollEnvironment(
        source=deps.leap,
        store=deps.store,
        now=utc_now,
        remaining_ms=context.get_remaining_time_in_millis,
        pseudonyms=deps.pseudonyms,
        retry_count=lambda: deps.leap.stats.retries,
    )
    run_id = getattr(context, "aws_request_id", "") or uuid.uuid4().hex
    refusals_before = deps.leap.stats.auth_refusals
    try:
        summary = run_poll(request, run_id, env, deps.settings.poller)
    except PollFailed as failure:
        # One ERROR line with the summary; log_metrics flushes the metrics on the way out of the
        # exception too (PollFailed among them).
        _add_metrics(run_metrics(failure.summary))
        _add_auth_refusals(deps.leap.stats.auth_refusals - refusals_before)
        logger.error(str(failure), extra=failure.summary.for_log(deps.pseudonyms))
        raise
    _add_metrics(run_metrics(summary))
    _add_auth_refusals(deps.leap.stats.auth_refusals - refusals_before)
    return summary.as_dict()


def run_metrics(summary: RunSummary) -> dict[str, int | list[float]]:
    """The run's metrics by name: counts, and LeapApiLatency with one value (ms) per page read."""
    return {
        "PagesFetched": summary.pages,
        "EntriesSeen": summary.entries_seen,
        "EntriesChanged": summary.changed,
        "EntriesUnchanged": summary.unchanged,
        "EntriesStale": summary.stale,
        "EntriesInvalid": summary.invalid,
        "UnknownEnumValues": summary.unknown_values,
        "LeapRetries": summary.retries,
        "PageTokenRestarts": summary.token_restarts,
        "PollInterrupted": int(summary.status is RunStatus.INTERRUPTED),
        "PollSkipped": int(summary.status is RunStatus.SKIPPED),
        "PollFailed": int(summary.status in (RunStatus.FAILED, RunStatus.LEASE_LOST)),
        # The freshness alarm's metric: a pass read its last page (a ref_id poll is not a pass).
        "PollPassCompleted": int(
            summary.status is RunStatus.COMPLETED and summary.mode is not PollMode.REF_ID
        ),
        "LeapApiLatency": list(summary.api_latency_ms),
    }


def _add_auth_refusals(count: int) -> None:
    """Leap refused the API key (401/403): the LeapAuthFailures alarm's metric (the sweep's too)."""
    metrics.add_metric(name="LeapAuthFailures", unit=MetricUnit.Count, value=count)


def _add_metrics(values: dict[str, int | list[float]]) -> None:
    for name, value in values.items():
        if isinstance(value, list):  # one data point per page: a latency
            for latency in value:
                metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=latency)
        else:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
