"""The handlers' counts as custom metrics: a count of zero is not published, unless it must be.

CloudWatch bills a custom metric for each hour it is published in (docs/cost.md). A counter that is
zero in most hours (failures, retries, interruptions, refusals) costs a whole month when its zeros are
published and next to nothing when only its non-zero values are. Nothing an operator reads changes: a
dashboard Sum over an hour without data is an empty hour, and an alarm that treats missing data as
``notBreaching`` acts the same on no data and on zero. An alarm that treats missing data as breaching
(the freshness alarm on ``PollPassCompleted``) needs the zeros: those counts pass ``dense=True``.
Powertools' ``Metrics`` has no such option, hence these two functions; every handler's counts go
through them (tests/unit/test_template_alarms.py checks the handlers, the alarms, the dashboard and
docs/operations.md#custom-metrics against each other).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit


def add_count(metrics: Metrics, name: str, value: int, *, dense: bool = False) -> None:
    """Add ``value`` as the Count ``name``; a zero only when ``dense`` (an alarm needs its zeros)."""
    if value or dense:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def add_counts(metrics: Metrics, counts: Mapping[str, int], *, dense: Collection[str] = ()) -> None:
    """:func:`add_count` for each name and value; the names in ``dense`` keep their zeros."""
    for name, value in counts.items():
        add_count(metrics, name, value, dense=name in dense)
