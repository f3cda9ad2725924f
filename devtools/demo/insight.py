"""The insight report at the end of the run, as an operator would write it (docs/insight.md):
``leap-tracker report --out DIR`` against the stack, in-process, as of the run's last instant."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from devtools.demo.model import Check, clock
from devtools.demo.recovery import cli_clients, operator_environment
from devtools.demo.world import World
from leap_tracker.timeutil import format_instant
from leap_tracker_cli import main as leap_tracker

COMMAND = "report"
DEFAULT_REPORT_DIR = Path("demo-out/report")


@dataclass
class Insight:
    directory: Path
    status: int | None = None  # the command's exit status
    answer: dict[str, Any] = field(default_factory=dict)  # its --json summary
    document: dict[str, Any] = field(default_factory=dict)  # report.json

    @property
    def html(self) -> Path:
        return self.directory / "report.html"


def write_report(world: World, directory: Path) -> Insight:
    """Run the command into ``directory``; raises when it fails (the demo cannot check a report it has
    not got)."""
    cloud, insight, out = world.cloud, Insight(directory), io.StringIO()
    argv = [COMMAND, "--out", str(directory), "--now", format_instant(cloud.now()), "--json"]
    insight.status = leap_tracker.main(
        argv, environ=operator_environment(cloud), client=cli_clients(cloud), out=out
    )
    insight.answer = json.loads(out.getvalue())
    if insight.status != 0:
        raise RuntimeError(f"leap-tracker {COMMAND} exited {insight.status}: {insight.answer}")
    insight.document = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    return insight


def insight_lines(insight: Insight) -> list[str]:
    answer = insight.answer
    return [
        f"The insight report (docs/insight.md: funnel over time, stalls, time to complete, outreach effect), "
        f"{answer.get('entries', 0)} entries, {answer.get('messages', 0)} messages: {insight.html} "
        f"(figures: {insight.directory / 'report.json'})",
        f"  $ leap-tracker {COMMAND} --out {insight.directory} --stack-name <your stack>",
    ]


REPORT_FUNNEL = "report funnel = ground truth"


def report_funnel_check(
    document: Mapping[str, Any], funnels: Sequence[tuple[datetime, Counter[str], Counter[str]]]
) -> Check:
    """The report's hourly funnel by connection_status against Leap's status counts at each poll. The
    report counts an hour at its end (``at``, UTC) from the history items, so a poll is the point whose
    ``at`` is that poll; the first poll, where the history starts, is counted only at its hour's end."""
    points = {point["at"]: point["by_status"] for point in document.get("funnel_hourly", [])}
    first = min(points, default=None)
    problems, compared = [], 0
    for at, _, truth in funnels:
        key = format_instant(at)
        if first is None or key < first:
            continue  # before the report's first counted moment (the instant its history starts)
        compared += 1
        found = points.get(key)
        if found is None:
            problems.append(f"{clock(at)}: no hourly point in the report")
        elif found != dict(+truth):
            problems.append(f"{clock(at)}: report {found} != Leap {dict(+truth)}")
    if compared == 0:
        problems.append("the report has no hourly point at any poll")
    if problems:
        shown = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
        return Check(REPORT_FUNNEL, False, f"{len(problems)} problem(s): {shown}")
    return Check(
        REPORT_FUNNEL,
        True,
        f"report.json's hourly funnel by status equals Leap's at all {compared} polls from its first "
        f"hour's end ({len(funnels) - compared} poll before it: where the history starts)",
    )
