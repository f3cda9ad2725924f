"""``leap-tracker status REF_ID``: everything the stack knows of one Reference ID, in one answer.

    leap-tracker status Test1012 --stack-name leap-connect-tracker
    leap-tracker status Test1012 --events 20 --json

The entries come from the table's ``ref-index`` (a Query, never a Scan). For each entry (a Reference
ID may have several, one per transmission region):

- the snapshot: connection status, region, sequence, last interaction, every utility with its status
  and error code, the agreements (the stored entry decoded);
- what outreach does next: ``outreach.decision.decide`` (the outreach service's own pure function)
  on the stored snapshot and customer state, with the outreach function's settings (its deployed
  environment with ``--stack-name``, else this machine's: the answer names them), for a change event
  now and, when the customer is in the follow-up sweep, at that sweep;
- the outreach history: the ledger, message by message (reason, when, channels, webhook id);
- the meter watch: status, checks, next check;
- the last events (``--events N``, default 5), derived from the newest stored changes by the
  emitter's ``change_events`` with the emitter's rules: the ids subscribers received.

A Reference ID the index does not know is exit status 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from leap_tracker import table
from leap_tracker.leap import wire
from leap_tracker.outreach import ledger
from leap_tracker.outreach.decision import (
    Action,
    Decision,
    History,
    Snapshot,
    Trigger,
    decide,
    without_channel,
)
from leap_tracker.privacy import Pseudonyms
from leap_tracker.timeutil import format_instant, utc_now
from leap_tracker_cli.discovery import Discovery, add_flag
from leap_tracker_cli.function_settings import (
    EMITTER_FUNCTION,
    OUTREACH_FUNCTION,
    FunctionSettings,
    function_settings,
)
from leap_tracker_cli.hash import KEY_SECRET, stack_pseudonyms
from leap_tracker_cli.result import CommandError, Result
from leap_tracker_cli.stored import TABLE, StoredTable, plain

NAME = "status"
HELP = "show one Reference ID: snapshot, next outreach step, outreach history, meter watch, last events"
RESOURCES = (TABLE, EMITTER_FUNCTION, OUTREACH_FUNCTION, KEY_SECRET)
DEFAULT_EVENTS = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref_id", metavar="REF_ID", help="the Reference ID, as in the Connect URL")
    parser.add_argument(
        "--events",
        type=int,
        default=DEFAULT_EVENTS,
        metavar="N",
        help=f"last events shown (default {DEFAULT_EVENTS})",
    )
    for resource in RESOURCES:
        add_flag(parser, resource, "ARN" if resource is KEY_SECRET else "NAME")


def run(args: argparse.Namespace, discovery: Discovery) -> Result:
    if args.events < 0:
        raise CommandError("--events must not be negative")
    store = StoredTable(discovery.client("dynamodb"), discovery.require(TABLE).value)
    entry_ids = store.entry_ids_of_ref(args.ref_id)
    if not entry_ids:
        raise CommandError(
            f"no entry for Reference ID {args.ref_id!r} in table {store.name} (its ref-index): the poller "
            f"has not seen it yet, or it is mistyped; `leap-tracker poll {args.ref_id}` asks Leap now"
        )
    emitter = function_settings(discovery, EMITTER_FUNCTION)
    outreach = function_settings(discovery, OUTREACH_FUNCTION)
    pseudonyms = _optional_pseudonyms(discovery)
    now = utc_now()
    entries = [_entry_status(store, e, emitter, outreach, pseudonyms, now, args.events) for e in entry_ids]
    document = {
        "ref_id": args.ref_id,
        "now": format_instant(now),
        "entries": entries,
        "outreach_settings": outreach.policy_document(),
        "event_rules": emitter.rules_document(),
    }
    return Result(text=_text(document), document=document)


def _optional_pseudonyms(discovery: Discovery) -> Pseudonyms | None:
    """The pseudonym shown next to each entry id (to search the logs) when the key can be read."""
    from botocore.exceptions import BotoCoreError, ClientError  # boto3 on first use

    try:
        return stack_pseudonyms(discovery)[0]
    except (CommandError, BotoCoreError, ClientError):  # no key, or no right to read it: not shown
        return None


# --- one entry --------------------------------------------------------------------------------------


def _entry_status(
    store: StoredTable,
    entry_id: str,
    emitter: FunctionSettings,
    outreach: FunctionSettings,
    pseudonyms: Pseudonyms | None,
    now: datetime,
    events: int,
) -> dict[str, Any]:
    from leap_tracker.adapters.outreach_store import history_from_item, snapshot_from_item  # boto3 on use
    from leap_tracker.adapters.watch_store import watch_from_item

    snapshot_item = store.get(table.connection_key(entry_id))
    state_item = store.get(table.outreach_state_key(entry_id)) or {}
    watch_item = store.get(table.watch_key(entry_id))
    status: dict[str, Any] = {"entry_id": entry_id}
    if pseudonyms is not None:
        status["pseudonym"] = pseudonyms.entry(entry_id)
    snapshot: Snapshot | None = None
    if snapshot_item is None:
        status["snapshot"] = None
    else:
        try:
            snapshot = snapshot_from_item(snapshot_item)
            status["snapshot"] = _snapshot_document(snapshot, snapshot_item)
        except (KeyError, ValueError) as exc:
            status["snapshot"] = {"problem": f"the snapshot cannot be read: {type(exc).__name__}: {exc}"}
    history = history_from_item(state_item)
    status["next"] = _next_steps(snapshot, history, outreach, now) if snapshot else None
    status["outreach"] = _outreach_document(state_item, history) if state_item else None
    if watch_item is None:
        status["meter_watch"] = None
    else:
        try:
            status["meter_watch"] = _watch_document(watch_from_item(watch_item))
        except (KeyError, ValueError) as exc:
            status["meter_watch"] = {"problem": f"the watch cannot be read: {type(exc).__name__}: {exc}"}
    status["last_events"], status["unreadable_history"] = _last_events(store, entry_id, emitter, events)
    return status


def _snapshot_document(snapshot: Snapshot, item: Mapping[str, Any]) -> dict[str, Any]:
    entry = snapshot.entry
    utilities = [
        {
            "name": u.get(wire.UTILITY_NAME),
            "status": u.get(wire.UTILITY_STATUS),
            "error_code": u.get(wire.UTILITY_ERROR_CODE),
            "required": u.get(wire.UTILITY_IS_REQUIRED),
            "last_interaction": u.get(wire.UTILITY_LAST_INTERACTION),
        }
        for u in entry.get(wire.ENTRY_UTILITY_CONNECTIONS) or []
        if isinstance(u, Mapping)
    ]
    return {
        "connection_status": entry.get(wire.ENTRY_CONNECTION_STATUS),
        "transmission_region": entry.get(wire.ENTRY_TRANSMISSION_REGION),
        "sequence": snapshot.sequence,
        "last_interaction": entry.get(wire.ENTRY_LAST_INTERACTION),
        "started": entry.get(wire.ENTRY_START),
        "written_at": plain(item.get(table.CONN_WRITTEN_AT)),
        "content_hash": snapshot.content_hash,
        "utilities": utilities,
        "error_codes": sorted({str(u["error_code"]) for u in utilities if u["error_code"]}),
        "agreements": dict(entry.get(wire.ENTRY_AGREEMENTS) or {}),
        "entry": plain(dict(entry)),
    }


def _next_steps(
    snapshot: Snapshot, history: History, outreach: FunctionSettings, now: datetime
) -> dict[str, Any]:
    """The decision for a change event now, and at the follow-up sweep when one is scheduled."""
    policy, channels = outreach.policy, outreach.settings.outreach.channels
    on_event = _decision_document(
        snapshot,
        _with_channels(decide(snapshot, history, policy, now, Trigger.EVENT), channels, now),
        policy.max_attempts,
        channels,
    )
    steps = {"on_event_now": on_event, "at_follow_up": None}
    if history.follow_up_at is not None:
        at = max(now, history.follow_up_at)
        decision = _with_channels(decide(snapshot, history, policy, at, Trigger.FOLLOW_UP), channels, at)
        steps["at_follow_up"] = {"at": format_instant(at)} | _decision_document(
            snapshot, decision, policy.max_attempts, channels
        )
    return steps


def _with_channels(decision: Decision, channels: tuple[str, ...], now: datetime) -> Decision:
    """As the service does: a message due with no channel configured is suppressed ``no_channel``."""
    return without_channel(decision, now) if decision.action is Action.SEND and not channels else decision


def _decision_document(
    snapshot: Snapshot, decision: Decision, max_attempts: int, channels: tuple[str, ...]
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "action": decision.action.value,
        "reason": decision.need.reason,
        "because": decision.because.value if decision.because else None,
    }
    if decision.action is Action.SEND and decision.dedupe_key:
        document |= {
            "attempt": decision.attempt,
            "max_attempts": max_attempts,
            "reminder": (decision.state_sends or 1) > 1,
            "dedupe_key": decision.dedupe_key,
            "webhook_id": ledger.webhook_id(snapshot.entry_id, decision.dedupe_key),
            "channels": list(channels),
        }
    if decision.until is not None:
        document["until"] = format_instant(decision.until)
    if decision.next_attempt_at is not None:
        document["next_attempt_at"] = format_instant(decision.next_attempt_at)
    document["says"] = _says(document)
    return document


def _says(d: Mapping[str, Any]) -> str:
    if d["action"] == Action.SEND:
        kind = "a reminder" if d["reminder"] else "a message"
        return (
            f"send {kind} '{d['reason']}' (message {d['attempt']} of {d['max_attempts']}) via "
            f"{', '.join(d['channels'])}, webhook-id {d['webhook_id']}"
        )
    if d["action"] == Action.DEFER:
        return f"wait until {d['until']} (the last interaction + the actionable delay), then decide"
    then = f" until {d['next_attempt_at']}" if "next_attempt_at" in d else ""
    about = f" (the step is '{d['reason']}')" if d["reason"] else ""
    return f"nothing: {d['because']}{then}{about}"


def _outreach_document(state: Mapping[str, Any], history: History) -> dict[str, Any]:
    messages = [
        _ledger_entry(name.removeprefix(ledger.LEDGER_PREFIX), value)
        for name, value in state.items()
        if name.startswith(ledger.LEDGER_PREFIX) and isinstance(value, Mapping)
    ]
    messages.sort(key=lambda m: (str(m.get("reserved_at") or ""), m["dedupe_key"]))
    return {
        "attempts": history.attempts,
        "last_sent_at": _instant(history.last_sent_at),
        "last_reason": history.last_reason,
        "completed_at": _instant(history.completed_at),
        "follow_up_at": _instant(history.follow_up_at),
        "in_flight": plain(state.get(ledger.StateAttr.PENDING_KEY)),
        "messages": messages,
    }


def _ledger_entry(dedupe_key: str, value: Mapping[str, Any]) -> dict[str, Any]:
    fields = ledger.SentAttr
    return {
        "dedupe_key": dedupe_key,
        "reason": plain(value.get(fields.REASON)),
        "status": plain(value.get(fields.STATUS)),
        "attempt": plain(value.get(fields.ATTEMPT)),
        "sequence": plain(value.get(fields.SEQUENCE)),
        "channels": plain(value.get(fields.CHANNELS) or []),
        "delivered": plain(value.get(fields.DELIVERED) or set()),
        "webhook_id": plain(value.get(fields.WEBHOOK_ID)),
        "reserved_at": plain(value.get(fields.RESERVED_AT)),
        "sent_at": plain(value.get(fields.SENT_AT)),
    }


def _watch_document(watch: Any) -> dict[str, Any]:
    return {
        "status": watch.status.value,
        "checks": watch.checks,
        "due_at": _instant(watch.due_at),
        "completed_at": _instant(watch.completed_at),
        "opened_at": _instant(watch.opened_at),
        "last_checked_at": _instant(watch.last_checked_at),
        "overdue_published": watch.overdue_published,
        "closed_reason": watch.closed_reason.value if watch.closed_reason else None,
        "closed_at": _instant(watch.closed_at),
        "meter_ids": list(watch.meter_ids),
    }


def _last_events(
    store: StoredTable, entry_id: str, emitter: FunctionSettings, wanted: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The newest ``wanted`` events (oldest first), from the newest stored changes back."""
    events: list[dict[str, Any]] = []
    unreadable: list[dict[str, Any]] = []
    if wanted == 0:
        return events, unreadable
    rules = emitter.rules
    for change in store.history(entry_id, newest_first=True):
        try:
            derived = change.events(rules)
        except (KeyError, ValueError, TypeError) as exc:
            unreadable.append(
                {"sequence": change.sequence, "reason": change.problem or f"{type(exc).__name__}: {exc}"}
            )
            continue
        for event in reversed(derived):
            events.append(_event_document(event, change.written_at))
            if len(events) == wanted:
                return events[::-1], unreadable
    return events[::-1], unreadable


def _event_document(event: Mapping[str, Any], written_at: str | None) -> dict[str, Any]:
    data = event.get("data") or {}
    about = (data.get("utility") or {}).get(wire.UTILITY_NAME) or (data.get("agreement") or {}).get("name")
    return {
        "id": event["id"],
        "type": event["type"],
        "sequence": int(event["sequence"]),
        "time": event["time"],
        "written_at": written_at,
        "about": about,
    }


def _instant(value: datetime | None) -> str | None:
    return format_instant(value) if value is not None else None


# --- text -------------------------------------------------------------------------------------------


def _text(document: Mapping[str, Any]) -> str:
    entries = document["entries"]
    lines = [f"Reference ID {document['ref_id']}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"]
    for entry in entries:
        lines += ["", *_entry_lines(entry)]
    lines += [
        "",
        f"outreach settings assumed: {_settings_line(document['outreach_settings'])}",
        f"event rules: actionable delay {document['event_rules']['actionable_delay_minutes']} min, agreement "
        f"done statuses {', '.join(document['event_rules']['agreement_done_statuses'])} "
        f"(from {document['event_rules']['source']})",
    ]
    return "\n".join(lines)


def _entry_lines(entry: Mapping[str, Any]) -> list[str]:
    shown = f" ({entry['pseudonym']} in the logs)" if "pseudonym" in entry else ""
    lines = [f"entry {entry['entry_id']}{shown}"]
    snapshot = entry["snapshot"]
    if snapshot is None:
        lines.append("  snapshot: none (the poller has stored no snapshot for this entry)")
    elif "problem" in snapshot:
        lines.append(f"  snapshot: {snapshot['problem']}")
    else:
        lines.append(
            f"  {snapshot['connection_status']} in {snapshot['transmission_region']}, sequence "
            f"{snapshot['sequence']}, last interaction {snapshot['last_interaction']}, stored "
            f"{snapshot['written_at'] or '?'}"
        )
        for u in snapshot["utilities"]:
            code = f" {u['error_code']}" if u["error_code"] else ""
            required = "required" if u["required"] else "not required"
            lines.append(f"  utility {u['name']}: {u['status']}{code} ({required})")
        agreements = ", ".join(f"{name} {status}" for name, status in snapshot["agreements"].items())
        lines.append(f"  agreements: {agreements or 'none'}")
    lines += _next_lines(entry["next"])
    lines += _outreach_lines(entry["outreach"])
    lines += _watch_lines(entry["meter_watch"])
    lines.append(f"  last events ({len(entry['last_events'])}):")
    lines += [
        f"    {e['time']}  {e['type']}{' ' + e['about'] if e['about'] else ''}  sequence {e['sequence']}  "
        f"id {e['id']}"
        for e in entry["last_events"]
    ]
    lines += [
        f"    unreadable stored change {u['sequence']}: {u['reason']}" for u in entry["unreadable_history"]
    ]
    return lines


def _next_lines(steps: Mapping[str, Any] | None) -> list[str]:
    if steps is None:
        return ["  next: nothing to decide without a snapshot"]
    lines = [f"  next, on a change event now: {steps['on_event_now']['says']}"]
    if steps["at_follow_up"] is not None:
        lines.append(
            f"  next, at the follow-up sweep of {steps['at_follow_up']['at']}: "
            f"{steps['at_follow_up']['says']}"
        )
    return lines


def _outreach_lines(outreach: Mapping[str, Any] | None) -> list[str]:
    if outreach is None:
        return ["  outreach: nothing sent yet"]
    completed = f", completed {outreach['completed_at']}" if outreach["completed_at"] else ""
    follow_up = f", next follow-up {outreach['follow_up_at']}" if outreach["follow_up_at"] else ""
    lines = [f"  outreach: {outreach['attempts']} message(s) sent{completed}{follow_up}"]
    for m in outreach["messages"]:
        when = m["sent_at"] or m["reserved_at"]
        lines.append(
            f"    {when}  {m['reason']} (attempt {m['attempt']}, sequence {m['sequence']}) {m['status']} via "
            f"{', '.join(m['channels']) or '-'}  webhook-id {m['webhook_id']}"
        )
    return lines


def _watch_lines(watch: Mapping[str, Any] | None) -> list[str]:
    if watch is None:
        return ["  meter watch: none"]
    if "problem" in watch:
        return [f"  meter watch: {watch['problem']}"]
    if watch["status"] == "OPEN":
        return [
            f"  meter watch: OPEN since {watch['opened_at']}, {watch['checks']} check(s), "
            f"next {watch['due_at']}"
        ]
    meters = f", meters {', '.join(watch['meter_ids'])}" if watch["meter_ids"] else ""
    return [
        f"  meter watch: CLOSED {watch['closed_reason']} at {watch['closed_at']} after "
        f"{watch['checks']} check(s){meters}"
    ]


def _settings_line(s: Mapping[str, Any]) -> str:
    return (
        f"actionable delay {s['actionable_delay_minutes']} min, cooldown {s['cooldown_hours']:g} h, at most "
        f"{s['max_attempts']} messages, notify other utility {'yes' if s['notify_other_utility'] else 'no'}, "
        f"channels {', '.join(s['channels']) or 'none'} (from {s['source']})"
    )
