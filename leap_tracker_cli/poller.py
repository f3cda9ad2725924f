"""``leap-tracker poller``: where the passes stand: the checkpoint, an unfinished pass, the lease.

    leap-tracker poller --stack-name leap-connect-tracker

Reads two items of the connections table (strongly consistent GetItem, the poller's own formats in
``leap_tracker.adapters.poller_store``): the checkpoint (watermark, the last full reconciliation, the
last completed pass, and an unfinished pass: its kind, query, pages done, restarts, whether Leap's
listing has been in order and how far: what a refused token goes on from, docs/poller.md) and the
lease (who holds it, until when, for what). The page token itself is not printed (opaque, and
useful to nobody but Leap); whether there is one is.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from leap_tracker import table
from leap_tracker.adapters import poller_store
from leap_tracker.poller.ports import Checkpoint
from leap_tracker.timeutil import format_instant
from leap_tracker_cli.discovery import Discovery, add_flag
from leap_tracker_cli.result import Result
from leap_tracker_cli.stored import TABLE

NAME = "poller"
HELP = "show where the poller's passes stand: the checkpoint, an unfinished pass, the lease"
RESOURCES = (TABLE,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for resource in RESOURCES:
        add_flag(parser, resource)


def run(args: argparse.Namespace, discovery: Discovery) -> Result:
    client = discovery.client("dynamodb")
    table_name = discovery.require(TABLE).value
    checkpoint_item = _item(client, table_name, table.CHECKPOINT_SK)
    lease_item = _item(client, table_name, table.LEASE_SK)
    document = {
        "checkpoint": _checkpoint(checkpoint_item),
        "lease": _lease(lease_item),
    }
    return Result(_text(document), document)


def _item(client: Any, table_name: str, sort_key: str) -> Mapping[str, Any] | None:
    key = {table.PK: {"S": table.POLLER_PK}, table.SK: {"S": sort_key}}
    return client.get_item(TableName=table_name, Key=key, ConsistentRead=True).get("Item")


def _checkpoint(item: Mapping[str, Any] | None) -> dict[str, Any]:
    checkpoint = poller_store.checkpoint_from_item(item) if item else Checkpoint()
    document: dict[str, Any] = {
        "watermark": _instant(checkpoint.watermark),
        "last_full_started_at": _instant(checkpoint.last_full_started_at),
        "last_full_completed_at": _instant(checkpoint.last_full_completed_at),
        "last_pass_completed_at": _instant(checkpoint.last_pass_completed_at),
        "updated_at": (item or {}).get(poller_store.CP_UPDATED_AT, {}).get("S"),
        "updated_by": (item or {}).get(poller_store.CP_UPDATED_BY, {}).get("S"),
        "unfinished_pass": None,
    }
    pending = checkpoint.pending
    if pending is not None:
        document["unfinished_pass"] = {
            "kind": pending.kind.value,
            "query": {name: v for name in poller_store.QUERY_FIELDS if (v := getattr(pending.query, name))},
            "started_at": _instant(pending.started_at),
            "pages_done": pending.pages_done,
            "has_page_token": pending.page_token is not None,
            "restarts": pending.restarts,
            "listing_in_order": pending.in_order,
            "listed_through": pending.listed_through,
        }
    return document


def _lease(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not item:
        return None
    return {
        "owner": item.get(poller_store.LEASE_OWNER, {}).get("S"),
        "until": item.get(poller_store.LEASE_EXPIRES_AT, {}).get("S"),
        "acquired_at": item.get(poller_store.LEASE_ACQUIRED_AT, {}).get("S"),
        "used_for": item.get(poller_store.LEASE_USE, {}).get("S", "pass"),
    }


def _instant(value: datetime | None) -> str | None:
    return format_instant(value) if value else None


def _text(document: Mapping[str, Any]) -> str:
    cp = document["checkpoint"]
    lines = [
        f"watermark {cp['watermark'] or 'none (no pass completed yet)'}",
        f"last full reconciliation started {cp['last_full_started_at'] or '-'}, "
        f"completed {cp['last_full_completed_at'] or '-'}",
        f"last pass completed {cp['last_pass_completed_at'] or '-'}",
    ]
    pending = cp["unfinished_pass"]
    if pending is None:
        lines.append("no unfinished pass")
    else:
        query = ", ".join(f"{k} {v}" for k, v in pending["query"].items())
        order = (
            f"Leap listed in order through {pending['listed_through']} (a refused token goes on from there)"
            if pending["listing_in_order"] and pending["listed_through"]
            else "listing order not relied on (a refused token restarts from page one)"
        )
        lines += [
            f"unfinished {pending['kind']} pass ({query}), started {pending['started_at']}: "
            f"{pending['pages_done']} page(s) done, {pending['restarts']} restart(s), "
            f"{'a page token held' if pending['has_page_token'] else 'no page token (page one next)'}",
            f"  {order}",
        ]
    lease = document["lease"]
    if lease is None:
        lines.append("lease free")
    else:
        lines.append(f"lease held by {lease['owner']} ({lease['used_for']}) until {lease['until']}")
    return "\n".join(lines)
