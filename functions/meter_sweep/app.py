"""meter_sweep: scheduled; checks the due meter watches against Leap's Meters API.

Thin: ``leap_tracker.meters.sweep.run_sweep`` does the work; this handler wires the table, the Leap
client and the events topic, reads the schedule's time, and returns and logs the summary. A sweep
that could not check every due watch (``SweepIncomplete``) is logged and counted, then re-raised, so
Lambda counts an error, retries the asynchronous invocation and finally hands it to the failure
destination; the watches concerned are still due.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from leap_tracker.adapters.aws import aws_client
from leap_tracker.adapters.leap_http import LeapHttpClient
from leap_tracker.adapters.metrics import add_count, add_counts
from leap_tracker.adapters.secrets import log_pseudonyms
from leap_tracker.adapters.sns_publisher import SnsPublisher, events_publisher
from leap_tracker.adapters.watch_store import DynamoWatchStore
from leap_tracker.config import MeterWatchSettings, Settings, load_settings, plain_http_variables, require
from leap_tracker.meters.sweep import MeterSweepSummary, SweepIncomplete, run_sweep
from leap_tracker.privacy import Pseudonyms, excerpt
from leap_tracker.timeutil import scheduled_time_or_now

logger = Logger()
metrics = Metrics()

# EventBridge Scheduler fills this in the schedule's Input (template.yaml) with the planned time.


@dataclass(frozen=True, slots=True)
class Dependencies:
    store: DynamoWatchStore
    leap: LeapHttpClient
    publisher: SnsPublisher
    settings: MeterWatchSettings
    pseudonyms: Pseudonyms


def build_dependencies(settings: Settings, client: Callable[[str], Any] = aws_client) -> Dependencies:
    """What the handler works with, from its settings; ``client`` makes the AWS clients by service.
    The log hash key is read here, once."""
    table_name = require(settings.connections_table, "CONNECTIONS_TABLE")
    for variable in plain_http_variables(settings):
        logger.warning(f"{variable} is a loopback http:// URL: accepted for local runs only")
    pseudonyms = log_pseudonyms(settings)
    return Dependencies(
        store=DynamoWatchStore(client("dynamodb"), table_name),
        leap=LeapHttpClient(settings.leap),
        publisher=events_publisher(settings, client("sns"), pseudonyms),
        settings=settings.meters,
        pseudonyms=pseudonyms,
    )


@cache
def dependencies() -> Dependencies:
    """Built from the environment on the first invocation (cold start), reused while it is warm."""
    return build_dependencies(load_settings())


def sweep_time(event: dict[str, Any]) -> datetime:
    """The schedule's planned time when the event carries it, else the clock.

    The planned time keeps hourly sweeps on an exact grid (a watch due in 60 minutes is due at the
    next sweep, whatever the invocation's delay) and is the same on the scheduler's retries.
    """
    return scheduled_time_or_now(event, _unusable_scheduled_time)


def _unusable_scheduled_time(planned: str) -> None:
    logger.warning("unusable scheduled_time, using the clock", extra={"scheduled_time": excerpt(planned)})


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, deps: Dependencies | None = None
) -> dict[str, Any]:
    """The Lambda entry point; without ``deps`` it uses the cold start's (tests pass their own)."""
    deps = deps or dependencies()
    calls_before = deps.leap.stats.meters_requests
    refusals_before = deps.leap.stats.auth_refusals
    try:
        summary = run_sweep(
            store=deps.store,
            meters=deps.leap,
            publisher=deps.publisher,
            settings=deps.settings,
            now=sweep_time(event),
            remaining_ms=context.get_remaining_time_in_millis,
            pseudonyms=deps.pseudonyms,
        )
    except SweepIncomplete as incomplete:
        result = _report(incomplete.summary, deps.leap.stats.meters_requests - calls_before)
        _add_auth_refusals(deps.leap.stats.auth_refusals - refusals_before)
        logger.error(str(incomplete), extra=result)
        raise  # log_metrics flushes the metrics on the way out
    result = _report(summary, deps.leap.stats.meters_requests - calls_before)
    _add_auth_refusals(deps.leap.stats.auth_refusals - refusals_before)
    logger.info("meter sweep", extra=result)
    return result


def _add_auth_refusals(count: int) -> None:
    """Leap refused the API key (401/403): the LeapAuthFailures alarm's metric (the poller's too)."""
    add_count(metrics, "LeapAuthFailures", count)


def _report(summary: MeterSweepSummary, api_calls: int) -> dict[str, Any]:
    """The summary as returned and logged, with its metrics added."""
    add_counts(metrics, sweep_metrics(summary, api_calls))
    return {**summary.as_dict(), "meters_api_calls": api_calls}


def sweep_metrics(summary: MeterSweepSummary, api_calls: int) -> dict[str, int]:
    """The sweep's metrics by name, zeros included (``add_counts`` publishes the non-zero ones). The
    rest of the summary, the watches checked among it, is in the ``meter sweep`` log line only."""
    return {
        "MetersAppeared": summary.appeared,
        "MetersOverdue": summary.overdue,
        "WatchesExpired": summary.expired,
        "WatchesUnsearchable": summary.unsearchable,
        "MetersApiCalls": api_calls,
        "MetersApiFailures": summary.leap_failures,
        "EventsNotPublished": summary.publish_failures,
    }
