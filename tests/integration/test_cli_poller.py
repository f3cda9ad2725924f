"""``leap-tracker poller``: the checkpoint, an unfinished pass and the lease, as the poller stored them
(moto, the table from template.yaml, the poller's own store writing the items)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from leap_tracker.adapters.poller_store import DynamoPollerStore
from leap_tracker.leap.api import ConnectQuery
from leap_tracker.poller.ports import Checkpoint, PassKind, PassState
from leap_tracker_cli import main as cli
from tests.builders import T0


def leap_tracker(
    dynamodb: Any, table_name: str, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, Any]:
    status = cli.main(
        ["poller", "--table", table_name, *argv],
        environ={},
        client=lambda service, region_name=None: dynamodb,
    )
    out = capsys.readouterr().out
    return status, json.loads(out) if "--json" in argv else out


def test_a_fresh_table_has_no_pass_and_a_free_lease(
    dynamodb: Any, connections_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, document = leap_tracker(dynamodb, connections_table, capsys, "--json")
    assert status == 0
    assert document["checkpoint"]["watermark"] is None
    assert document["checkpoint"]["unfinished_pass"] is None
    assert document["lease"] is None


def test_an_unfinished_pass_in_order_and_the_lease_its_run_holds(
    dynamodb: Any, connections_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = DynamoPollerStore(dynamodb, connections_table)
    pending = PassState(
        PassKind.FULL,
        ConnectQuery(start_date="2015-01-01T00:00:00Z"),
        T0,
        page_token="secret-looking+/token=",
        pages_done=140,
        listed_through="2025-01-09T10:00:09Z",
    )
    store.save_checkpoint(Checkpoint(watermark=T0 - timedelta(hours=1), pending=pending), "run-7", T0)
    store.acquire_lease("run-8", T0, T0 + timedelta(minutes=16))

    status, document = leap_tracker(dynamodb, connections_table, capsys, "--json")
    assert status == 0
    assert document["checkpoint"]["watermark"] == "2025-01-10T11:00:00Z"
    assert document["checkpoint"]["updated_by"] == "run-7"
    assert document["checkpoint"]["unfinished_pass"] == {
        "kind": "full",
        "query": {"start_date": "2015-01-01T00:00:00Z"},
        "started_at": "2025-01-10T12:00:00Z",
        "pages_done": 140,
        "has_page_token": True,
        "restarts": 0,
        "listing_in_order": True,
        "listed_through": "2025-01-09T10:00:09Z",
    }
    assert document["lease"] == {
        "owner": "run-8",
        "until": "2025-01-10T12:16:00Z",
        "acquired_at": "2025-01-10T12:00:00Z",
        "used_for": "pass",
    }
    status, text = leap_tracker(dynamodb, connections_table, capsys)
    assert "unfinished full pass (start_date 2015-01-01T00:00:00Z)" in text
    assert "140 page(s) done" in text
    assert "listed in order through 2025-01-09T10:00:09Z" in text
    assert "lease held by run-8 (pass) until 2025-01-10T12:16:00Z" in text
    assert "secret-looking" not in text
