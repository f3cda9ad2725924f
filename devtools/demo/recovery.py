"""One recovery, as an operator would do it (docs/operations.md, "Emitter failure queue").

Mid-run, the events topic refuses every message about one customer for an hour (as a topic whose key
policy was broken would, for everyone): the emitter retries the stream batch, gives up on that record,
Lambda sends its coordinates to the emitter failure queue and the emitter leaves a failure marker.
The run goes on. At the end the operator runs ``leap-tracker replay-failures``: the command finds the
marker, derives the record's events again from the stored history and republishes them with their
original ids, then deletes the marker and the failure message. The partner's queue then holds
exactly the events that were missing, once (the "events = ground truth" check counts every id).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from devtools.demo.hours import deliver
from devtools.demo.model import CHANGE_FAMILIES, EMITTER, Check, Received, Run, clock, family
from devtools.demo.world import World
from devtools.local_runner import LocalCloud
from leap_tracker.adapters.aws import aws_client
from leap_tracker.leap import wire
from leap_tracker_cli import main as leap_tracker

COMMAND = ("replay-failures",)
RUNBOOK = "docs/operations.md"


@dataclass
class Refusal:
    """While ``entry_id`` is set, the topic refuses every message about that entry."""

    entry_id: str | None = None
    refused_ids: set[str] = field(default_factory=set)


@dataclass
class Recovery:
    """What was planted and what the operator's command did about it."""

    planted_at: datetime | None = None
    refusal: Refusal = field(default_factory=Refusal)
    failure_messages: int = 0  # in the emitter failure queue before the replay
    status: int | None = None  # the command's exit status
    answer: dict[str, Any] = field(default_factory=dict)
    replayed_ids: list[str] = field(default_factory=list)  # what the partner queue got from the replay


class _RefusingSns:
    """The emitter's SNS client under a :class:`Refusal` (the other calls pass through)."""

    def __init__(self, client: Any, refusal: Refusal) -> None:
        self._client, self._refusal = client, refusal

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def publish_batch(self, **request: Any) -> dict[str, Any]:
        entries = request["PublishBatchRequestEntries"]
        refused = [e for e in entries if self._about_refused(e["Message"])]
        if not refused:
            return self._client.publish_batch(**request)
        self._refusal.refused_ids |= {json.loads(e["Message"])["id"] for e in refused}
        passed = [e for e in entries if e not in refused]
        answer = (
            self._client.publish_batch(**{**request, "PublishBatchRequestEntries": passed}) if passed else {}
        )
        failed = [{"Id": e["Id"], "Code": "AuthorizationError", "SenderFault": True} for e in refused]
        return {"Successful": answer.get("Successful", []), "Failed": [*answer.get("Failed", []), *failed]}

    def _about_refused(self, message: str) -> bool:
        entry_id = self._refusal.entry_id
        return entry_id is not None and json.loads(message)["data"]["connection"]["id"] == entry_id


def install(cloud: LocalCloud, recovery: Recovery) -> None:
    """The emitter runs as deployed (the module the runner imported at its last cold start, in its
    environment), with its SNS client behind the refusal (off until the planted hour)."""
    function = cloud.functions[EMITTER]
    built: dict[str, Any] = {}

    def client(service: str) -> Any:
        made = aws_client(service)  # as the function's cold start makes it
        return _RefusingSns(made, recovery.refusal) if service == "sns" else made

    def refusing(event: dict[str, Any], context: Any) -> Any:
        app = function.module()
        if built.get("app") is not app:  # a cold start: build in the function's environment
            built.update(app=app, deps=app.build_dependencies(app.load_settings(), client=client))
        return app.lambda_handler(event, context, built["deps"])

    cloud.override_handler(EMITTER, refusing)


HourHook = Callable[[int, datetime, Run], None]


def planting_hooks(world: World, recovery: Recovery, hour: int) -> tuple[HourHook, HourHook]:
    """Hooks for the hourly loop: refuse, in the first hour from ``hour`` on in which an entry changes,
    the first such entry (by id)."""

    def before(number: int, now: datetime, run: Run) -> None:
        if number < hour or recovery.planted_at is not None:
            return
        changing = sorted(
            entry[wire.ENTRY_ID]
            for entry in world.leap.entries_at(now)
            if (run.histories.get(entry[wire.ENTRY_REF_ID]) or [None])[-1] != entry
        )
        if changing:
            recovery.planted_at, recovery.refusal.entry_id = now, changing[0]

    def after(number: int, now: datetime, run: Run) -> None:
        if now == recovery.planted_at:
            recovery.refusal.entry_id = None  # the topic accepts again: the run goes on

    return before, after


def replay_failures(world: World, run: Run, recovery: Recovery) -> None:
    """Run ``leap-tracker replay-failures`` against the stack, as an operator would, then deliver."""
    cloud = world.cloud
    attributes = cloud.client("sqs").get_queue_attributes(  # a receive would hide them from the command
        QueueUrl=cloud.resources.queue_url("EmitterFailureQueue"),
        AttributeNames=["ApproximateNumberOfMessages"],
    )["Attributes"]
    recovery.failure_messages = int(attributes["ApproximateNumberOfMessages"])
    out = io.StringIO()
    environ, clients = operator_environment(cloud), cli_clients(cloud)
    recovery.status = leap_tracker.main([*COMMAND, "--json"], environ=environ, client=clients, out=out)
    recovery.answer = json.loads(out.getvalue())
    now, before = cloud.now(), len(run.inbox)
    deliver(world, run, now)  # what the replayed events set off (outreach, meter watches) runs too
    replayed = [r.event["id"] for r in run.inbox[before:] if family(r.event["type"]) in CHANGE_FAMILIES]
    recovery.replayed_ids = replayed
    run.filtered += [Received(now, m) for m in cloud.drain_queue(world.filtered)]


def operator_environment(cloud: LocalCloud) -> dict[str, str]:
    """What an operator's shell would hold for the command (or ``--stack-name`` would find)."""
    return {
        "CONNECTIONS_TABLE": cloud.resources.table_name("ConnectionsTable"),
        "EVENTS_TOPIC_ARN": cloud.resources.topic_arn("EventsTopic"),
        "EMITTER_FAILURE_QUEUE_URL": cloud.resources.queue_url("EmitterFailureQueue"),
        "LOG_HASH_KEY_SECRET_ARN": cloud.resources["LogHashKeySecret"].ref,
        "EMITTER_FUNCTION_NAME": cloud.resources.function_name(EMITTER),
    }


def cli_clients(cloud: LocalCloud) -> Callable[..., Any]:
    def client(service: str, region_name: str | None = None) -> Any:
        return cloud.lambda_client() if service == "lambda" else cloud.client(service)

    return client


def recovery_check(recovery: Recovery) -> Check:
    """The planted failure was recovered: exactly the refused events came back, each once."""
    refused, replayed = recovery.refusal.refused_ids, Counter(recovery.replayed_ids)
    problems = []
    if recovery.planted_at is None or not refused:
        problems.append("no failure was planted (no entry changed in the chosen hour)")
    if recovery.failure_messages != 1:
        problems.append(f"{recovery.failure_messages} message(s) in the emitter failure queue, not 1")
    if recovery.status != 0:
        problems.append(f"leap-tracker {' '.join(COMMAND)} exited {recovery.status}: {recovery.answer}")
    if set(replayed) != refused:
        problems.append(f"replayed {len(replayed)} event(s), {len(refused)} were missing")
    problems += [f"{event_id} replayed {n} times" for event_id, n in replayed.items() if n > 1]
    name = "recovery"
    if problems:
        return Check(name, False, "; ".join(problems))
    when = clock(recovery.planted_at) if recovery.planted_at else "?"
    return Check(
        name,
        True,
        f"an emitter failure planted at {when} (1 failure message, {len(refused)} events missing); "
        f"`leap-tracker {' '.join(COMMAND)}` republished exactly those {len(replayed)} events, once each",
    )


def recovery_lines(recovery: Recovery) -> list[str]:
    """The report's account of the recovery, in the operator's words."""
    answer = recovery.answer
    when = clock(recovery.planted_at) if recovery.planted_at else "(not planted)"
    return [
        "Recovery (docs/operations.md, emitter failure queue)",
        f"  {when}: the events topic refused one customer's messages for an hour; the emitter gave up on",
        f"  that record: {recovery.failure_messages} message in the emitter failure queue, "
        f"{len(recovery.refusal.refused_ids)} events not published",
        f"  $ leap-tracker {' '.join(COMMAND)} --stack-name <your stack>",
        f"  republished {len(recovery.replayed_ids)} events with their original ids; "
        f"deleted {answer.get('deleted', 0)} failure message(s), kept {answer.get('kept', 0)}",
    ]
