"""One poller run under the lease, page by page (the package docstring says how)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger

from leap_tracker.config import PollerSettings
from leap_tracker.leap.api import ConnectPage, ConnectQuery, ConnectSource, LeapPageTokenExpired
from leap_tracker.leap.connect_model import (
    DEFAULT_KNOWN_VALUES,
    KnownValues,
)
from leap_tracker.poller.changes import (
    ChangeKind,
    PageChanges,
    ValidatedPage,
    decide_page,
    reconfirmed,
    validate_page,
)
from leap_tracker.poller.listing import continued_order
from leap_tracker.poller.plan import plan_pass
from leap_tracker.poller.ports import (
    Checkpoint,
    LeaseHeld,
    LeaseLost,
    LeaseUse,
    PassState,
    PollerStore,
)
from leap_tracker.poller.prefetch import PagePrefetch
from leap_tracker.poller.request import PollMode, PollRequest
from leap_tracker.privacy import Pseudonyms
from leap_tracker.timeutil import format_instant

logger = Logger(child=True)
MAX_TOKEN_RESTARTS_PER_RUN = 2  # more refused tokens in one run means something else is wrong
LEASE_RETRY_SECONDS = 1.0  # how often a run waiting for a ref_id run's lease tries again


@dataclass(frozen=True, slots=True)
class PollEnvironment:
    """Everything a run touches, injected (the handler wires the real ones, and turns the summary
    into metrics)."""

    source: ConnectSource
    store: PollerStore
    now: Callable[[], datetime]
    remaining_ms: Callable[[], int]  # Lambda's context.get_remaining_time_in_millis
    pseudonyms: Pseudonyms  # what the log lines show of a Reference ID and its entries
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep  # between tries for a lease a ref_id run holds
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
    continuation: int = 0  # this run continues a pass the time limit cut short, the Nth in a row
    checkpoints: int = 0  # progress records written (every POLLER_CHECKPOINT_EVERY_PAGES pages)
    reconfirmed: int = 0  # entries an eventually consistent read found changed, read again consistently
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
            "continuation": self.continuation,
            "checkpoints": self.checkpoints,
            "reconfirmed": self.reconfirmed,
        }
        if self.error:
            result["error"] = self.error
        if self.mode is PollMode.REF_ID:
            result["entries"] = self.entries
        return result

    def for_log(self, pseudonyms: Pseudonyms) -> dict[str, Any]:
        """:meth:`as_dict` with the Reference ID and entry ids of a ref_id run as their pseudonyms:
        they name a customer (the invocation's own answer keeps them)."""
        result = self.as_dict()
        if "entries" in result:
            result["entries"] = [
                {"entry": pseudonyms.entry(e["id"]), "outcome": e["outcome"], "sequence": e["sequence"]}
                for e in self.entries
            ]
        ref_id = self.query.get("ref_id")
        if ref_id:
            result["query"] = {**self.query, "ref_id": pseudonyms.ref(ref_id)}
        return result

    def failure_message(self) -> str:
        then = "poll it again" if self.mode is PollMode.REF_ID else "the next run resumes from the checkpoint"
        return f"poll {self.status.value}: {self.error} ({self.pages} page(s) stored by this run; {then})"


class PollFailed(Exception):
    """The run could not do its work: Leap stayed unavailable after the client's retries or refused the
    key or the request, the table refused a read or write, or the lease was taken over.

    Raised after the lease is released and the finished pages' progress recorded (best effort: were
    the table the failure, the next run reads up to POLLER_CHECKPOINT_EVERY_PAGES pages again), so that Lambda
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
        self.summary = RunSummary(run_id=run_id, mode=request.mode, continuation=request.continuation)
        self.lease_duration = timedelta(seconds=settings.lease_seconds)
        self.lease_until = env.now()  # set when the lease is taken
        # A pass run's: where the pass stands, and what the stored checkpoint says of it (set when planned).
        self.state: PassState
        self.saved: PassState | None = None
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
            logger.info("poll finished", extra=summary.for_log(self.env.pseudonyms))
            return summary
        finally:
            summary.retries = self.env.retry_count() - self.retries_before

    def _take_lease(self) -> bool:
        """Take the lease. A ref_id run's lease is short (one Reference ID), so a run that meets one
        waits for it, up to ``lease_wait_seconds``; a pass that waits announces it, so that later
        ref_id runs stand back and cannot keep it from the lease (targeted polls come in streams). A
        lease a pass holds is not waited for: the run is skipped, as before."""
        use = LeaseUse.REF_ID if self.request.mode is PollMode.REF_ID else LeaseUse.PASS
        give_up_at = self.env.monotonic() + self.settings.lease_wait_seconds
        announced = False
        try:
            while True:
                now = self.env.now()
                try:
                    self.env.store.acquire_lease(self.run_id, now, now + self.lease_duration, use)
                    self.lease_until = now + self.lease_duration
                    return True
                except LeaseHeld as held:
                    if held.use is not LeaseUse.REF_ID or self.env.monotonic() >= give_up_at:
                        self._skip(held)
                        return False
                if use is LeaseUse.PASS and not announced:
                    wait_left = timedelta(seconds=give_up_at - self.env.monotonic() + LEASE_RETRY_SECONDS)
                    self.env.store.announce_waiting_pass(self.run_id, now + wait_left)
                    announced = True
                self.env.sleep(LEASE_RETRY_SECONDS)
        except Exception as exc:  # the table refused: nothing was done, and nothing to release
            raise self._failed(RunStatus.FAILED, exc) from exc
        finally:
            if announced:
                self._withdraw_waiting()

    def _skip(self, held: LeaseHeld) -> None:
        self.summary.status, self.summary.reason = RunStatus.SKIPPED, str(held)
        logger.info(
            "poll skipped: another run holds the lease", extra=self.summary.for_log(self.env.pseudonyms)
        )

    def _withdraw_waiting(self) -> None:
        """The announcement ends by itself (its ``until``): a refused withdrawal only delays ref_id
        runs that long, so it is logged, not raised."""
        try:
            self.env.store.withdraw_waiting_pass(self.run_id)
        except Exception as exc:
            logger.warning(
                "could not withdraw the waiting pass's announcement (it expires by itself)",
                extra={"run_id": self.run_id, "error": f"{type(exc).__name__}: {exc}"},
            )

    def _poll(self) -> None:
        """The run's work; every way it can stop short, except the time limit, becomes PollFailed.

        Leap's errors reach here after the client's own retries; a page in hand when it failed is not
        in the recorded progress, the pages before it are. Logging the failure is the handler's.
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
        # Leap's answer to a ref_id request may quote the Reference ID: the error (logged, and the
        # message Lambda logs) shows its pseudonym instead.
        ref_ids = [self.request.ref_id] if self.request.ref_id else []
        error = self.env.pseudonyms.redact(f"{type(exc).__name__}: {exc}", ref_ids=ref_ids)
        self.summary.status, self.summary.error = status, error
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
        summary = self.summary
        if self.request.continuation and checkpoint.pending is None:
            summary.reason = "nothing to continue: another run completed the pass"
            logger.info("pass planned", extra={"run_id": self.run_id, "reason": summary.reason})
            return
        plan = plan_pass(self.request.mode, checkpoint, self.env.now(), self.settings)
        state = plan.state
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
                "continuation": self.request.continuation,
            },
        )
        self.state = state
        self.saved = state if plan.resumed else None  # what the stored checkpoint says of the pass
        try:
            while True:
                try:
                    self._read_pass(checkpoint)
                    return
                except LeapPageTokenExpired as exc:
                    if self.state.page_token is None or summary.token_restarts >= MAX_TOKEN_RESTARTS_PER_RUN:
                        raise
                    summary.token_restarts += 1
                    state = self.state = self.state.after_refused_token()
                    logger.warning(
                        "Leap refused the page token: going on with a new query",
                        extra={
                            "run_id": self.run_id,
                            "pass": state.kind.value,
                            "query": _query_dict(state.query),
                            "from_first_page": state.listed_through is None,
                            "error": str(exc),
                        },
                    )
        except LeaseLost:
            raise  # nothing more is written: another run holds the pass now
        except Exception:
            self._save_progress_before_failing(checkpoint)
            raise

    def _read_pass(self, checkpoint: Checkpoint) -> None:
        """Read the pass's pages while time allows, from ``self.state`` on. The checkpoint is written
        every ``checkpoint_every_pages`` pages and when the run stops short; the pass's end completes it."""
        every = self.settings.checkpoint_every_pages
        since_saved = 0
        for page in self._pages(self.state.query, self.state.page_token):
            if page is None:  # the source ended without a last page marker: the pass is done
                self._complete(checkpoint)
                return
            page_max = self._store_page(page)
            order = continued_order(page.entries, self.state.query.listing_field, self.state.order)
            self.state = self.state.advanced(page.next_page_token, page_max, order)
            self.summary.pass_pages_done = self.state.pages_done
            if page.next_page_token is None:
                self._complete(checkpoint)
                return
            del page  # stored: not held while the next one is awaited (memory: two pages at most)
            since_saved += 1
            if since_saved >= every:
                self._save_progress(checkpoint)
                since_saved = 0
        if self.state != self.saved:  # interrupted: the checkpoint holds the next page
            self._save_progress(checkpoint)

    def _save_progress(self, checkpoint: Checkpoint) -> None:
        self._keep_lease()
        self.env.store.save_checkpoint(checkpoint.with_pending(self.state), self.run_id, self.env.now())
        self.summary.checkpoints += 1
        self.saved = self.state

    def _save_progress_before_failing(self, checkpoint: Checkpoint) -> None:
        """A failing run keeps the pages it finished: their progress is written before the failure is
        raised (were the table the failure, the next run reads those pages again: idempotent)."""
        if self.state == self.saved or self.state.pages_done == 0:
            return
        try:
            self._save_progress(checkpoint)
        except Exception as exc:
            logger.warning(
                "could not record the pass's progress before failing (the next run reads those pages again)",
                extra={"run_id": self.run_id, "error": f"{type(exc).__name__}: {exc}"},
            )

    def _keep_lease(self) -> None:
        """Renew the lease before a write once half of it is gone. The lease outlives the function's
        timeout (POLLER_LEASE_SECONDS 960 > 900), so a run renews it about once, not once a page: the
        renewal is the fence (it raises LeaseLost, before anything is written, when another run took
        the lease over), and a write a page would be most of a pass's control writes."""
        now = self.env.now()
        if self.lease_until - now > self.lease_duration / 2:
            return
        self.lease_until = now + self.lease_duration
        self.env.store.renew_lease(self.run_id, self.lease_until)

    def _complete(self, checkpoint: Checkpoint) -> None:
        self._keep_lease()
        now = self.env.now()
        done = checkpoint.completed(self.state, now)
        self.env.store.save_checkpoint(done, self.run_id, now)
        self.summary.checkpoints += 1
        self.saved = self.state
        self.summary.reason += f"; pass completed, watermark {_instant_text(done.watermark)}"

    def _pages(self, query: ConnectQuery, token: str | None) -> Iterator[ConnectPage | None]:
        """The pages of a selection while time allows; a final None when the source ran out.

        Page n+1 is asked for as soon as page n is in hand (``poller/prefetch.py``), so Leap answers
        while page n is stored. Stops (status interrupted) before asking for a page when the run is
        near its time limit; the page being stored then is the last one.
        """
        answers = getattr(self.env.source, "iter_page_answers", None)  # decoded here, not in the worker
        pages = answers(query, token) if answers is not None else self.env.source.iter_pages(query, token)
        with PagePrefetch(pages, self.env.monotonic) as prefetch:
            if self._near_time_limit():
                return
            while True:
                page, latency_ms = prefetch.take()
                if page is None:
                    yield None
                    return
                self.summary.api_latency_ms.append(latency_ms)
                more = page.next_page_token is not None
                if more and not self._near_time_limit():
                    prefetch.request()
                yield page
                del page  # stored: not held while the next one is awaited
                if not more or not prefetch.in_flight:
                    return

    def _near_time_limit(self) -> bool:
        if self.env.remaining_ms() >= self.settings.time_margin_seconds * 1000:
            return False
        self.summary.status = RunStatus.INTERRUPTED
        self.summary.reason += "; stopped near the time limit, the pass goes on from the checkpoint"
        logger.info("poll interrupted near the time limit", extra={"run_id": self.run_id})
        return True

    def _store_page(self, page: ConnectPage) -> datetime | None:
        """Validate, compare and write one page; return the newest last interaction in it.

        A pass reads the stored snapshots eventually consistently (half the read units): an entry it
        finds unchanged writes nothing, and were that read a second stale, the next pass reads it
        again. An entry it would write is read again, consistently, before the decision stands: its
        sequence and its history's previous entry must be the stored ones. A ref_id poll (one entry,
        the latency path) reads consistently at once."""
        now = self.env.now()
        checked = validate_page(page.entries, now, self.known)
        ids = [entry.entry_id for entry in checked.valid]
        if self.request.mode is PollMode.REF_ID:
            changes = decide_page(checked.valid, self.env.store.read_snapshots(ids, consistent=True))
        else:
            changes = decide_page(checked.valid, self.env.store.read_snapshots(ids, consistent=False))
            if changes.writes:
                again = [write.entry for write in changes.writes]
                confirmed = self.env.store.read_snapshots([e.entry_id for e in again], consistent=True)
                changes = reconfirmed(changes, decide_page(again, confirmed))
                self.summary.reconfirmed += len(again)
        if changes.writes or checked.quarantined:
            self._keep_lease()
            self.env.store.write_changes(changes.writes, checked.quarantined, now)
        self._count(page, checked, changes)
        return checked.max_last_interaction

    def _count(self, page: ConnectPage, checked: ValidatedPage, changes: PageChanges) -> None:
        summary = self.summary
        new = changes.count(ChangeKind.NEW)
        page_counts = {
            "entries": len(page.entries),
            "changed": len(changes.writes),
            "new": new,
            "unchanged": changes.count(ChangeKind.UNCHANGED),
            "stale": changes.count(ChangeKind.STALE),
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
