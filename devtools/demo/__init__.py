"""``make demo``: the whole product, locally, over a few simulated days, checked against ground truth.

The Leap simulator (a seeded population moving through the Connect funnel, meters appearing after
completion) answers on 127.0.0.1; template.yaml runs in moto through the local runner, which plays
Lambda (the table stream, the SQS queues, the schedules); a partner's webhook endpoint on 127.0.0.1
verifies every outreach signature. Nothing needs an AWS account, Docker or the network.

Every simulated hour: the clock moves one hour (the simulator follows), the poller's schedule fires,
everything it set off is delivered (stream -> emitter -> SNS -> queues -> outreach and meter_watch),
then the other schedules template.yaml declares (outreach follow-up, meter sweep) fire and their work
is delivered too. Two partner queues, each a subscriber stack deployed from subscriber/template.yaml
(one with no filter, one with a ready filter policy of docs/events.md), collect what a partner would
receive.

Halfway, an emitter failure is planted for one customer; at the end it is recovered the way the
runbook says, with ``leap-tracker replay-failures`` (``recovery``). At the end: a summary a partner
would want, and ground-truth checks (PASS/FAIL) comparing what the
product did with what the simulator says happened. Same seed, same output (the wall-time line aside).

    python -m devtools.demo [--seed N] [--customers N] [--days N] [--start-offset HOURS]
                            [--click-days N] [--quiet] [--function-logs FILE]

The parts, in the order a run uses them: ``cli`` (``run_demo`` and ``main``), ``world`` (the simulator,
the local cloud and the webhook receiver brought up together), ``hours`` (the hourly loop), ``report``
(progress lines and summary tables), ``recovery`` (the planted failure and its replay) and ``checks``
(the ground truth); ``model`` holds the records
they pass each other. docs/demo.md explains the output.
"""

from devtools.demo.cli import main, run_demo
from devtools.demo.hours import schedule_rate
from devtools.demo.model import FILTERED_POLICY, Check, DemoConfig, DemoResult, Received, Run

__all__ = [
    "FILTERED_POLICY",
    "Check",
    "DemoConfig",
    "DemoResult",
    "Received",
    "Run",
    "main",
    "run_demo",
    "schedule_rate",
]
