"""Cold-start import cost of each handler and of each dependency (a benchmark, not a test).

Every measurement imports the module in a FRESH interpreter (as a Lambda cold start does), several
times, and reports the median. Ratios are against `import boto3` measured the same way in the same
run: boto3 ships with the Lambda runtime, so it is the cost every function pays anyway.

    .venv/bin/python bench/cold_start.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASELINE = "boto3"
DEPENDENCIES = [
    "requests",
    "orjson",  # alone ~10 ms, mostly json/dataclasses/uuid, which a handler imports anyway
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.utilities.parameters",
]
HANDLERS = ["poller", "emitter", "outreach", "meter_watch", "meter_sweep", "webhook_receiver"]

_PROBE = (
    "import sys, time; sys.path[:0] = {paths!r}; t = time.perf_counter(); import {module}; "
    "print((time.perf_counter() - t) * 1000)"
)


def import_ms(module: str, repeat: int) -> float:
    """Median milliseconds to import `module` in a fresh interpreter."""
    code = _PROBE.format(paths=[str(REPO), str(REPO / "layers" / "common")], module=module)
    samples = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        samples.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    import_ms(BASELINE, 2)  # warm the file cache so the first row is not penalised
    baseline = import_ms(BASELINE, args.repeat)
    rows = [(f"import {BASELINE} (baseline)", baseline)]
    rows += [(f"import {name}", import_ms(name, args.repeat)) for name in DEPENDENCIES]
    rows += [
        (f"handler functions/{name}/app.py", import_ms(f"functions.{name}.app", args.repeat))
        for name in HANDLERS
    ]
    print(f"median of {args.repeat} fresh interpreters, Python {sys.version.split()[0]}")
    print(f"{'what':48} {'ms':>8} {'x boto3':>8}")
    for label, ms in rows:
        print(f"{label:48} {ms:8.1f} {ms / baseline:8.2f}")


if __name__ == "__main__":
    main()
