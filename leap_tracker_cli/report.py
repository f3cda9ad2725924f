"""``leap-tracker report [--since T] --out DIR``: the funnel over time, where customers stall, how long
completion and meters take, and what outreach achieves (docs/insight.md).

    leap-tracker report --since 30d --out ./insight --stack-name leap-connect-tracker

Reads the table with two Scans (``leap_tracker.adapters.insight_source``: the history items written
since T, projected; the outreach states with their ledgers and the meter watches), runs
``leap_tracker.insight.analysis`` and writes DIR/report.json (the figures) and DIR/report.html (one
self-contained page, charts inline as SVG: needs the ``[report]`` extra, matplotlib). The report
holds counts only: no entry id, no Reference ID.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from leap_tracker.adapters import insight_source as source
from leap_tracker.insight import analysis
from leap_tracker.timeutil import format_instant, utc_now
from leap_tracker_cli.discovery import Discovery, add_flag
from leap_tracker_cli.insight import render
from leap_tracker_cli.replay import when
from leap_tracker_cli.result import CommandError, Result
from leap_tracker_cli.stored import TABLE

NAME = "report"
HELP = "write the insight report (funnel over time, stalls, time to complete, outreach effect) to DIR"
RESOURCES = (TABLE,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", metavar="T", help="history written from T (RFC 3339, or 6h/30d ago; default: all)"
    )
    parser.add_argument("--now", metavar="T", help="the report's moment (default: now)")
    parser.add_argument("--out", required=True, metavar="DIR", help="where report.json and report.html go")
    add_flag(parser, TABLE)


def run(args: argparse.Namespace, discovery: Discovery) -> Result:
    now = when(args.now, utc_now(), "--now") if args.now else utc_now()
    since = when(args.since, now, "--since") if args.since else None
    if since is not None and since >= now:
        raise CommandError(f"--since {format_instant(since)} is not before {format_instant(now)}")
    try:
        import matplotlib  # noqa: F401  (checked before the Scans: the page needs it)
    except ImportError:
        raise CommandError("report.html needs matplotlib: install 'leap-connect-tracker[report]'") from None
    out = Path(args.out)
    stored = source.read(discovery.client("dynamodb"), discovery.require(TABLE).value, since)
    report = analysis.analyse(stored.changes, stored.messages, stored.meters, now, since)
    out.mkdir(parents=True, exist_ok=True)
    document = analysis.document(report, stored.unreadable)
    (out / "report.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    (out / "report.html").write_text(render.page(report), encoding="utf-8")
    summary = {
        "json": str(out / "report.json"),
        "html": str(out / "report.html"),
        "entries": report.entries,
        "changes": report.changes,
        "messages": report.messages,
        "unreadable_changes": stored.unreadable,
    }
    text = (
        f"{report.entries} entries, {report.changes} changes, {report.messages} messages"
        f"{f', {stored.unreadable} unreadable changes left out' if stored.unreadable else ''}: "
        f"wrote {summary['json']} and {summary['html']}"
    )
    return Result(text, summary)
