"""Poller Lambda: hourly by EventBridge Scheduler ({"mode": "scheduled"}), or on demand.

Input: {"mode": "scheduled" | "incremental" | "full"}, {"mode": "ref_id", "ref_id": "..."}, or an
EventBridge "Scheduled Event" (a classic rule: a scheduled run).
Output: the run summary (see docs/poller.md). The work is ``leap_tracker.poller.run_poll``; this
handler turns its summary into metrics (``run_metrics``). A run that could not do its work raises
(``PollFailed``), so Lambda counts it in Errors, retries the asynchronous invocation (which resumes
from the checkpoint) and finally hands it to the failure destination.

After a run that did its work (completed or interrupted, not skipped) the handler counts the funnel
on funnel-index (``adapters.funnel``), publishes ``EntriesByStatus`` per ``ConnectionStatus`` and adds
the counts to the summary as ``entries_by_status``. A count that fails raises too, after the run's own
metrics are in (``log_metrics`` flushes them on the way out).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from leap_tracker import table
from leap_tracker.adapters.aws import aws_client
from leap_tracker.adapters.funnel import count_funnel
from leap_tracker.adapters.leap_http import LeapHttpClient
from leap_tracker.adapters.metrics import add_count
from leap_tracker.adapters.poller_store import DynamoPollerStore
from leap_tracker.adapters.secrets import log_pseudonyms
from leap_tracker.config import Settings, load_settings, plain_http_variables, require
from leap_tracker.poller.request import InvalidPollRequest, PollMode, parse_request
from leap_tracker.poller.run import PollEnvironment, PollFailed, RunStatus, RunSummary, run_poll
from leap_tracker.privacy import Pseudonyms
from leap_tracker.timeutil import utc_now

logger = Logger()
metrics = Metrics()
FUNNEL_METRIC = "EntriesByStatus"
FUNNEL_DIMENSION = "ConnectionStatus"
# Published by every run, 0 included: the freshness alarm (template.yaml PollFreshnessAlarm) treats
# missing data as breaching. The other counts are published only when not zero (adapters.metrics).
DENSE_METRICS = frozenset({"PollPassCompleted"})


@dataclass(frozen=True, slots=True)
class Dependencies:
    settings: Settings
    leap: LeapHttpClient
    store: DynamoPollerStore
    pseudonyms: Pseudonyms
    count_funnel: Callable[[], Mapping[str, int]]  # stored connections per status (funnel-index)


def build_dependencies(settings: Settings, client: Callable[[str], Any] = aws_client) -> Dependencies:
    """What the handler works with, from its settings; ``client`` makes the AWS clients by service.
    The log hash key is read here, once."""
    table_name = require(settings.connections_table, "CONNECTIONS_TABLE")
    for variable in plain_http_variables(settings):
        logger.warning(f"{variable} is a loopback http:// URL: accepted for local runs only")
    dynamodb = client("dynamodb")
    return Dependencies(
        settings=settings,
        leap=LeapHttpClient(settings.leap),
        store=DynamoPollerStore(
            dynamodb, table_name, history_retention_days=settings.poller.history_retention_days
        ),
        pseudonyms=log_pseudonyms(settings),
        count_funnel=partial(count_funnel, dynamodb, table_name),
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
        add_count(metrics, "InvalidInput", 1)
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
    result = summary.as_dict()
    if counts_funnel(summary):
        result["entries_by_status"] = _publish_funnel(deps, run_id)
    return result


def counts_funnel(summary: RunSummary) -> bool:
    """Whether the funnel is counted after this run: after every run that did its work (a pass, a part
    of one, a ref_id poll; its writes are in), not after a skipped one, which touched nothing while
    another run is midway (that run publishes the count when it ends)."""
    return summary.status is not RunStatus.SKIPPED


def _publish_funnel(deps: Dependencies, run_id: str) -> dict[str, int]:
    """Count the funnel and publish one EntriesByStatus per status (its own dimension, so one EMF
    line each: the handler's other metrics carry only ``service``). A known status is published at 0
    too (a funnel stage that emptied is a level, not a gap); OTHER, a status this code does not know,
    only when some entry has one. A failed count raises."""
    try:
        counts = dict(deps.count_funnel())
    except Exception as exc:
        logger.error(
            "funnel count failed (the run's own work is stored and its metrics published)",
            extra={"run_id": run_id, "error": f"{type(exc).__name__}: {exc}"},
        )
        raise
    for status, count in counts.items():
        if not count and status == table.FUNNEL_OTHER_STATUS:
            continue
        with single_metric(
            name=FUNNEL_METRIC,
            unit=MetricUnit.Count,
            value=count,
            namespace=metrics.namespace,
            default_dimensions={FUNNEL_DIMENSION: status},
        ):
            pass
    logger.info("funnel counted", extra={"run_id": run_id, "entries_by_status": counts})
    return counts


def run_metrics(summary: RunSummary) -> dict[str, int | list[float]]:
    """The run's metrics by name: counts (zeros included; ``_add_metrics`` publishes the non-zero ones
    and DENSE_METRICS), and LeapApiLatency with one value (ms) per page read. The rest of the summary
    (pages, unchanged and stale entries among it) is in the ``poll finished`` log line only."""
    return {
        "EntriesSeen": summary.entries_seen,
        "EntriesChanged": summary.changed,
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
    add_count(metrics, "LeapAuthFailures", count)


def _add_metrics(values: dict[str, int | list[float]]) -> None:
    for name, value in values.items():
        if isinstance(value, list):  # one data point per page: a latency
            for latency in value:
                metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=latency)
        else:
            add_count(metrics, name, value, dense=name in DENSE_METRICS)
