"""``leap-tracker poll REF_ID``: ask Leap now about one Reference ID, and show what changed.

    leap-tracker poll Test1012 --stack-name leap-connect-tracker

It invokes the poller function synchronously with ``{"mode": "ref_id", "ref_id": ...}`` (Lambda
Invoke, RequestResponse: the answer is the run's summary), after and before reading the entries'
snapshot sequences (``ref-index``, and the entries the summary names), and shows for each entry the
sequence before and after and the events of the changes it stored meanwhile (from the history, with
the emitter's rules: the events the emitter publishes for them). A run that fails is exit status 1
with the function's error.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from leap_tracker import table
from leap_tracker_cli.discovery import Discovery, Resource, add_flag, arn_region
from leap_tracker_cli.function_settings import EMITTER_FUNCTION, FunctionSettings, function_settings
from leap_tracker_cli.result import Result
from leap_tracker_cli.stored import TABLE, StoredTable

NAME = "poll"
HELP = "poll Leap now for one Reference ID (invokes the poller) and show what changed"
POLLER_FUNCTION = Resource(
    what="the poller function",
    flag="--poller-function",
    output="PollerFunctionName",
    logical_id="PollerFunction",
    variable="POLLER_FUNCTION_NAME",  # set by hand: no function reads it
)
RESOURCES = (POLLER_FUNCTION, TABLE, EMITTER_FUNCTION)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref_id", metavar="REF_ID", help="the Reference ID, as in the Connect URL")
    for resource in RESOURCES:
        add_flag(parser, resource)


def run(args: argparse.Namespace, discovery: Discovery) -> Result:
    function = discovery.require(POLLER_FUNCTION).value
    store = StoredTable(discovery.client("dynamodb"), discovery.require(TABLE).value)
    emitter = function_settings(discovery, EMITTER_FUNCTION)
    before = _sequences(store, store.entry_ids_of_ref(args.ref_id))
    answer = discovery.client("lambda", region_name=arn_region(function)).invoke(
        FunctionName=function,
        InvocationType="RequestResponse",
        Payload=json.dumps({"mode": "ref_id", "ref_id": args.ref_id}).encode(),
    )
    payload = _payload(answer)
    if answer.get("FunctionError"):
        error = payload if isinstance(payload, Mapping) else {"errorMessage": str(payload)}
        document = {"function": function, "error": error}
        text = (
            f"the poll failed in {function}: {error.get('errorType', answer['FunctionError'])}: "
            f"{error.get('errorMessage', '')}"
        )
        return Result(text, document, status=1)
    summary = payload if isinstance(payload, Mapping) else {}
    outcomes = {
        str(e.get("id")): e.get("outcome") for e in summary.get("entries") or [] if isinstance(e, Mapping)
    }
    entry_ids = sorted({*before, *outcomes, *store.entry_ids_of_ref(args.ref_id)})
    after = _sequences(store, entry_ids)
    entries = [_entry(store, e, before.get(e), after.get(e), outcomes.get(e), emitter) for e in entry_ids]
    document = {
        "function": function,
        "summary": summary,
        "entries": entries,
        "rules": emitter.rules_document(),
    }
    return Result(_text(args.ref_id, summary, entries), document)


def _payload(answer: Mapping[str, Any]) -> Any:
    stream = answer.get("Payload")
    raw = stream.read() if stream is not None else b""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _sequences(store: StoredTable, entry_ids: list[str]) -> dict[str, int | None]:
    """Each entry's snapshot sequence (None: no snapshot)."""
    found: dict[str, int | None] = {}
    for entry_id in entry_ids:
        item = store.get(table.connection_key(entry_id))
        found[entry_id] = int(item[table.CONN_SEQUENCE]) if item and table.CONN_SEQUENCE in item else None
    return found


def _entry(
    store: StoredTable,
    entry_id: str,
    before: int | None,
    after: int | None,
    outcome: Any,
    emitter: FunctionSettings,
) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    unreadable: list[dict[str, Any]] = []
    if after is not None and after != before:
        for change in store.history(entry_id, after_sequence=before or 0):
            if change.sequence > after:
                break
            try:
                derived = change.events(emitter.rules)
            except (KeyError, ValueError, TypeError) as exc:
                unreadable.append(
                    {"sequence": change.sequence, "reason": change.problem or f"{type(exc).__name__}: {exc}"}
                )
                continue
            events += [{"id": e["id"], "type": e["type"], "sequence": change.sequence} for e in derived]
    return {
        "entry_id": entry_id,
        "outcome": outcome,
        "sequence_before": before,
        "sequence_after": after,
        "events": events,
        "unreadable_history": unreadable,
    }


def _text(ref_id: str, summary: Mapping[str, Any], entries: list[dict[str, Any]]) -> str:
    lines = [
        f"poll of {ref_id}: {summary.get('status', '?')}, {summary.get('entries_seen', 0)} entr"
        f"{'y' if summary.get('entries_seen') == 1 else 'ies'} seen, {summary.get('changed', 0)} changed "
        f"(run {summary.get('run_id', '?')})"
    ]
    if summary.get("error"):
        lines.append(f"  error: {summary['error']}")
    for e in entries:
        lines.append(
            f"  entry {e['entry_id']}: sequence {e['sequence_before'] or '-'} -> {e['sequence_after'] or '-'}"
            + (f" ({e['outcome']})" if e["outcome"] else "")
        )
        lines += [f"    {ev['type']}  sequence {ev['sequence']}  id {ev['id']}" for ev in e["events"]]
        lines += [
            f"    unreadable stored change {u['sequence']}: {u['reason']}" for u in e["unreadable_history"]
        ]
    if not entries:
        lines.append("  Leap has no entry for this Reference ID")
    return "\n".join(lines)
