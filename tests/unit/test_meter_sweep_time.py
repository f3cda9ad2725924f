"""The sweep's time (functions/meter_sweep/app.py ``sweep_time``): the schedule's planned time, else
the clock; an unusable value from the event is logged cut short, whatever its size."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine

from functions.meter_sweep import app
from tests.fakes.lambda_runtime import logs_in_capture, printed

NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"scheduled_time": "2025-03-01T09:00:00Z"}, datetime(2025, 3, 1, 9, 0, tzinfo=UTC)),
        ({"mode": "scheduled"}, NOW),
        ({"scheduled_time": 1740819600}, NOW),  # not text: the clock, nothing logged
        ([], NOW),
    ],
)
def test_the_planned_time_else_the_clock(event: Any, expected: datetime) -> None:
    with time_machine.travel(NOW, tick=False):
        assert app.sweep_time(event) == expected


def test_an_unusable_planned_time_is_logged_cut_short(capsys: pytest.CaptureFixture[str]) -> None:
    sent = "soon" + "!" * 100_000

    with time_machine.travel(NOW, tick=False), logs_in_capture(app.logger):
        assert app.sweep_time({"scheduled_time": sent}) == NOW

    _, lines = printed(capsys)
    (warning,) = [line for line in lines if line.get("level") == "WARNING"]
    assert warning["message"] == "unusable scheduled_time, using the clock"
    assert warning["scheduled_time"].startswith("soon!!!")
    assert len(warning["scheduled_time"]) == 40
