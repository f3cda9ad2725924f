"""``python -m devtools.soak --seeds N --hours H [--first-seed S] [--plant NAME]``: per seed, the faults
injected by kind, the invariants checked with their counts, and every violation with the fault timeline
around it. Exit status 1 when any seed has a violation (for ``--plant``: when the planted bug is NOT
caught by its invariant)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from contextlib import redirect_stdout
from io import StringIO
from typing import TextIO

from devtools.soak.driver import DEFAULT_CUSTOMERS, SeedReport, run_seed
from devtools.soak.plants import PLANTS


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.soak", description=__doc__)
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds (default 10)")
    parser.add_argument(
        "--first-seed", type=int, default=1, help="the first seed (replay one: --first-seed S --seeds 1)"
    )
    parser.add_argument("--hours", type=int, default=72, help="simulated hours per seed (default 72)")
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS)
    parser.add_argument(
        "--plant", choices=sorted(PLANTS), help="plant one bug at runtime; the soak must catch it"
    )
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the functions' failures are the point: they are counted, not logged
    plant = PLANTS[args.plant] if args.plant else None
    failing, started = [], time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        seed_started = time.perf_counter()
        with redirect_stdout(StringIO()):  # the functions' JSON logs and EMF documents
            report = run_seed(seed, args.hours, args.customers, plant)
        print_report(report, out, wall=time.perf_counter() - seed_started)
        if plant is not None:
            caught = [r for r in report.results if r.violations and r.name == plant.invariant]
            print(
                f"  planted {plant.name!r}: {'CAUGHT' if caught else 'NOT CAUGHT'} by '{plant.invariant}'",
                file=out,
            )
            if not caught:
                failing.append(seed)
        elif report.violations:
            failing.append(seed)
    total = time.perf_counter() - started
    print(
        f"{args.seeds} seed(s) x {args.hours} h in {total:.0f} s wall; failing seeds: {failing or 'none'}",
        file=out,
    )
    return 1 if failing else 0


def print_report(report: SeedReport, out: TextIO, wall: float) -> None:
    counts = report.timeline.counts()
    print(
        f"seed {report.seed}: {report.hours} h, {report.invocations} invocations, {wall:.1f} s wall, "
        f"{len(report.plan)} faults planned, {sum(counts.values())} took effect, "
        f"{report.violations} violation(s)",
        file=out,
    )
    print(
        "  faults injected: " + (", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "none"), file=out
    )
    for result in report.results:
        status = "ok  " if result.passed else "FAIL"
        print(
            f"  {status} {result.name}: {result.checked} checked, {len(result.violations)} violation(s)",
            file=out,
        )
        for violation in result.violations[:10]:
            moment = violation.at.strftime("%Y-%m-%d %H:%M") if violation.at else "-"
            print(f"       {moment} {violation.entry}: {violation.evidence}", file=out)
            for mark in report.timeline.around(violation.at)[:12]:
                print(f"         | {mark.line()}", file=out)
        if len(result.violations) > 10:
            print(f"       ... and {len(result.violations) - 10} more", file=out)
    if report.violations:
        print(
            f"  replay: python -m devtools.soak --first-seed {report.seed} --seeds 1 --hours {report.hours}",
            file=out,
        )
