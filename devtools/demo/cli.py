"""The entry points: ``run_demo`` (for tests and tools) and ``main`` (``python -m devtools.demo``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO

from devtools.demo.checks import ground_truth_checks
from devtools.demo.effect import effect_check, effect_truth, lift_check
from devtools.demo.hours import deliver, run_hours, stored_entries, tell_leap
from devtools.demo.insight import DEFAULT_REPORT_DIR, insight_lines, report_funnel_check, write_report
from devtools.demo.measure import OutputMeter, measurement, write_measured
from devtools.demo.model import (
    DEFAULT_CLICK_DAYS,
    DEFAULT_CUSTOMERS,
    DEFAULT_DAYS,
    DEFAULT_SEED,
    DEFAULT_START_OFFSET_HOURS,
    DemoConfig,
    DemoResult,
    Run,
)
from devtools.demo.push import Push, figure_lines, figures, push_check, register, step_until
from devtools.demo.recovery import (
    RUNBOOK,
    Recovery,
    install,
    planting_hooks,
    recovery_check,
    recovery_lines,
    replay_failures,
)
from devtools.demo.report import Report, headline, summary_tables
from devtools.demo.world import World, bring_up, functions_output_to, running_rules


def run_demo(
    seed: int = DEFAULT_SEED,
    customers: int = DEFAULT_CUSTOMERS,
    days: int = DEFAULT_DAYS,
    out: TextIO | None = None,
    *,
    start_offset_hours: int = DEFAULT_START_OFFSET_HOURS,
    click_days: int = DEFAULT_CLICK_DAYS,
    quiet: bool = False,
    function_logs: Path | None = None,
    while_up: Callable[[World], None] | None = None,
    measured: Path | None = None,
    report_dir: Path = DEFAULT_REPORT_DIR,
) -> DemoResult:
    """Run the product over ``days`` simulated days; write progress, summary and checks to ``out``.

    The functions' own output (logs, EMF metrics) is discarded, or appended to ``function_logs``.
    ``while_up`` is called with the world after the run, before it is torn down (a test looks into
    the stack, e.g. reads the log hash key secret the template generated). ``measured``: where to
    write what the run measured for the cost model (devtools/demo/measure.py, docs/cost.md).
    ``report_dir``: where ``leap-tracker report`` writes the insight report at the end (docs/insight.md).
    """
    config = DemoConfig(seed, customers, days, start_offset_hours, click_days)
    report = Report(out or sys.stdout)  # taken before stdout is redirected for the functions
    report.line(headline(config))
    output = OutputMeter()
    with functions_output_to(function_logs, output.feed), bring_up(config) as world:
        output.cloud = world.cloud
        rules = running_rules(world.cloud)
        recovery = Recovery()
        install(world.cloud, recovery)
        before, after = planting_hooks(world, recovery, hour=config.hours // 2)
        push = Push()
        register(world, push)

        def between_hours(run: Run, until: datetime) -> None:
            step_until(world, run, push, until, deliver)

        run = run_hours(world, config, report if not quiet else None, before, after, between_hours)
        replay_failures(world, run, recovery)
        tell_leap(world, run)  # what the replay set off was messaged too
        run.stored = stored_entries(world.cloud)
        summary = summary_tables(world, run, rules)
        insight = write_report(world, report_dir)
        truth = effect_truth(world.leap, run.polled_at, world.cloud.now())
        checks = (
            *ground_truth_checks(world, run, rules, recovery.planted_at),
            recovery_check(recovery),
            effect_check(insight.document, truth),
            report_funnel_check(insight.document, run.funnels),
            lift_check(insight.document, truth, rules.settings.outreach.holdout_percent),
            push_check(world, run),
        )
        pushed = figure_lines(figures(world, run, push), push)
        if measured is not None:
            write_measured(measured, measurement(world, run, config, output))
        if while_up is not None:
            while_up(world)
    report.block(summary)
    report.block(recovery_lines(recovery))
    report.block(pushed)
    report.block(["Ground-truth checks", *(check.line() for check in checks)])
    report.block(
        [*insight_lines(insight), f"The runbook (every alarm, what to check, the commands): {RUNBOOK}"]
    )
    return DemoResult(config, report.text(), checks)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    result = run_demo(
        args.seed,
        args.customers,
        args.days,
        sys.stdout,
        start_offset_hours=args.start_offset,
        click_days=args.click_days,
        quiet=args.quiet,
        function_logs=args.function_logs,
        measured=args.measured,
        report_dir=args.report_dir,
    )
    print(f"\n---\nwall time: {time.perf_counter() - started:.1f} s (the only line that varies between runs)")
    return 0 if result.passed else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.demo",
        description="Run leap-connect-tracker locally (moto + the Leap simulator) and check it against "
        "the simulator's ground truth. Exits 1 when a check fails.",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="simulator seed (default %(default)s)")
    parser.add_argument("--customers", type=_positive, default=DEFAULT_CUSTOMERS, help="default %(default)s")
    parser.add_argument(
        "--days", type=_positive, default=DEFAULT_DAYS, help="simulated days (default %(default)s)"
    )
    parser.add_argument(
        "--start-offset",
        type=_not_negative,
        default=DEFAULT_START_OFFSET_HOURS,
        metavar="HOURS",
        help="hours the campaign has been running when the demo starts (default %(default)s)",
    )
    parser.add_argument(
        "--click-days",
        type=_positive,
        default=DEFAULT_CLICK_DAYS,
        help="customers click over this many days from the campaign start (default %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no line per simulated hour, only the summary")
    parser.add_argument(
        "--function-logs",
        type=Path,
        metavar="FILE",
        help="append the functions' output (JSON logs, EMF metrics) to FILE instead of discarding it",
    )
    parser.add_argument(
        "--measured",
        type=Path,
        metavar="FILE",
        help="write what the run measured (AWS calls, request units, durations, log bytes, custom metrics) "
        "as JSON to FILE, for python -m devtools.cost (docs/cost.md)",
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=DEFAULT_REPORT_DIR,
        metavar="DIR",
        help="where the insight report (leap-tracker report: report.html, report.json) goes "
        "(default %(default)s)",
    )
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value
