"""insight: scheduled daily; writes the insight figures to the stack's InsightBucket (docs/insight.md).

Thin: ``leap_tracker.adapters.insight_source`` reads the history written in the last
``INSIGHT_WINDOW_DAYS`` days, the outreach ledgers and the meter watches (two Scans);
``leap_tracker.insight.analysis`` computes the figures; the same document is written twice, to
``insight/<date>.json`` (kept ``InsightRetentionDays``) and then ``insight/latest.json``. Counts only:
no entry id, no Reference ID. Any failure raises: Lambda counts an error (the InsightErrors alarm),
retries the asynchronous invocation and finally hands it to the failure destination. No custom metric:
the Errors alarm is the only thing that needs to know about a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leap_tracker.adapters import insight_source
from leap_tracker.adapters.aws import aws_client
from leap_tracker.adapters.insight_bucket import LATEST_KEY, S3InsightWriter, dated_key
from leap_tracker.config import Settings, load_settings, require
from leap_tracker.insight import analysis
from leap_tracker.privacy import excerpt
from leap_tracker.timeutil import format_instant, scheduled_time_or_now

logger = Logger()

# EventBridge Scheduler fills this in the schedule's Input (template.yaml) with the planned time.


class Writer(Protocol):
    def put_json(self, key: str, document: dict[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class Dependencies:
    read: Callable[[datetime], insight_source.Stored]  # the history written since that moment
    writer: Writer
    window: timedelta


def build_dependencies(settings: Settings, client: Callable[[str], Any] = aws_client) -> Dependencies:
    """What the handler works with, from its settings; ``client`` makes the AWS clients by service."""
    table_name = require(settings.connections_table, "CONNECTIONS_TABLE")
    bucket = require(settings.insight.bucket, "INSIGHT_BUCKET")
    dynamodb = client("dynamodb")
    return Dependencies(
        read=lambda since: insight_source.read(dynamodb, table_name, since),
        writer=S3InsightWriter(client("s3"), bucket),
        window=timedelta(days=settings.insight.window_days),
    )


@cache
def dependencies() -> Dependencies:
    """Built from the environment on the first invocation (cold start), reused while it is warm."""
    return build_dependencies(load_settings())


def run_time(event: Any) -> datetime:
    """The schedule's planned time when the event carries it, else the clock: a retry of the same
    run writes the same dated file with the same figures' moment."""
    return scheduled_time_or_now(event, _unusable_scheduled_time)


def _unusable_scheduled_time(planned: str) -> None:
    logger.warning("unusable scheduled_time, using the clock", extra={"scheduled_time": excerpt(planned)})


@logger.inject_lambda_context
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, deps: Dependencies | None = None
) -> dict[str, Any]:
    """The Lambda entry point; without ``deps`` it uses the cold start's (tests pass their own)."""
    deps = deps or dependencies()
    now = run_time(event)
    since = now - deps.window
    stored = deps.read(since)
    report = analysis.analyse(stored.changes, stored.messages, stored.meters, now, since)
    document = analysis.document(report, stored.unreadable)
    dated = dated_key(now)
    deps.writer.put_json(dated, document)  # the dated file first: latest never names a day not written
    deps.writer.put_json(LATEST_KEY, document)
    result = {
        "now": format_instant(now),
        "since": format_instant(since),
        "entries": report.entries,
        "changes": report.changes,
        "messages": report.messages,
        "unreadable_changes": stored.unreadable,
        "keys": [dated, LATEST_KEY],
    }
    logger.info("insight written", extra=result)
    return result
