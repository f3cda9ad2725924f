"""``leap-tracker replay``: publish again the events of the changes stored in a time window.

    leap-tracker replay --since 2025-03-01T00:00:00Z --until 2025-03-02T00:00:00Z --to-topic --stack-name S
    leap-tracker replay --since 6h --ref-id Test1012 --to-queue https://sqs.../crm --dry-run
    leap-tracker replay --since 2d --type connection.completed --type utility.error --to-queue URL

The table keeps every stored change (a history item, ``HISTORY_RETENTION_DAYS``), previous and new
entry together, so each change's events can be derived again: with the emitter's ``change_events``
and the emitter's own rules (with ``--stack-name`` read from the emitter function's environment), so
ids, bodies and attributes are those subscribers already got, and a consumer that deduplicates on the
id sees a replayed event it had as the same event.

- With ``--ref-id``: the entries of ``ref-index``, then a Query of each entry's history. Without: a
  keys-only Scan of the history items written in the window, then a Query of each entry's history.
- ``--to-topic``: to the events topic through the emitter's publisher (every subscription gets them
  again, filter policies applied). ``--to-queue URL``: into one queue only (a partner's that lost
  messages, or a fresh one to look at), each message as a raw-delivery subscription would deliver it.
- Each entry's events go in sequence order; a failed call stops the replay (what follows is not
  sent, so order holds), and the exit status is 1. So is a stored change that cannot be read: it is
  listed with the entry's pseudonym.
- ``--dry-run``: counts per type, entries and changes; nothing is sent.

Times: RFC 3339 (``2025-03-01T08:00:00Z``) or an age (``90m``, ``6h``, ``2d``); ``--until`` defaults to
now and is exclusive.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from leap_tracker.events.publishing import MessagePublisher
from leap_tracker.privacy import Pseudonyms
from leap_tracker.timeutil import format_instant, parse_instant, utc_now
from leap_tracker_cli import sending
from leap_tracker_cli.discovery import Discovery, add_flag, arn_region, queue_region
from leap_tracker_cli.function_settings import EMITTER_FUNCTION, function_settings
from leap_tracker_cli.hash import KEY_SECRET, stack_pseudonyms
from leap_tracker_cli.result import CommandError, Result
from leap_tracker_cli.stored import TABLE, StoredChange, StoredTable
from leap_tracker_cli.subscription import EVENTS_TOPIC

NAME = "replay"
HELP = "publish again the events of the changes stored in a time window (to the topic or one queue)"
RESOURCES = (TABLE, EVENTS_TOPIC, EMITTER_FUNCTION, KEY_SECRET)
_AGE = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", required=True, metavar="T", help="from this instant (RFC 3339, or 90m/6h/2d ago)"
    )
    parser.add_argument("--until", metavar="T", help="to this instant, exclusive (default: now)")
    parser.add_argument("--ref-id", metavar="REF_ID", help="only this Reference ID's entries")
    parser.add_argument(
        "--type",
        dest="types",
        action="append",
        choices=sending.CHANGE_TYPES,
        metavar="TYPE",
        help="only events of this type (repeat for several): " + ", ".join(sending.CHANGE_TYPES),
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--to-queue", metavar="URL", help="send into this SQS queue only (as a raw subscription)"
    )
    where.add_argument(
        "--to-topic", action="store_true", help="publish to the events topic (every subscriber)"
    )
    parser.add_argument("--dry-run", action="store_true", help="count what would be sent; send nothing")
    for resource in RESOURCES:
        add_flag(parser, resource, "NAME" if resource is TABLE or resource is EMITTER_FUNCTION else "ARN")


def run(args: argparse.Namespace, discovery: Discovery) -> Result:
    now = utc_now()
    since = when(args.since, now, "--since")
    until = when(args.until, now, "--until") if args.until else now
    if since >= until:
        raise CommandError(f"--since {format_instant(since)} is not before --until {format_instant(until)}")
    window = (format_instant(since), format_instant(until))
    store = StoredTable(discovery.client("dynamodb"), discovery.require(TABLE).value)
    emitter = function_settings(discovery, EMITTER_FUNCTION)
    pseudonyms = stack_pseudonyms(discovery)[0]
    target = _target(args, discovery)  # found before any read: a missing topic fails first

    changes = _changes(store, window, args.ref_id)
    prepared = sending.prepare(changes, emitter.rules, pseudonyms, args.types or ())
    document: dict[str, Any] = {
        "window": {"since": window[0], "until": window[1]},
        "one_ref_id": bool(args.ref_id),  # which one is not repeated: the answer may be pasted anywhere
        "types": args.types or "all",
        "rules": emitter.rules_document(),
        "target": target.description,
        "dry_run": args.dry_run,
        "entries": prepared.entries,
        "changes_read": prepared.changes_read,
        "events": prepared.messages,
        "events_by_type": prepared.counts_by_type(),
        "unreadable": [u.document() for u in prepared.unreadable],
    }
    if args.dry_run:
        return Result(_text(document), document)
    sent = sending.send(prepared.records, target.publisher(pseudonyms))
    document |= {"sent": sent.published, "not_sent": sent.unsent, "failures": sent.failures}
    return Result(_text(document), document, status=1 if sent.unsent or prepared.unreadable else 0)


def when(text: str, now: datetime, flag: str) -> datetime:
    """An instant (RFC 3339; no offset means UTC) or an age before ``now`` (``90m``, ``6h``, ``2d``)."""
    age = _AGE.match(text.strip())
    if age:
        return now - timedelta(**{_UNITS[age.group(2)]: int(age.group(1))})
    try:
        return parse_instant(text.strip())
    except ValueError:
        raise CommandError(
            f"{flag} {text!r}: an RFC 3339 instant (2025-03-01T08:00:00Z) or an age (6h)"
        ) from None


def _changes(store: StoredTable, window: tuple[str, str], ref_id: str | None) -> list[StoredChange]:
    """The changes written in the window, by entry, each entry's in sequence order."""
    entry_ids = store.entry_ids_of_ref(ref_id) if ref_id else store.entries_changed_between(*window)
    return [change for entry_id in entry_ids for change in store.history(entry_id, written=window)]


@dataclass(frozen=True, slots=True)
class Target:
    description: str  # "queue <url>" or "topic <arn>"
    publisher: Callable[[Pseudonyms], MessagePublisher]


def _target(args: argparse.Namespace, discovery: Discovery) -> Target:
    if args.to_queue:
        url = args.to_queue
        sqs = discovery.client("sqs", region_name=queue_region(url))
        return Target(f"queue {url}", lambda p: sending.queue_publisher(sqs, url, p))
    topic = discovery.require(EVENTS_TOPIC).value
    sns = discovery.client("sns", region_name=arn_region(topic))
    return Target(f"topic {topic}", lambda p: sending.topic_publisher(sns, topic, p))


def _text(d: dict[str, Any]) -> str:
    lines = [
        f"window {d['window']['since']} .. {d['window']['until']}: {d['changes_read']} stored change(s) of "
        f"{d['entries']} entr{'y' if d['entries'] == 1 else 'ies'}, {d['events']} event(s)"
        + ("" if d["types"] == "all" else f" of {', '.join(d['types'])}"),
        *(f"  {name}: {count}" for name, count in d["events_by_type"].items()),
        f"rules: actionable delay {d['rules']['actionable_delay_minutes']} min, agreement done statuses "
        f"{', '.join(d['rules']['agreement_done_statuses'])} (from {d['rules']['source']})",
    ]
    for u in d["unreadable"]:
        lines.append(f"unreadable: {u['entry']} change {u['sequence']}: {u['reason']}")
    if d["dry_run"]:
        lines.append(f"dry run: nothing sent (would send to {d['target']})")
    else:
        lines.append(f"sent {d['sent']} event(s) to {d['target']}; {d['not_sent']} not sent")
        lines += [f"  failed: {event_id}: {reason}" for event_id, reason in d["failures"].items()]
    return "\n".join(lines)
