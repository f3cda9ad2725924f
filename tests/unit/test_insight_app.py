"""The daily insight handler (functions/insight/app.py) with a fake source and writer: it reads the window
ending at the schedule's planned time, writes the analysis of what it read to the dated key and then to
latest, and raises when a write fails (so Lambda counts the error)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from functions.insight import app
from leap_tracker.adapters.insight_source import Stored
from leap_tracker.config import ConfigError, load_settings
from leap_tracker.insight import analysis
from leap_tracker.insight.analysis import Change, Message, MeterAppearance
from leap_tracker.leap import wire
from leap_tracker.timeutil import format_instant
from tests.builders import SDGE, entry, utility
from tests.fakes.lambda_runtime import FakeLambdaContext

NOW = datetime(2025, 4, 2, 6, 15, tzinfo=UTC)
T0 = NOW - timedelta(days=10)


class FakeWriter:
    def __init__(self, fail_on: str | None = None) -> None:
        self.written: list[tuple[str, str]] = []
        self._fail_on = fail_on

    def put_json(self, key: str, document: dict[str, Any]) -> None:
        if key == self._fail_on:
            raise RuntimeError("AccessDenied")
        self.written.append((key, json.dumps(document, sort_keys=True)))


def stored() -> Stored:
    started = T0 - timedelta(hours=1)
    waiting = entry(wire.CONNECTION_NOT_STARTED, ref_id="R1", last=T0, started=started)
    broken = entry(
        wire.CONNECTION_ERROR,
        [utility(SDGE, wire.UTILITY_ERROR, error_code=wire.ERROR_INVALID_CREDENTIALS)],
        ref_id="R1",
        last=T0 + timedelta(hours=1),
        started=started,
    )
    done = entry(
        wire.CONNECTION_COMPLETED,
        [utility(SDGE, wire.UTILITY_CONNECTED)],
        ref_id="R2",
        last=T0,
        started=started,
    )
    sent = T0 + timedelta(hours=3)
    return Stored(
        changes={
            "e1": [Change(T0, None, waiting, 1), Change(T0 + timedelta(hours=2), waiting, broken, 2)],
            "e2": [Change(T0 + timedelta(hours=1), None, done, 1)],
        },
        messages={"e1": [Message(sent, "utility_error.INVALID_CREDENTIALS", 1, "friendly")]},
        meters=[MeterAppearance(T0, T0 + timedelta(days=2))],
        unreadable=1,
    )


def deps(writer: FakeWriter, asked: list[datetime]) -> app.Dependencies:
    def read(since: datetime) -> Stored:
        asked.append(since)
        return stored()

    return app.Dependencies(read=read, writer=writer, window=timedelta(days=35))


def test_writes_the_analysis_of_the_window_to_the_dated_key_then_latest() -> None:
    writer, asked = FakeWriter(), []
    event = {"mode": "scheduled", "scheduled_time": format_instant(NOW)}

    result = app.lambda_handler(event, FakeLambdaContext(), deps(writer, asked))

    since = NOW - timedelta(days=35)
    data = stored()
    expected = analysis.document(analysis.analyse(data.changes, data.messages, data.meters, NOW, since), 1)
    assert asked == [since]
    assert [key for key, _ in writer.written] == ["insight/2025-04-02.json", "insight/latest.json"]
    assert [json.loads(body) for _, body in writer.written] == [json.loads(json.dumps(expected))] * 2
    assert expected["entries"] == 2
    assert expected["unreadable_changes"] == 1
    assert result["keys"] == ["insight/2025-04-02.json", "insight/latest.json"]
    assert (result["entries"], result["changes"], result["messages"]) == (2, 3, 1)


def test_a_failed_write_raises_and_latest_is_not_written_past_a_missing_dated_file() -> None:
    writer = FakeWriter(fail_on="insight/2025-04-02.json")

    with pytest.raises(RuntimeError, match="AccessDenied"):
        app.lambda_handler({"scheduled_time": format_instant(NOW)}, FakeLambdaContext(), deps(writer, []))

    assert writer.written == []


def test_without_a_usable_planned_time_the_clock_is_used() -> None:
    writer = FakeWriter()

    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        app.lambda_handler({"scheduled_time": "not a time"}, FakeLambdaContext(), deps(writer, []))

    assert writer.written[0][0] == "insight/2025-04-03.json"


def test_the_window_is_configurable_and_the_bucket_required() -> None:
    settings = load_settings({"CONNECTIONS_TABLE": "t", "INSIGHT_BUCKET": "b", "INSIGHT_WINDOW_DAYS": "7"})
    built = app.build_dependencies(settings, client=lambda service: object())

    assert built.window == timedelta(days=7)
    assert load_settings({}).insight.window_days == 35
    with pytest.raises(ConfigError, match="INSIGHT_BUCKET"):
        app.build_dependencies(load_settings({"CONNECTIONS_TABLE": "t"}), client=lambda service: object())
    with pytest.raises(ConfigError, match="INSIGHT_WINDOW_DAYS"):
        load_settings({"INSIGHT_WINDOW_DAYS": "0"})
