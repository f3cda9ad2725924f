"""The webhook receiver's shape checks: hand-written over a table vs a JSON Schema library (a benchmark).

Why it exists: a dependency in the Lambda layer must earn its cold-start cost. The candidates are
``leap_tracker.webhooks.intake`` (hand-written checks over ``PAYLOAD_FIELDS``, no dependency) and
fastjsonschema, what Powertools' validation utility runs, on ``intake.json_schema()`` (the same
shapes). Each cold-start figure is the median over fresh interpreters (as a Lambda cold start is);
the per-delivery figures are medians of timed loops in one interpreter.

fastjsonschema is not a dependency of this project: install it where the benchmark runs, or point
``--path`` at a directory that holds it (``pip install --target /tmp/fjs fastjsonschema``).

    .venv/bin/python bench/webhook_validation.py [--repeat 7] [--path /tmp/fjs]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# One delivery of each known type's richest shape: what a call validates.
SAMPLE = {
    "webhook_event_id": "0b6f8a52-6f7e-4a43-9d59-3d5f0c6a1e11",
    "payload": {
        "webhook_event_type": "meter.enrollment.required-actions.updated",
        "meter_id": "5af2968d-2652-4ebf-9057-b831102a94ef",
        "transmission_region": "CAISO",
        "global_enrollment_status": "PENDING",
        "partner_reference": "customer-0001",
        "meter_type": "UTILITY_METER",
        "required_actions": {
            "partner": [
                {
                    "enrollment_deadline_date_time": "2025-02-01T00:00:00Z",
                    "action_type": "DOCUMENT",
                    "action_description": "Upload the signed form",
                    "action_code": "SIGN_FORM",
                }
            ]
        },
    },
}

# What the receiver's handler imports anyway (Powertools' logger and metrics, boto3 for SQS): each
# figure below is what comes on top of it, untimed first in the same fresh interpreter.
BASE = "import json, boto3; from aws_lambda_powertools import Logger, Metrics"
_COLD = {
    "import leap_tracker.webhooks.intake (hand checks)": ("", "import leap_tracker.webhooks.intake"),
    "import fastjsonschema": ("", "import fastjsonschema"),
    "import aws_lambda_powertools.utilities.validation": (
        "",
        "import aws_lambda_powertools.utilities.validation",
    ),
    "fastjsonschema.compile(intake.json_schema())": (
        "import fastjsonschema; from leap_tracker.webhooks import intake; schema = intake.json_schema()",
        "fastjsonschema.compile(schema)",
    ),
}

_PROBE = (
    "import sys, time; sys.path[:0] = {paths!r}; {base}; {setup}; t = time.perf_counter(); {code}; "
    "print((time.perf_counter() - t) * 1000)"
)

_WARM = """
import json, sys, time, statistics
sys.path[:0] = {paths!r}
from leap_tracker.webhooks import intake
body = json.dumps({sample!r}).encode()
def per_call_us(check, n):
    samples = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(n):
            check()
        samples.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(samples)
out = {{"hand checks: intake.parse (decode, JSON, shape)": per_call_us(lambda: intake.parse(body), 2000)}}
try:
    import fastjsonschema
    from aws_lambda_powertools.utilities.validation import validate
except ImportError:
    pass
else:
    schema = intake.json_schema()
    compiled = fastjsonschema.compile(schema)
    out["fastjsonschema, compiled once: json.loads + validate"] = per_call_us(
        lambda: compiled(json.loads(body)), 2000
    )
    out["Powertools validate(event, schema): compiles per call"] = per_call_us(
        lambda: validate(event=json.loads(body), schema=schema), 20
    )
print(json.dumps(out))
"""


def cold_ms(setup: str, code: str, paths: list[str], repeat: int) -> float | None:
    probe = _PROBE.format(paths=paths, base=BASE, setup=setup or "pass", code=code)
    samples = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        if done.returncode != 0:
            return None  # the module is not installed here
        samples.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--path", action="append", default=[], help="a directory holding fastjsonschema")
    args = parser.parse_args()
    paths = [*args.path, str(REPO), str(REPO / "layers" / "common")]
    cold_ms("", "pass", paths, 2)  # warm the file cache
    print(f"cold start: median of {args.repeat} fresh interpreters, Python {sys.version.split()[0]},")
    print(f"  each on top of what the handler imports anyway ({BASE})")
    for label, (setup, code) in _COLD.items():
        ms = cold_ms(setup, code, paths, args.repeat)
        print(f"  {label:58} {'not installed' if ms is None else f'{ms:8.2f} ms'}")
    warm = subprocess.run(
        [sys.executable, "-c", _WARM.format(paths=paths, sample=SAMPLE)],
        capture_output=True,
        text=True,
        check=True,
    )
    print("per delivery (warm), median of 7 loops:")
    for label, us in json.loads(warm.stdout).items():
        print(f"  {label:58} {us:10.1f} us")


if __name__ == "__main__":
    main()
