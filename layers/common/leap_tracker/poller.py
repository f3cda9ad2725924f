"""The poller: read Leap's Connect API page by page and store only what changed.

Three parts, each testable alone:
- the request and the pass plan: :func:`parse_request` and :func:`plan_pass` (pure: which selection
  a run reads, from the checkpoint, the clock and the settings);
- change detection: :func:`validate_page` and :func:`decide_entry` / :func:`decide_page` (pure);
- the run: :func:`run_poll` drives a ``ConnectSource`` and a ``PollerStore`` under the lease, page by
  page: validate, read stored hashes, renew the lease, write the changes, then checkpoint. A page is
  checkpointed only after its writes succeeded, so a crash replays at most one page, and the replay
  writes nothing because the hashes then match. A run that cannot do its work raises
  :class:`PollFailed` (after checkpointing what it did), so the platform counts and retries it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from leap_tracker import table
from leap_tracker.config import PollerSettings
from leap_tracker.connect_model import (
    DEFAULT_KNOWN_VALUES,
    MAX_REF_ID_BYTES,
    KnownValues,
    MalformedEntry,
    UnknownValue,
    ValidEntry,
    identifier_problem,
    validate_entry,
)
from leap_tracker.leap_api import ConnectPage, ConnectQuery, ConnectSource, LeapPageTokenExpired
from leap_tracker.poller_ports import (
    Checkpoint,
    LeaseHeld,
    LeaseLost,
    PassKind,
    PassState,
    PollerStore,
    QuarantineRecord,
    SnapshotWrite,
    StoredState,
)
from leap_tracker.timeutil import format_instant

logger = Logger(child=True)

QUARANTINE_RETENTION = timedelta(days=30)
MAX_QUARANTINED_JSON_CHARS = 100_000  # keeps a quarantine item far below DynamoDB's 400 KB
MAX_QUARANTINE_REASON_CHARS = 1_000  # a reason may quote a name Leap sent (an agreement's): bounded too
# The schedule fires at about the same minute every hour. Without this slack a full pass that started
# a few seconds later one day would not be "due" 24 h later and would slip a whole hour.
SCHEDULE_SLACK = timedelta(minutes=15)
MAX_TOKEN_RESTARTS_PER_RUN = 1  # a second refused token in one run means something else is wrong


# --- the request --------------------------------------------------------------------------------


class PollMode(StrEnum):
    SCHEDULED = "scheduled"  # the poller decides: resume, full reconciliation, or incremental
    INCREMENTAL = "incremental"
    FULL = "full"
    REF_ID = "ref_id"  # one Reference ID, on demand


class InvalidPollRequest(ValueError):
    """The invocation input is not one the poller accepts (the message says what is)."""


@dataclass(frozen=True, slots=True)
class PollRequest:
    mode: PollMode
    ref_id: str | None = None


_ACCEPTED_INPUTS = (
    '{"mode": "scheduled"}, {"mode": "incremental"}, {"mode": "full"}, {"mode": "ref_id", "ref_id": "..."} '
    'or an EventBridge "Scheduled Event"'
)
# What a classic EventBridge schedule rule sends (`sam local generate-event cloudwatch scheduled-event`
# prints it): no input of ours, so it can only mean the hourly run.
EVENTBRIDGE_SCHEDULED_EVENT = {"detail-type": "Scheduled Event", "source": "aws.events"}


def parse_request(event: Any) -> PollRequest:
    """The invocation input: what the schedule's Input says (EventBridge Scheduler passes it as is),
    or EventBridge's own "Scheduled Event" (a classic rule), which is a scheduled run."""
    if not isinstance(event, dict):
        raise InvalidPollRequest(f"the input is {type(event).__name__}; expected {_ACCEPTED_INPUTS}")
    if _is_eventbridge_schedule(event):
        return PollRequest(PollMode.SCHEDULED)
    raw_mode = event.get("mode")
    try:
        mode = PollMode(raw_mode)
    except ValueError:
        raise InvalidPollRequest(f"unknown mode {raw_mode!r}; expected {_ACCEPTED_INPUTS}") from None
    allowed = {"mode", "ref_id"} if mode is PollMode.REF_ID else {"mode"}
    extra = sorted(set(event) - allowed)
    if extra:
        raise InvalidPollRequest(
            f"unexpected key(s) {extra} for mode {mode.value!r}; expected {_ACCEPTED_INPUTS}"
        )
    if mode is not PollMode.REF_ID:
        return PollRequest(mode)
    ref_id = event.get("ref_id")
    if not isinstance(ref_id, str) or not ref_id.strip():
        raise InvalidPollRequest('mode "ref_id" needs a non-empty string "ref_id"')
    ref_id = ref_id.strip()
    problem = identifier_problem(ref_id, MAX_REF_ID_BYTES)
    if problem:
        raise InvalidPollRequest(f'"ref_id" {problem}')
    return PollRequest(mode, ref_id)


def _is_eventbridge_schedule(event: dict[str, Any]) -> bool:
    return "mode" not in event and all(event.get(k) == v for k, v in EVENTBRIDGE_SCHEDULED_EVENT.items())


# --- the pass plan (pure) -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PassPlan:
    state: PassState
    resumed: bool
    reason: str


def plan_pass(mode: PollMode, checkpoint: Checkpoint, now: datetime, settings: PollerSettings) -> PassPlan:
    """Which selection this run reads, and from which page. The one place that decides it.

    scheduled: an unfinished pass is resumed first; else a full reconciliation when one is due; else
    an incremental pass. incremental/full: that kind, resuming an unfinished pass of the same kind.
    A fresh pass replaces an unfinished one of the other kind: nothing is lost, because the watermark
    and the last full reconciliation only move when a pass completes.
    """
    if mode is PollMode.REF_ID:
        raise ValueError("a ref_id poll reads no pass")
    pending = checkpoint.pending
    if mode is PollMode.SCHEDULED:
        if pending is not None:
            return PassPlan(pending, resumed=True, reason=f"resume the unfinished {pending.kind} pass")
        due, why = full_reconciliation_due(checkpoint, now, settings)
        kind = PassKind.FULL if due else PassKind.INCREMENTAL
        return PassPlan(fresh_pass(kind, checkpoint, now, settings), resumed=False, reason=why)
    kind = PassKind.FULL if mode is PollMode.FULL else PassKind.INCREMENTAL
    if pending is not None and pending.kind is kind:
        return PassPlan(pending, resumed=True, reason=f"resume the unfinished {kind} pass (asked for {kind})")
    return PassPlan(fresh_pass(kind, checkpoint, now, settings), resumed=False, reason=f"asked for {kind}")


def full_reconciliation_due(
    checkpoint: Checkpoint, now: datetime, settings: PollerSettings
) -> tuple[bool, str]:
    last = checkpoint.last_full_started_at
    if last is None:
        return True, "no full reconciliation has completed yet"
    period = timedelta(hours=settings.full_reconciliation_hours)
    if now - last >= period - SCHEDULE_SLACK:
        return True, f"the last full reconciliation started {format_instant(last)}, over {period} ago"
    return False, "incremental (a full reconciliation is not due)"


def fresh_pass(kind: PassKind, checkpoint: Checkpoint, now: datetime, settings: PollerSettings) -> PassState:
    if kind is PassKind.FULL:
        query = ConnectQuery(start_date=settings.full_reconciliation_start)
    elif checkpoint.watermark is None:
        # Nothing completed yet: an incremental pass from the very start reads what a full one would.
        query = ConnectQuery(last_interaction_date=settings.full_reconciliation_start)
    else:
        since = checkpoint.watermark - timedelta(minutes=settings.overlap_minutes)
        query = ConnectQuery(last_interaction_date=format_instant(since))
    return PassState(kind=kind, query=query, started_at=now)


# --- change detection (pure) --------------------------------------------------------------------


class Outcome(StrEnum):
    NEW = "new"  # first seen: sequence 1
    CHANGED = "changed"  # different content, not older: next sequence
    UNCHANGED = "unchanged"  # same content hash
    STALE = "stale"  # older last interaction than the stored one: never regress

    @property
    def writes(self) -> bool:
        return self in (Outcome.NEW, Outcome.CHANGED)


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    sequence: int | None = None  # the sequence to write, for NEW and CHANGED


def decide_entry(content_hash: str, last_interaction: datetime, stored: StoredState | None) -> Decision:
    """Compare one entry with its stored snapshot."""
    if stored is None:
        return Decision(Outcome.NEW, 1)
    if content_hash == stored.content_hash:
        return Decision(Outcome.UNCHANGED)
    if stored.last_interaction is not None and last_interaction < stored.last_interaction:
        return Decision(Outcome.STALE)
    return Decision(Outcome.CHANGED, stored.sequence + 1)


def newest_per_id(entries: Sequence[ValidEntry]) -> list[ValidEntry]:
    """One entry per id: the newest by last interaction; on a tie, the later one in the page."""
    chosen: dict[str, ValidEntry] = {}
    for entry in entries:
        kept = chosen.get(entry.entry_id)
        if kept is None or entry.last_interaction >= kept.last_interaction:
            chosen[entry.entry_id] = entry
    return list(chosen.values())


@dataclass(frozen=True, slots=True)
class ValidatedPage:
    valid: list[ValidEntry]  # one per entry id
    quarantined: list[QuarantineRecord]
    unknown_values: Counter[UnknownValue]
    duplicates: int  # entries dropped because a newer one with the same id was in the page

    @property
    def max_last_interaction(self) -> datetime | None:
        return max((entry.last_interaction for entry in self.valid), default=None)


def validate_page(
    raw_entries: Sequence[Any], now: datetime, known: KnownValues = DEFAULT_KNOWN_VALUES
) -> ValidatedPage:
    valid: list[ValidEntry] = []
    quarantined: dict[str, QuarantineRecord] = {}  # by key: a batch write must not repeat a key
    unknown: Counter[UnknownValue] = Counter()
    for raw in raw_entries:
        try:
            entry = validate_entry(raw, known)
        except MalformedEntry as problem:
            record = quarantine_record(raw, problem, now)
            quarantined[record.key] = record
            continue
        valid.append(entry)
        unknown.update(entry.unknown_values)
    unique = newest_per_id(valid)
    return ValidatedPage(unique, list(quarantined.values()), unknown, len(valid) - len(unique))


def quarantine_record(raw: Any, problem: MalformedEntry, now: datetime) -> QuarantineRecord:
    """The item that keeps a malformed entry aside. Its key is the entry id when that fits a key,
    else a hash of the raw entry: the quarantine item itself must never be what fails the page."""
    raw_json = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)  # ASCII
    entry_id = problem.entry_id if problem.entry_id and table.entry_id_fits(problem.entry_id) else None
    return QuarantineRecord(
        key=entry_id or "sha256:" + hashlib.sha256(raw_json.encode()).hexdigest(),
        reason=_storable_text(problem.reason[:MAX_QUARANTINE_REASON_CHARS]),
        raw_json=raw_json[:MAX_QUARANTINED_JSON_CHARS],
        received_at=now,
        expires_at=now + QUARANTINE_RETENTION,
        entry_id=entry_id,
    )


def _storable_text(text: str) -> str:
    """``text`` with any lone surrogate escaped: a DynamoDB string must be valid UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True, slots=True)
class PageChanges:
    writes: list[SnapshotWrite]
    outcomes: dict[str, Decision]  # by entry id

    def count(self, outcome: Outcome) -> int:
        return sum(1 for decision in self.outcomes.values() if decision.outcome is outcome)


def decide_page(valid: Sequence[ValidEntry], stored: dict[str, StoredState]) -> PageChanges:
    writes: list[SnapshotWrite] = []
    outcomes: dict[str, Decision] = {}
    for entry in valid:
        decision = decide_entry(entry.content_hash, entry.last_interaction, stored.get(entry.entry_id))
        outcomes[entry.entry_id] = decision
        if decision.sequence is not None:
            writes.append(SnapshotWrite(entry, decision.sequence))
    return PageChanges(writes, outcomes)


# --- the run ------------------------------------------------------------------------------------


class MetricSink(Protocol):
    """Powertools ``Metrics`` satisfies this; tests pass a recorder."""

    def add_metric(self, name: str, unit: Any, value: float) -> Any: ...


@dataclass(frozen=True, slots=True)
class PollEnvironment:
    """Everything a run touches, injected (the handler wires the real ones)."""

    source: ConnectSource
    store: PollerStore
    metrics: MetricSink
    now: Callable[[], datetime]
    remaining_ms: Callable[[], int]  # Lambda's context.get_remaining_time_in_millis
    monotonic: Callable[[], float] = time.monotonic
    retry_count: Callable[[], int] = lambda: 0  # the source's cumulative retries (for a metric)


class RunStatus(StrEnum):
    COMPLETED = "completed"  # the pass (or the ref_id poll) read its last page
    INTERRUPTED = "interrupted"  # stopped near the time limit; the next run resumes from the checkpoint
    SKIPPED = "skipped"  # another run holds the lease; nothing was touched
    # The two below are raised (PollFailed), never returned: the run could not do its work.
    FAILED = "failed"  # Leap unavailable/refusing, the table refusing writes; resumes from the checkpoint
    LEASE_LOST = "lease_lost"  # the lease was taken over; this run stopped without writing


@dataclass(slots=True)
class RunSummary:
    run_id: str
    mode: PollMode
    status: RunStatus = RunStatus.COMPLETED
    pass_kind: str | None = None  # "full", "incremental" or "ref_id"
    query: dict[str, str] = field(default_factory=dict)
    resumed: bool = False
    reason: str = ""
    pages: int = 0
    entries_seen: int = 0
    changed: int = 0  # new + changed: the entries written
    new: int = 0
    unchanged: int = 0
    stale: int = 0
    invalid: int = 0
    duplicates: int = 0
    unknown_values: int = 0
    token_restarts: int = 0
    pass_pages_done: int = 0  # pages of the whole pass so far, across runs
    api_latency_ms: list[float] = field(default_factory=list)
    retries: int = 0
    error: str | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)  # per-entry outcome, ref_id mode only

    def as_dict(self) -> dict[str, Any]:
        result = {
            "status": self.status.value,
            "run_id": self.run_id,
            "mode": self.mode.value,
            "pass": self.pass_kind,
            "query": self.query,
            "resumed": self.resumed,
            "reason": self.reason,
            "pages": self.pages,
            "pass_pages_done": self.pass_pages_done,
            "entries_seen": self.entries_seen,
            "changed": self.changed,
            "new": self.new,
            "unchanged": self.unchanged,
            "stale": self.stale,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "unknown_values": self.unknown_values,
            "token_restarts": self.token_restarts,
            "retries": self.retries,
        }
        if self.error:
            result["error"] = self.error
        if self.mode is PollMode.REF_ID:
            result["entries"] = self.entries
        return result

    def for_log(self) -> dict[str, Any]:
        """:meth:`as_dict` without the Reference ID and entry ids of a ref_id run: they name a customer."""
        result = self.as_dict()
        result.pop("entries", None)
        if self.query.get("ref_id"):
            result["query"] = {**self.query, "ref_id": "<redacted>"}
        return result

    def failure_message(self) -> str:
        then = "poll it again" if self.mode is PollMode.REF_ID else "the next run resumes from the checkpoint"
        return f"poll {self.status.value}: {self.error} ({self.pages} page(s) stored by this run; {then})"


class PollFailed(Exception):
    """The run could not do its work: Leap stayed unavailable after the client's retries or refused the
    key or the request, the table refused a read or write, or the lease was taken over.

    Raised after the lease is released and with every finished page checkpointed, so that Lambda
    counts an error, its asynchronous retries resume from the checkpoint, and the last failure lands
    in the failure destination. ``summary`` says how far the run got; the cause is ``__cause__``.
    """

    def __init__(self, summary: RunSummary) -> None:
        super().__init__(summary.failure_message())
        self.summary = summary


def run_poll(
    request: PollRequest,
    run_id: str,
    env: PollEnvironment,
    settings: PollerSettings,
    known: KnownValues = DEFAULT_KNOWN_VALUES,
) -> RunSummary:
    """One poller run under the lease. Returns its summary when the run did its work (completed), was
    cut short by the time limit (interrupted) or found the lease held (skipped); raises
    :class:`PollFailed` otherwise, after releasing the lease."""
    return _Run(request, run_id, env, settings, known).execute()


class _Run:
    def __init__(
        self,
        request: PollRequest,
        run_id: str,
        env: PollEnvironment,
        settings: PollerSettings,
        known: KnownValues,
    ) -> None:
        self.request = request
        self.run_id = run_id
        self.env = env
        self.settings = settings
        self.known = known
        self.summary = RunSummary(run_id=run_id, mode=request.mode)
        self.lease_duration = timedelta(seconds=settings.lease_seconds)
        self.retries_before = env.retry_count()

    def execute(self) -> RunSummary:
        summary = self.summary
        try:
            if not self._take_lease():
                return summary
            try:
                self._poll()
            finally:
                if not self.env.store.release_lease(self.run_id):
                    logger.warning("the lease was no longer ours at release", extra={"run_id": self.run_id})
            logger.info("poll finished", extra=summary.for_log())
            return summary
        finally:
            summary.retries = self.env.retry_count() - self.retries_before
            self._emit_metrics()

    def _take_lease(self) -> bool:
        now = self.env.now()
        try:
            self.env.store.acquire_lease(self.run_id, now, now + self.lease_duration)
        except LeaseHeld as held:
            self.summary.status, self.summary.reason = RunStatus.SKIPPED, str(held)
            logger.info("poll skipped: another run holds the lease", extra=self.summary.for_log())
            return False
        except Exception as exc:  # the table refused: nothing was done, and nothing to release
            raise self._failed(RunStatus.FAILED, exc) from exc
        return True

    def _poll(self) -> None:
        """The run's work; every way it can stop short, except the time limit, becomes PollFailed.

        Leap's errors reach here after the client's own retries; a page in hand when it failed was not
        checkpointed, the pages before it were. Logging the failure is the caller's (the handler's).
        """
        try:
            if self.request.mode is PollMode.REF_ID:
                self._poll_ref_id(str(self.request.ref_id))
            else:
                self._poll_pass()
        except LeaseLost as lost:  # the work was not done: a failure, though the new holder goes on
            raise self._failed(RunStatus.LEASE_LOST, lost) from lost
        except Exception as exc:  # Leap (unavailable, auth, request, garbage), the table, or a bug
            raise self._failed(RunStatus.FAILED, exc) from exc

    def _failed(self, status: RunStatus, exc: Exception) -> PollFailed:
        self.summary.status, self.summary.error = status, f"{type(exc).__name__}: {exc}"
        return PollFailed(self.summary)

    # --- the two kinds of run ---------------------------------------------------------------

    def _poll_ref_id(self, ref_id: str) -> None:
        query = ConnectQuery(ref_id=ref_id)
        self.summary.pass_kind, self.summary.query = PollMode.REF_ID.value, _query_dict(query)
        self.summary.reason = "one Reference ID on demand"
        for page in self._pages(query, None):
            if page is None:
                break
            self._store_page(page)
        if not self.summary.entries_seen and self.summary.status is RunStatus.COMPLETED:
            self.summary.reason = (
                "Leap has no entry for this Reference ID (the Connect URL was not opened yet)"
            )

    def _poll_pass(self) -> None:
        checkpoint = self.env.store.load_checkpoint()
        plan = plan_pass(self.request.mode, checkpoint, self.env.now(), self.settings)
        state = plan.state
        summary = self.summary
        summary.pass_kind, summary.query = state.kind.value, _query_dict(state.query)
        summary.resumed, summary.reason, summary.pass_pages_done = plan.resumed, plan.reason, state.pages_done
        logger.info(
            "pass planned",
            extra={
                "run_id": self.run_id,
                "pass": summary.pass_kind,
                "query": summary.query,
                "resumed": plan.resumed,
                "reason": plan.reason,
                "pass_pages_done": state.pages_done,
            },
        )
        while True:
            try:
                for page in self._pages(state.query, state.page_token):
                    if page is None:  # the source ended without a last page marker: the pass is done
                        self._complete(checkpoint, state)
                        return
                    page_max = self._store_page(page)
                    state = state.advanced(page.next_page_token, page_max)
                    summary.pass_pages_done = state.pages_done
                    if page.next_page_token is None:
                        self._complete(checkpoint, state)
                        return
                    checkpoint = checkpoint.with_pending(state)
                    self.env.store.save_checkpoint(checkpoint, self.run_id, self.env.now())
                return  # interrupted: the checkpoint holds the next page
            except LeapPageTokenExpired as exc:
                if state.page_token is None or summary.token_restarts >= MAX_TOKEN_RESTARTS_PER_RUN:
                    raise
                summary.token_restarts += 1
                state = state.restarted()
                logger.warning(
                    "Leap refused the page token: restarting the pass from its first page",
                    extra={"run_id": self.run_id, "pass": state.kind.value, "error": str(exc)},
                )

    def _complete(self, checkpoint: Checkpoint, state: PassState) -> None:
        now = self.env.now()
        done = checkpoint.completed(state, now)
        self.env.store.save_checkpoint(done, self.run_id, now)
        self.summary.reason += f"; pass completed, watermark {_instant_text(done.watermark)}"

    def _pages(self, query: ConnectQuery, token: str | None) -> Iterator[ConnectPage | None]:
        """The pages of a selection while time allows; a final None when the source ran out.

        Stops (status interrupted) before asking for a page when the run is near its time limit.
        """
        pages = self.env.source.iter_pages(query, token)
        margin_ms = self.settings.time_margin_seconds * 1000
        while True:
            if self.env.remaining_ms() < margin_ms:
                self.summary.status = RunStatus.INTERRUPTED
                self.summary.reason += (
                    "; stopped near the time limit, the next run resumes from the checkpoint"
                )
                logger.info("poll interrupted near the time limit", extra={"run_id": self.run_id})
                return
            started = self.env.monotonic()
            page = next(pages, None)
            if page is None:
                yield None
                return
            self.summary.api_latency_ms.append(round((self.env.monotonic() - started) * 1000, 3))
            yield page

    def _store_page(self, page: ConnectPage) -> datetime | None:
        """Validate, compare and write one page; return the newest last interaction in it."""
        now = self.env.now()
        checked = validate_page(page.entries, now, self.known)
        stored = self.env.store.read_snapshots([entry.entry_id for entry in checked.valid])
        changes = decide_page(checked.valid, stored)
        self.env.store.renew_lease(self.run_id, now + self.lease_duration)
        if changes.writes or checked.quarantined:
            self.env.store.write_changes(changes.writes, checked.quarantined, now)
        self._count(page, checked, changes)
        return checked.max_last_interaction

    def _count(self, page: ConnectPage, checked: ValidatedPage, changes: PageChanges) -> None:
        summary = self.summary
        new = changes.count(Outcome.NEW)
        page_counts = {
            "entries": len(page.entries),
            "changed": len(changes.writes),
            "new": new,
            "unchanged": changes.count(Outcome.UNCHANGED),
            "stale": changes.count(Outcome.STALE),
            "invalid": len(checked.quarantined),
            "duplicates": checked.duplicates,
            "unknown_values": sum(checked.unknown_values.values()),
        }
        summary.pages += 1
        summary.entries_seen += page_counts["entries"]
        summary.changed += page_counts["changed"]
        summary.new += new
        summary.unchanged += page_counts["unchanged"]
        summary.stale += page_counts["stale"]
        summary.invalid += page_counts["invalid"]
        summary.duplicates += page_counts["duplicates"]
        summary.unknown_values += page_counts["unknown_values"]
        if self.request.mode is PollMode.REF_ID:
            summary.entries.extend(
                {"id": entry_id, "outcome": d.outcome.value, "sequence": d.sequence}
                for entry_id, d in changes.outcomes.items()
            )
        for record in checked.quarantined:  # the key is (or holds) the entry id: not logged
            logger.warning(
                "entry quarantined",
                extra={"reason": record.reason, "received_at": format_instant(record.received_at)},
            )
        extra: dict[str, Any] = {"run_id": self.run_id, "page": summary.pages, **page_counts}
        if checked.unknown_values:
            extra["unknown_enum_values"] = {
                f"{u.field}={u.value}": n for u, n in checked.unknown_values.items()
            }
        if summary.api_latency_ms:
            extra["latency_ms"] = summary.api_latency_ms[-1]
        logger.info("page stored", extra=extra)

    def _emit_metrics(self) -> None:
        summary, sink = self.summary, self.env.metrics
        counts = {
            "PagesFetched": summary.pages,
            "EntriesSeen": summary.entries_seen,
            "EntriesChanged": summary.changed,
            "EntriesUnchanged": summary.unchanged,
            "EntriesStale": summary.stale,
            "EntriesInvalid": summary.invalid,
            "UnknownEnumValues": summary.unknown_values,
            "LeapRetries": summary.retries,
            "PageTokenRestarts": summary.token_restarts,
            "PollInterrupted": int(summary.status is RunStatus.INTERRUPTED),
            "PollSkipped": int(summary.status is RunStatus.SKIPPED),
            "PollFailed": int(summary.status in (RunStatus.FAILED, RunStatus.LEASE_LOST)),
        }
        for name, value in counts.items():
            sink.add_metric(name=name, unit="Count", value=value)
        for latency in summary.api_latency_ms:
            sink.add_metric(name="LeapApiLatency", unit="Milliseconds", value=latency)


def _query_dict(query: ConnectQuery) -> dict[str, str]:
    return {name: value for name, value in _query_fields(query) if value}


def _query_fields(query: ConnectQuery) -> list[tuple[str, str | None]]:
    return [
        ("ref_id", query.ref_id),
        ("start_date", query.start_date),
        ("last_interaction_date", query.last_interaction_date),
    ]


def _instant_text(value: datetime | None) -> str:
    return format_instant(value) if value else "none"
