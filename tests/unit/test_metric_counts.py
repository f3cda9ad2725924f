"""``leap_tracker.adapters.metrics``: a count is published only when it is not zero, unless dense.

The EMF a real Powertools ``Metrics`` prints from it is checked by the handler tests
(tests/integration/test_*_app.py, test_poller_handler.py); here a recorder stands in for it.
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit

from leap_tracker.adapters.metrics import add_count, add_counts


class Recorder:
    """The one ``Metrics`` method the functions call, recorded."""

    def __init__(self) -> None:
        self.added: list[tuple[str, Any, float]] = []

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.added.append((name, unit, value))


@pytest.mark.parametrize(
    ("value", "dense", "added"),
    [
        pytest.param(0, False, [], id="zero-left-out"),
        pytest.param(3, False, [("RecordsFailed", MetricUnit.Count, 3)], id="non-zero"),
        pytest.param(0, True, [("RecordsFailed", MetricUnit.Count, 0)], id="zero-of-a-dense-count"),
        pytest.param(1, True, [("RecordsFailed", MetricUnit.Count, 1)], id="non-zero-dense"),
    ],
)
def test_a_count_is_published_unless_it_is_a_zero_no_alarm_needs(
    value: int, dense: bool, added: list[tuple[str, Any, float]]
) -> None:
    recorder = Recorder()
    add_count(recorder, "RecordsFailed", value, dense=dense)  # type: ignore[arg-type]
    assert recorder.added == added


def test_counts_keep_the_zeros_of_the_dense_names_only() -> None:
    recorder = Recorder()
    counts = {"PollPassCompleted": 0, "PollFailed": 0, "EntriesSeen": 12, "LeapRetries": 0}

    add_counts(recorder, counts, dense={"PollPassCompleted"})  # type: ignore[arg-type]

    assert recorder.added == [
        ("PollPassCompleted", MetricUnit.Count, 0),
        ("EntriesSeen", MetricUnit.Count, 12),
    ]
