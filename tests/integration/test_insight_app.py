"""The daily insight function against moto: history items written with leap_tracker.table's codec (one
older than the window), an S3 bucket; the handler writes insight/<date>.json and insight/latest.json,
JSON, both equal to the analysis of the window's changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devtools.template_tables import create_connections_table
from functions.insight import app
from leap_tracker import table
from leap_tracker.adapters.dynamo import serialize
from leap_tracker.config import load_settings
from leap_tracker.insight import analysis
from leap_tracker.insight.analysis import Change
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import canonical_json
from leap_tracker.timeutil import format_instant
from tests.builders import SDGE, entry, utility
from tests.fakes.lambda_runtime import FakeLambdaContext

REGION = "us-east-1"
TABLE, BUCKET = "connections", "insight-bucket"
NOW = datetime(2025, 4, 2, 6, 15, tzinfo=UTC)
WINDOW = timedelta(days=35)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        create_connections_table(boto3.client("dynamodb", region_name=REGION), TABLE)
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield


def write_history(versions: list[tuple[datetime, dict[str, Any]]]) -> list[Change]:
    """History items as the poller writes them (sequence 1, 2...), and the same as Changes."""
    client = boto3.client("dynamodb", region_name=REGION)
    previous: str | None = None
    changes = []
    for sequence, (at, state) in enumerate(versions, start=1):
        canonical = canonical_json(state)
        item = {
            **table.history_key(state[wire.ENTRY_ID], sequence),
            table.ITEM_TYPE: table.HISTORY_ITEM_TYPE,
            table.HISTORY_CHANGE: table.encode_stored_change(previous, canonical),
            table.HISTORY_SEQUENCE: sequence,
            table.HISTORY_WRITTEN_AT: format_instant(at),
        }
        client.put_item(TableName=TABLE, Item=serialize(item))
        changes.append(
            Change(at, json.loads(previous) if previous else None, json.loads(canonical), sequence)
        )
        previous = canonical
    return changes


def test_the_handler_writes_the_dated_and_the_latest_file_with_the_windows_figures(aws: None) -> None:
    t0 = NOW - timedelta(days=6)
    changes: dict[str, list[Change]] = {}
    for index in range(4):
        ref = f"Ref{index}"
        waiting = entry(wire.CONNECTION_NOT_STARTED, ref_id=ref, last=t0, started=t0)
        versions = [(t0 + timedelta(hours=index), waiting)]
        if index % 2 == 0:
            done = entry(
                wire.CONNECTION_COMPLETED, [utility(SDGE, wire.UTILITY_CONNECTED)], ref_id=ref, last=t0
            )
            versions.append((t0 + timedelta(days=1, hours=index), done))
        written = write_history(versions)
        changes[waiting[wire.ENTRY_ID]] = written
    old = entry(wire.CONNECTION_NOT_STARTED, ref_id="Old", last=NOW - timedelta(days=40))
    write_history([(NOW - timedelta(days=40), old)])  # before the window: not read
    settings = load_settings({"CONNECTIONS_TABLE": TABLE, "INSIGHT_BUCKET": BUCKET})
    deps = app.build_dependencies(settings, client=lambda service: boto3.client(service, region_name=REGION))

    result = app.lambda_handler({"scheduled_time": format_instant(NOW)}, FakeLambdaContext(), deps)

    s3 = boto3.client("s3", region_name=REGION)
    expected = analysis.document(analysis.analyse(changes, {}, [], NOW, NOW - WINDOW), 0)
    assert result["keys"] == ["insight/2025-04-02.json", "insight/latest.json"]
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]) == [
        "insight/2025-04-02.json",
        "insight/latest.json",
    ]
    for key in result["keys"]:
        found = s3.get_object(Bucket=BUCKET, Key=key)
        assert found["ContentType"] == "application/json"
        assert json.loads(found["Body"].read()) == json.loads(json.dumps(expected)), key
    assert expected["entries"] == 4  # the old entry is outside the window
    assert expected["changes"] == 6
    assert expected["funnel_daily"][-1]["by_status"] == {
        wire.CONNECTION_COMPLETED: 2,
        wire.CONNECTION_NOT_STARTED: 2,
    }
