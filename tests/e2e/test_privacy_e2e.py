"""The demo's function logs hold no Reference ID and no entry id in clear, and one customer's lines are
found by the pseudonym ``leap-tracker hash`` computes with the stack's generated key (docs/security.md).

The demo runs in a process of its own, as ``python -m devtools.demo --function-logs FILE`` does:
Powertools' loggers keep the stream they found when the functions were imported, and in this test
process that may be pytest's. While its stack is still up, the same process asks ``leap-tracker hash``
(the console script's ``main``) for the pseudonym of every entry id, with the key secret the template
generated, then writes the simulator's identifiers and those answers for this test to check.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from devtools import demo
from devtools.demo.world import World
from leap_tracker_cli import main as leap_tracker

REPO = Path(__file__).resolve().parents[2]
SMALL = {"seed": 99, "customers": 25, "days": 1, "start_offset_hours": 48}


def demo_then_hash(log_path: str, result_path: str) -> None:
    """Run in a fresh process (see the module doc)."""

    def hash_every_entry(world: World) -> None:
        secret_arn = world.cloud.resources["LogHashKeySecret"].ref
        entry_ids = sorted({entry["id"] for entry in world.leap.entries_at(world.cloud.now())})
        hashes = {}
        for entry_id in entry_ids:
            out = io.StringIO()
            argv = ["hash", "--entry-id", entry_id, "--key-secret-arn", secret_arn, "--json"]
            assert leap_tracker.main(argv, environ={}, out=out) == 0
            hashes[entry_id] = json.loads(out.getvalue())["pseudonym"]
        result = {"ref_ids": list(world.leap.ref_ids), "entry_ids": entry_ids, "hashes": hashes}
        Path(result_path).write_text(json.dumps(result), encoding="utf-8")

    outcome = demo.run_demo(
        SMALL["seed"],
        SMALL["customers"],
        SMALL["days"],
        io.StringIO(),
        start_offset_hours=SMALL["start_offset_hours"],
        quiet=True,
        function_logs=Path(log_path),
        while_up=hash_every_entry,
    )
    assert outcome.passed, outcome.report


def run_demo_elsewhere(tmp_path: Path) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """The demo's function log (text, and its JSON lines) and what the other process found."""
    log, result = tmp_path / "functions.log", tmp_path / "result.json"
    code = "import sys; from tests.e2e.test_privacy_e2e import demo_then_hash; demo_then_hash(*sys.argv[1:])"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "layers" / "common")])}
    finished = subprocess.run(
        [sys.executable, "-c", code, str(log), str(result)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    text = log.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return text, lines, json.loads(result.read_text(encoding="utf-8"))


def test_the_demo_logs_name_no_customer_and_leap_tracker_hash_finds_one(tmp_path: Path) -> None:
    text, lines, found = run_demo_elsewhere(tmp_path)
    decisions = [line for line in lines if line.get("message") == "outreach decision"]
    assert decisions  # the run had customers to decide on
    assert found["entry_ids"]

    leaked = [value for value in found["ref_ids"] + found["entry_ids"] if value in text]
    assert leaked == []

    # Each decision line names its customer by the pseudonym leap-tracker hash gives for its entry id.
    by_pseudonym = {pseudonym: entry_id for entry_id, pseudonym in found["hashes"].items()}
    assert {line["entry"] for line in decisions} <= set(by_pseudonym)
    one = decisions[0]["entry"]
    customer_lines = [line for line in text.splitlines() if one in line]  # what an operator's grep finds
    assert len(customer_lines) >= 1
    assert all(json.loads(line)["entry"] == one for line in customer_lines)
