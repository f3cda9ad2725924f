"""The insight report at the end of the run, as an operator would write it (docs/insight.md):
``leap-tracker report --out DIR`` against the stack, in-process, as of the run's last instant."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
