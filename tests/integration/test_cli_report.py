"""``leap-tracker report`` against moto, through main([...]): history items written with
leap_tracker.table's codec, the ledger through the outreach store, a meter watch through the watch store;
report.json must equal the analysis of the same data, report.html one inline <svg> per chart and no URL."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devtools.template_tables import create_connections_table
from leap_tracker.adapters.dynamo import serialize
from leap_tracker.adapters.outreach_store import DynamoOutreachStore
from leap_tracker.adapters.watch_store import DynamoWatchStore
from leap_tracker.insight import analysis
from leap_tracker.insight.analysis import Change, Message, MeterAppearance
from leap_tracker.leap import wire
from leap_tracker.meters.model import ClosedReason, MeterWatch, WatchStatus
from leap_tracker.outreach import ledger
from leap_tracker.timeutil import format_instant
from leap_tracker_cli import main as cli
from leap_tracker_cli.insight import render
from tests.builders import history_writes, journey

REGION = "us-east-1"
TABLE = "connections"
T0 = datetime(2025, 3, 5, 8, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=9)
REASON = "utility_error.INVALID_CREDENTIALS"


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_connections_table(client, TABLE)  # as template.yaml declares it
        yield client


def states(ref: str, done: bool) -> list[dict[str, Any]]:
    return journey(ref, done, start=T0)


def write_history(client: Any, versions: list[dict[str, Any]]) -> list[Change]:
    """History items as the poller writes them (one per change, sequence 1, 2...); the same as Changes."""
    changes = []
    for at, previous, canonical, item in history_writes(versions, T0):
        client.put_item(TableName=TABLE, Item=serialize(item))
        sequence = len(changes) + 1
        changes.append(
            Change(at, json.loads(previous) if previous else None, json.loads(canonical), sequence)
        )
    return changes


def send(store: DynamoOutreachStore, entry_id: str, ref: str, at: datetime, variant: str) -> Message:
    """One message through the outreach store's claim and mark-sent, as the outreach function sends it."""
    reservation = ledger.Reservation(
        entry_id, ref, ledger.dedupe_key(REASON, "h", 1), REASON, "h", 2, 1, 1, ("webhook",), "u", variant
    )
    lease = at + timedelta(minutes=5)
    assert store.claim(reservation, 0, at, lease).claim is ledger.Claim.NEW
    store.mark_sent(reservation, at, None, lease)
    return Message(at, REASON, 1, variant)


def test_report_writes_the_analysis_of_the_stored_data_and_a_self_contained_page(
    dynamodb: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outreach = DynamoOutreachStore(dynamodb, TABLE)
    changes: dict[str, list[Change]] = {}
    messages: dict[str, list[Message]] = {}
    for index in range(6):
        versions = states(f"Ref{index}", done=index % 2 == 0)
        entry_id = versions[0][wire.ENTRY_ID]
        changes[entry_id] = write_history(dynamodb, versions)
        if index < 3:
            variant = "short" if index == 1 else "friendly"
            messages[entry_id] = [send(outreach, entry_id, f"Ref{index}", T0 + timedelta(hours=6), variant)]
    completed_id = states("Ref0", True)[0][wire.ENTRY_ID]
    watch = MeterWatch(
        completed_id,
        "Ref0",
        "CAISO",
        T0 + timedelta(hours=30),
        3,
        T0 + timedelta(hours=31),
        None,
        checks=4,
        status=WatchStatus.CLOSED,
        closed_reason=ClosedReason.APPEARED,
        closed_at=T0 + timedelta(hours=80),
        meter_ids=("m1",),
    )
    assert DynamoWatchStore(dynamodb, TABLE).create(watch)

    out = tmp_path / "insight"
    argv = ["report", "--table", TABLE, "--out", str(out), "--now", format_instant(NOW), "--json"]
    status = cli.main(argv, environ={}, client=lambda service, region_name=None: dynamodb)
    answer = json.loads(capsys.readouterr().out)

    assert status == 0
    assert (answer["entries"], answer["changes"], answer["messages"]) == (6, 15, 3)
    expected = analysis.analyse(
        changes, messages, [MeterAppearance(T0 + timedelta(hours=30), T0 + timedelta(hours=80))], NOW
    )
    document = json.loads((out / "report.json").read_text())
    assert document == json.loads(json.dumps(dataclasses.asdict(expected))) | {"unreadable_changes": 0}
    assert document["time_to_complete"]["count"] == 3  # the even ones: start T0-1h to T0+30h = 31 h
    assert document["time_to_complete"]["median_hours"] == 31.0
    assert document["time_to_meter"]["median_hours"] == 50.0
    assert document["stalls"]["counts"][REASON][">7 d"] == 3  # last interaction T0+1h, 9 days before now
    # The variant each ledger entry recorded: Ref0 and Ref2 got "friendly", Ref1 "short".
    variants = {(v["reason"], v["variant"]): v for v in document["variants"]}
    assert set(variants) == {(REASON, "friendly"), (REASON, "short")}
    friendly, short = variants[(REASON, "friendly")], variants[(REASON, "short")]
    assert (friendly["messaged"], short["messaged"]) == (2, 1)
    assert [w["variant"]["observed"] for w in friendly["windows"]] == [2, 2, 2]  # all windows over
    assert [w["others"]["observed"] for w in friendly["windows"]] == [1, 1, 1]  # the short one
    assert friendly["windows"][1]["completed_verdict"] == analysis.TOO_FEW
    page = (out / "report.html").read_text()
    assert page.count("<svg") == len(render.CHARTS) == 5
    assert "<td>friendly</td>" in page
    assert "<td>short</td>" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "http" not in page


def test_report_since_reads_only_the_changes_written_from_then(
    dynamodb: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    versions = states("Ref1", done=True)
    write_history(dynamodb, versions)  # written at T0+2h, +4h, +6h
    since = format_instant(T0 + timedelta(hours=3))
    argv = [
        "report",
        "--table",
        TABLE,
        "--out",
        str(tmp_path),
        "--since",
        since,
        "--now",
        format_instant(NOW),
    ]
    assert cli.main([*argv, "--json"], environ={}, client=lambda service, region_name=None: dynamodb) == 0
    assert json.loads(capsys.readouterr().out)["changes"] == 2
    document = json.loads((tmp_path / "report.json").read_text())
    assert document["funnel_daily"][0]["period"] == "2025-03-05T00:00:00Z"
    # The change at T0+4h carries the NOT_STARTED state before it: known from before the window.
    assert document["funnel_daily"][0]["by_status"] == {"COMPLETED": 1}
