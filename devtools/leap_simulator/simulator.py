"""The Leap simulator: Leap's Connect and Meters v2 APIs over a seeded population, at a simulated time.

It answers at a simulated instant the caller controls, so a test can replay days of customer journeys
in milliseconds and compare what the product saw with the ground truth (``snapshot``, ``completed_at``,
``meters_appear_at``...). Faults (429, 500, slow, cut-off bodies, expired tokens, dropped connections)
are armed per test. It also keeps the Webhook Subscription API's subscriptions and pushes webhooks to
them as the caller steps its clock (``next_webhook_at``, ``push_due_webhooks``: webhooks.py). This
module is the simulated Leap (population, clock, answers, ground truth, fault switches); server.py is
its HTTP face on 127.0.0.1.
"""

from __future__ import annotations

import copy
import hashlib
import random
import threading
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Self

from devtools.leap_simulator import nudges
from devtools.leap_simulator.faults import Fault, FaultPlan
from devtools.leap_simulator.population import Population, Timeline, utility_code, wire_instant
from devtools.leap_simulator.tokens import CONNECT, METERS, Cursor, PageTokens, query_digest
from devtools.leap_simulator.webhooks import (
    DEFAULT_DELAY,
    DEFAULT_RETRY_DELAYS,
    NO_FAULTS,
    Subscription,
    Transport,
    WebhookDelivery,
    WebhookEngine,
    WebhookFaults,
    WebhookTest,
)
from leap_tracker.leap import wire
from leap_tracker.timeutil import parse_instant

if TYPE_CHECKING:
    from devtools.leap_simulator.server import SimulatorServer

DEFAULT_START = datetime(2025, 1, 6, tzinfo=UTC)
DEFAULT_API_KEY = "leap-simulator-key"

LastPageToken = Literal["absent", "null", "empty"]
# How the Connect list orders the generated customers: by population index (the default), or by start
# date (click time; ties by index). Entries put with a Reference ID of their own come after them.
ListingOrder = Literal["index", "start_date"]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server received it (``raw_query`` is exactly what was on the wire)."""

    method: str
    path: str
    raw_query: str
    query: dict[str, list[str]]
    body: Any  # parsed JSON; the raw text if it was not JSON; None when empty
    at: datetime  # simulated time of arrival


@dataclass(frozen=True, slots=True)
class PacedAnswer:
    """How long one Connect answer took, on the simulator's own clock (seconds since its request was
    read): built (the page and its JSON), then slept to reach ``page_latency_ms``, then answered."""

    built: float
    slept: float
    answered: float


@dataclass(frozen=True, slots=True)
class ConnectFilter:
    """What a Connect list request selects (its paging aside)."""

    ref_id: str | None
    start_from: int | None
    last_interaction_from: int | None

    def digest(self) -> bytes:
        parts = (self.ref_id or "", str(self.start_from), str(self.last_interaction_from))
        return query_digest("connect", *parts)


class LeapSimulator:
    """Leap's Connect and Meters v2 APIs on 127.0.0.1, answering at a simulated time.

    Use as a context manager (``with LeapSimulator(seed=1) as sim: sim.base_url``). The state of every
    generated customer is a pure function of (seed, simulated time); ``put_entry``, ``touch`` and
    ``message`` (an outreach nudge) are the only mutations. ``listing_order`` is how the Connect list
    orders them (``ListingOrder``); ``page_latency_ms`` is the least time a Connect answer takes (its
    building included: ``paced_answers`` has the simulator's own timings; ``sleep`` waits the rest).
    """

    def __init__(
        self,
        seed: int = 0,
        customers: int = 300,
        *,
        start: datetime = DEFAULT_START,
        click_window: timedelta = timedelta(days=14),
        api_key: str = DEFAULT_API_KEY,
        connect_wire: wire.ConnectWire = wire.DEFAULT_CONNECT_WIRE,
        default_page_size: int = 500,
        last_page_token: LastPageToken = "absent",
        meters_page_cap: int = wire.METERS_MAX_PAGE_SIZE,
        request_log_size: int = 10_000,
        webhook_transport: Transport | None = None,
        webhook_delay: timedelta = DEFAULT_DELAY,
        webhook_retry_delays: Sequence[timedelta] = DEFAULT_RETRY_DELAYS,
        webhook_faults: WebhookFaults = NO_FAULTS,
        listing_order: ListingOrder = "index",
        page_latency_ms: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.seed = seed
        self.api_key = api_key
        self.connect_wire = connect_wire
        self.default_page_size = default_page_size
        self.last_page_token: LastPageToken = last_page_token
        self.meters_page_cap = meters_page_cap  # serve fewer meters per page than asked, to test paging
        self.faults = FaultPlan()
        self.server_errors: list[BaseException] = []
        self._population = Population(seed, customers, _epoch(start), int(click_window.total_seconds()))
        self.listing_order: ListingOrder = listing_order
        self._listing = _Listing(self._population, listing_order)
        # Every Connect answer takes at least this long (its own building included): a far API's pace.
        self.page_latency_ms = page_latency_ms
        self._sleep = sleep
        self._paced: deque[PacedAnswer] = deque(maxlen=request_log_size)
        self._now = _epoch(start)
        self._tokens = PageTokens(hashlib.sha256(f"leap-simulator/{seed}".encode()).digest())
        self._lock = threading.RLock()
        self._overrides: dict[int, dict[str, Any]] = {}  # generated customers replaced by put_entry
        self._extras: list[dict[str, Any]] = []  # put entries with a Reference ID of their own
        self._extra_by_ref: dict[str, int] = {}
        self._touches: dict[int, list[int]] = {}
        self._outreach: list[nudges.Outreach] = []
        self._requests: Counter[str] = Counter()
        self._received = 0  # requests received (never reset: request_since counts from it)
        self._log: deque[RecordedRequest] = deque(maxlen=request_log_size)
        self._server: SimulatorServer | None = None
        self._webhooks = WebhookEngine(
            _WebhookSource(self),
            seed,
            self._lock,
            transport=webhook_transport,
            delay=webhook_delay,
            retry_delays=webhook_retry_delays,
            faults=webhook_faults,
        )

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Serve the APIs on 127.0.0.1 (server.py) from a daemon thread."""
        if self._server is not None:
            return
        from devtools.leap_simulator.server import SimulatorServer  # deferred: server.py imports this module

        self._server = SimulatorServer(self)
        self._server.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.stop()
        self._server = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not running: use it as a context manager or call start()")
        return self._server.base_url

    # --- the simulated clock ------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return _datetime(self._now)

    def set_time(self, moment: datetime) -> None:
        self._now = _epoch(moment)

    def advance(
        self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0
    ) -> datetime:
        """Move the simulated clock forward; returns the new now."""
        step = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        self._now += int(step.total_seconds())
        return self.now

    # --- ground truth (Python only, not HTTP) -------------------------------------------------

    @property
    def customers(self) -> int:
        return self._population.size

    @property
    def ref_ids(self) -> list[str]:
        """The generated customers' Reference IDs, in the order the API lists them."""
        indices = self._listing.indices(self._population.size)
        return [self._population.ref_id(index) for index in indices]

    def snapshot(self, ref_id: str, at: datetime | None = None) -> dict[str, Any] | None:
        """The entry the API shows for ``ref_id`` at ``at`` (default now); None before the click."""
        index = self._index_of(ref_id)
        return None if index is None else self._entry(index, self._epoch_or_now(at))

    def iter_entries(self, at: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Every entry that exists at ``at`` (default now), in API order."""
        t = self._epoch_or_now(at)
        for index in self._listing.indices(self._total()):
            entry = self._entry(index, t)
            if entry is not None:
                yield entry

    def entries_at(self, at: datetime | None = None) -> list[dict[str, Any]]:
        return list(self.iter_entries(at))

    def status_counts(self, at: datetime | None = None) -> Counter[str]:
        return Counter(entry.get(wire.ENTRY_CONNECTION_STATUS) for entry in self.iter_entries(at))

    def clicked_at(self, ref_id: str) -> datetime:
        return _datetime(self._timeline(ref_id).clicked_at)

    def completed_at(self, ref_id: str) -> datetime | None:
        """When the customer reaches COMPLETED; None if they never do."""
        completed = self._timeline(ref_id).completed_at
        return None if completed is None else _datetime(completed)

    def meters_appear_at(self, ref_id: str) -> datetime | None:
        """When the customer's meters show up in Meters v2; None if they never do."""
        appear = self._timeline(ref_id).meters_at
        return None if appear is None else _datetime(appear)

    def change_times(self, ref_id: str) -> list[datetime]:
        """Every instant the entry changes (click, logins, signatures, touches), in order."""
        index = self._generated_index(ref_id)
        times = {*self._population.journey(index).timeline.change_times, *self._touches.get(index, ())}
        return [_datetime(t) for t in sorted(times)]

    def meters_of(self, ref_id: str, at: datetime | None = None) -> list[dict[str, Any]]:
        """The meters a search for ``ref_id`` finds at ``at`` (default now)."""
        return self._population.visible_meters(self._generated_index(ref_id), self._epoch_or_now(at))

    # --- mutations for tests and benchmarks ----------------------------------------------------

    def put_entry(self, entry: dict[str, Any]) -> None:
        """Serve this dict as-is from now on (malformed ones too).

        It replaces the generated customer with the same ``ref_id``, else it is listed after them.
        Date filters select it by its own dates; a missing or unreadable date matches every date
        filter, so a malformed entry reaches the poller whatever it asks.
        """
        stored = copy.deepcopy(entry)
        ref_id = entry.get(wire.ENTRY_REF_ID)
        with self._lock:
            index = self._population.index_of(ref_id) if isinstance(ref_id, str) else None
            if index is not None:
                self._overrides[index] = stored
                self._webhooks.rewind(index, self._now)
            elif isinstance(ref_id, str) and ref_id in self._extra_by_ref:
                self._extras[self._extra_by_ref[ref_id]] = stored
            else:
                if isinstance(ref_id, str):
                    self._extra_by_ref[ref_id] = len(self._extras)
                self._extras.append(stored)

    def touch(self, fraction: float, rng: random.Random | None = None) -> list[str]:
        """Bump the last interaction of ``fraction`` of the existing generated entries to now.

        Returns their Reference IDs. A touch is a mutation outside the seed: it is not replayed if the
        clock is set back before it.
        """
        chooser = rng or random.Random(self._now)
        with self._lock:
            existing = [
                index
                for index in range(self._population.size)
                if self._population.clicked_at(index) <= self._now and index not in self._overrides
            ]
            chosen = sorted(chooser.sample(existing, round(len(existing) * fraction)))
            for index in chosen:
                self._touches.setdefault(index, []).append(self._now)
                self._webhooks.rewind(index, self._now)
        return [self._population.ref_id(index) for index in chosen]

    def message(self, ref_id: str, reason: str, variant: str, at: datetime) -> nudges.Outreach:
        """Outreach messaged this customer at ``at`` (for ``reason``, in template ``variant``): a seeded
        share move on some hours later (nudges.py). Never told, the simulator never changes."""
        sent = _epoch(at)
        drawn, moved = nudges.draw(self.seed, ref_id, reason, variant, sent)
        moved = max(moved, self._now + 1)  # what was already shown stays as it was
        with self._lock:
            index = self._population.index_of(ref_id)
            changed = None
            if drawn and index is not None and index not in self._overrides:
                rng = random.Random(f"{self.seed}/{ref_id}/{sent}")
                changed = nudges.nudged_timeline(self._population.journey(index).timeline, sent, moved, rng)
            if changed is not None and index is not None:
                self._population.replace_timeline(index, changed)
                self._webhooks.rewind(index, moved)
            told = nudges.Outreach(ref_id, reason, variant, sent, drawn, None if changed is None else moved)
            self._outreach.append(told)
        return told

    @property
    def outreach(self) -> list[nudges.Outreach]:
        """Every message the simulator was told of, in order, with the nudge it made (a copy)."""
        with self._lock:
            return list(self._outreach)

    def expire_page_tokens(self) -> None:
        """Every page token issued so far is refused from now on (400)."""
        self._tokens.expire_all()

    # --- faults and request accounting -------------------------------------------------------

    def inject(self, fault: Fault, times: int | None = 1, path: str | None = None) -> None:
        """Arm ``fault`` for the next ``times`` matching requests (None: until ``clear_faults``)."""
        self.faults.arm(fault, times, path)

    def clear_faults(self) -> None:
        self.faults.clear()

    @property
    def requests(self) -> Counter[str]:
        """Requests received per path (a copy)."""
        with self._lock:
            return Counter(self._requests)

    @property
    def request_log(self) -> list[RecordedRequest]:
        """The latest requests (up to ``request_log_size``), oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    @property
    def request_total(self) -> int:
        """Every request received so far (the log keeps the latest ``request_log_size`` of them)."""
        with self._lock:
            return self._received

    def requests_since(self, total: int) -> list[RecordedRequest]:
        """The requests received after ``request_total`` was ``total``, oldest first."""
        with self._lock:
            new = self._received - total
            if new > len(self._log):
                raise LookupError(f"{new} requests since, the log keeps {len(self._log)}: make it longer")
            return list(self._log)[len(self._log) - new :] if new > 0 else []

    def pace_connect_answer(self, started: float) -> PacedAnswer:
        """Sleep what is left of ``page_latency_ms`` since ``started`` (``time.monotonic()`` when the
        request was read); the server calls this once the answer is built, before sending it."""
        built = time.monotonic() - started
        slept = max(0.0, self.page_latency_ms / 1000 - built)
        if slept > 0:
            self._sleep(slept)
        paced = PacedAnswer(built, slept, time.monotonic() - started)
        with self._lock:
            self._paced.append(paced)
        return paced

    @property
    def paced_answers(self) -> list[PacedAnswer]:
        """The latest Connect answers' timings (up to ``request_log_size``), oldest first (a copy)."""
        with self._lock:
            return list(self._paced)

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._log.clear()

    def record(self, request: RecordedRequest) -> None:
        """Count and log a request (the server calls this for every request, from its threads)."""
        with self._lock:
            self._requests[request.path] += 1
            self._received += 1
            self._log.append(request)

    # --- webhooks: the Subscription API (server.py routes it here) and the push ---------------

    def list_webhooks(self) -> list[dict[str, Any]]:
        return self._webhooks.list_wire()

    def create_webhook(self, body: Any) -> str:
        """A subscription from a create body (WebhookBodyError if Leap would refuse it); its id."""
        return self._webhooks.create(body, self._now)

    def update_webhook(self, webhook_id: str, body: Any) -> str:
        """Replace every setting (UnknownWebhook for an unknown id)."""
        return self._webhooks.update(webhook_id, body, self._now)

    def delete_webhook(self, webhook_id: str) -> None:
        self._webhooks.delete(webhook_id, self._now)

    def test_webhook(self, webhook_id: str, payload: Any) -> dict[str, Any]:
        """Send ``payload`` to the subscription's receiver now; Leap's test answer."""
        return self._webhooks.send_test(webhook_id, payload, self._now)

    @property
    def webhook_subscriptions(self) -> list[Subscription]:
        return self._webhooks.subscriptions()

    def set_webhook_transport(self, transport: Transport) -> None:
        """How deliveries go out: ``transport(url, headers, body) -> HTTP status`` (default: requests)."""
        self._webhooks.transport = transport

    def set_webhook_faults(self, faults: WebhookFaults) -> None:
        """The webhook faults for the events after now (all off by default)."""
        self._webhooks.set_faults(faults, self._now)

    def next_webhook_at(self) -> datetime | None:
        """When the next delivery attempt is due (None: nothing will be sent)."""
        due = self._webhooks.next_due()
        return None if due is None else _datetime(due)

    def push_due_webhooks(self, now: datetime | None = None) -> list[WebhookDelivery]:
        """Send every attempt due at or before ``now`` (default: the clock); the deliveries it touched.

        ``now`` may not be ahead of the clock: what happens after it is not settled yet.
        """
        moment = self._epoch_or_now(now)
        if moment > self._now:
            raise ValueError(
                f"push_due_webhooks({_datetime(moment)}) is ahead of the clock ({self.now}): move it first"
            )
        return self._webhooks.push(moment)

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        """Every delivery worked out so far, in due order, with its attempts and outcome (ground truth)."""
        return self._webhooks.deliveries()

    @property
    def webhook_tests(self) -> list[WebhookTest]:
        return self._webhooks.tests

    # --- Connect API --------------------------------------------------------------------------

    def connect_page(self, selection: ConnectFilter, page_size: int, token: str | None) -> dict[str, Any]:
        """One page of the Connect list, now. Raises BadPageToken for a token not issued for this query."""
        names = self.connect_wire
        cursor = self._open_token(token, CONNECT, selection.digest())
        entries, following = self._select_entries(selection, cursor.position, page_size, self._now)
        answer: dict[str, Any] = {names.list_field: entries}
        self._add_next_token(answer, names.next_page_token_field, CONNECT, following, selection.digest())
        return answer

    def _select_entries(
        self, selection: ConnectFilter, first: int, page_size: int, t: int
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        page: list[dict[str, Any]] = []
        for position, index in self._candidates(selection.ref_id, first):
            if not self._selected(index, selection, t):
                continue
            if len(page) == page_size:
                return page, Cursor(position)
            entry = self._entry(index, t)
            if entry is not None:
                page.append(entry)
        return page, None

    def _candidates(self, ref_id: str | None, first: int) -> Iterable[tuple[int, int]]:
        """(listing position, index) from position ``first`` on (a cursor is a listing position)."""
        if ref_id is None:
            return self._listing.from_position(first, self._total())
        index = self._index_of(ref_id)
        if index is None:
            return []
        position = self._listing.position_of(index)
        return [(position, index)] if position >= first else []

    def _selected(self, index: int, selection: ConnectFilter, t: int) -> bool:
        static = self._static_entry(index)
        if static is not None:
            return _static_selected(static, selection)
        population = self._population
        clicked = population.clicked_at(index)
        if clicked > t or (selection.start_from is not None and clicked < selection.start_from):
            return False
        if selection.last_interaction_from is None:
            return True
        return self._last_interaction(index, t) >= selection.last_interaction_from

    # --- Meters v2 ------------------------------------------------------------------------------

    def meters_page(self, search: MeterSearch) -> dict[str, Any]:
        """One page of a Meters v2 search, now. Raises BadPageToken for a token not issued for it."""
        cursor = self._open_token(search.page_token, METERS, search.digest)
        meters: list[dict[str, Any]] = []
        following: Cursor | None = None
        page_size = min(search.page_size, self.meters_page_cap)
        for index in search.candidates(self._population):
            if index < cursor.position:
                continue
            found = [m for m in self._population.visible_meters(index, self._now) if search.matches(m)]
            skip = cursor.sub_position if index == cursor.position else 0
            for position in range(skip, len(found)):
                if len(meters) == page_size:
                    following = Cursor(index, position)
                    break
                meters.append(found[position])
            if following is not None:
                break
        answer: dict[str, Any] = {wire.METERS_RESP_METERS: meters}
        self._add_next_token(answer, wire.METERS_RESP_NEXT_PAGE_TOKEN, METERS, following, search.digest)
        return answer

    # --- shared helpers -------------------------------------------------------------------------

    def _open_token(self, token: str | None, kind: int, digest: bytes) -> Cursor:
        return Cursor(0) if token is None else self._tokens.open(token, kind, digest)

    def _add_next_token(
        self, answer: dict[str, Any], name: str, kind: int, following: Cursor | None, digest: bytes
    ) -> None:
        if following is not None:
            answer[name] = self._tokens.issue(kind, following, digest)
        elif self.last_page_token == "null":
            answer[name] = None
        elif self.last_page_token == "empty":
            answer[name] = ""

    def _total(self) -> int:
        return self._population.size + len(self._extras)

    def _static_entry(self, index: int) -> dict[str, Any] | None:
        if index >= self._population.size:
            return self._extras[index - self._population.size]
        return self._overrides.get(index)

    def _entry(self, index: int, t: int) -> dict[str, Any] | None:
        static = self._static_entry(index)
        if static is not None:
            return copy.deepcopy(static)
        entry = self._population.entry_at(index, t)
        if entry is not None and index in self._touches:
            entry[wire.ENTRY_LAST_INTERACTION] = wire_instant(self._last_interaction(index, t))
        return entry

    def _last_interaction(self, index: int, t: int) -> int:
        last = self._population.last_change_at(index, t) or 0
        touched = [moment for moment in self._touches.get(index, ()) if moment <= t]
        return max([last, *touched])

    def _index_of(self, ref_id: str) -> int | None:
        index = self._population.index_of(ref_id)
        if index is not None:
            return index
        extra = self._extra_by_ref.get(ref_id)
        return None if extra is None else self._population.size + extra

    def _generated_index(self, ref_id: str) -> int:
        index = self._population.index_of(ref_id)
        if index is None:
            raise KeyError(f"{ref_id!r} is not a generated customer of this simulator")
        return index

    def _timeline(self, ref_id: str) -> Timeline:
        return self._population.journey(self._generated_index(ref_id)).timeline

    def _epoch_or_now(self, at: datetime | None) -> int:
        return self._now if at is None else _epoch(at)


class _Listing:
    """Where each customer stands in the Connect list. By start date, the generated customers are
    sorted once by click time (ties by index: a stable sort), so a page costs no more than by index.
    Beyond them come the entries put with a Reference ID of their own, in put order, as by index; an
    entry put over a generated customer keeps that customer's place whatever its own start date."""

    def __init__(self, population: Population, order: ListingOrder) -> None:
        if order not in ("index", "start_date"):
            raise ValueError(f"listing_order must be 'index' or 'start_date', not {order!r}")
        self._order: array[int] | None = None
        self._position: array[int] | None = None
        if order == "start_date":
            size, clicked_at = population.size, population.clicked_at
            self._order = array("q", sorted(range(size), key=clicked_at))
            self._position = array("q", bytes(8 * size))
            for position, index in enumerate(self._order):
                self._position[index] = position

    def from_position(self, first: int, total: int) -> Iterable[tuple[int, int]]:
        """(position, index) for the positions ``first`` to ``total`` - 1."""
        positions = range(first, total)
        order = self._order
        if order is None:
            return zip(positions, positions, strict=True)
        size = len(order)
        return ((position, order[position] if position < size else position) for position in positions)

    def indices(self, total: int) -> Iterable[int]:
        return (index for _, index in self.from_position(0, total))

    def position_of(self, index: int) -> int:
        if self._position is None or index >= len(self._position):
            return index
        return self._position[index]


class _WebhookSource:
    """What the webhook engine reads of this simulator (webhooks.WebhookSource)."""

    def __init__(self, simulator: LeapSimulator) -> None:
        self._simulator = simulator

    @property
    def size(self) -> int:
        return self._simulator._population.size

    def ref_id(self, index: int) -> str:
        return self._simulator._population.ref_id(index)

    def moments(self, index: int) -> Sequence[int]:
        population = self._simulator._population
        moments = {*population.change_times(index), *self._simulator._touches.get(index, ())}
        meters_at = population.meters_at(index)
        if meters_at is not None:
            moments.add(meters_at)
        return sorted(moments)

    def entry(self, index: int, t: int) -> dict[str, Any] | None:
        return self._simulator._entry(index, t)

    def meters(self, index: int, t: int) -> list[dict[str, Any]]:
        return self._simulator._population.visible_meters(index, t)

    def meters_at(self, index: int) -> int | None:
        return self._simulator._population.meters_at(index)

    def utility_code(self, connect_name: str) -> str:
        return utility_code(connect_name)


@dataclass(frozen=True, slots=True)
class MeterSearch:
    """What a Meters v2 search request selects, and the page it asks for."""

    page_token: str | None
    page_size: int
    reference_ids: tuple[str, ...] | None
    created_after: int | None
    created_before: int | None
    digest: bytes

    def candidates(self, population: Population) -> Iterable[int]:
        if self.reference_ids is None:
            return range(population.size)
        found = (population.index_of(ref_id) for ref_id in self.reference_ids)
        return sorted({index for index in found if index is not None})

    def matches(self, meter: dict[str, Any]) -> bool:
        created = _epoch(parse_instant(meter[wire.METER_AUDIT][wire.METER_AUDIT_CREATED_AT]))
        if self.created_after is not None and created < self.created_after:
            return False
        return self.created_before is None or created < self.created_before


def _static_selected(entry: dict[str, Any], selection: ConnectFilter) -> bool:
    if selection.ref_id is not None and entry.get(wire.ENTRY_REF_ID) != selection.ref_id:
        return False
    for threshold, name in (
        (selection.start_from, wire.ENTRY_START),
        (selection.last_interaction_from, wire.ENTRY_LAST_INTERACTION),
    ):
        moment = readable_instant(entry.get(name))
        if threshold is not None and moment is not None and moment < threshold:
            return False
    return True


def readable_instant(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return _epoch(parse_instant(value))
    except ValueError:
        return None


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware UTC instant")
    return int(moment.timestamp())


def _datetime(epoch_seconds: int) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)
