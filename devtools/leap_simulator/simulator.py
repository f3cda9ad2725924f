"""The Leap simulator: a local HTTP server with Leap's Connect and Meters v2 APIs over a seeded population.

It answers at a simulated instant the caller controls, so a test can replay days of customer journeys
in milliseconds and compare what the product saw with the ground truth (``snapshot``, ``completed_at``,
``meters_appear_at``...). Faults (429, 500, slow, cut-off bodies, expired tokens, dropped connections)
are armed per test.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self
from urllib.parse import parse_qs

from devtools.leap_simulator.faults import Fault, FaultKind, FaultPlan
from devtools.leap_simulator.population import Population, Timeline, wire_instant
from devtools.leap_simulator.tokens import CONNECT, METERS, BadPageToken, Cursor, PageTokens, query_digest
from leap_tracker.leap import wire
from leap_tracker.timeutil import parse_instant

DEFAULT_START = datetime(2025, 1, 6, tzinfo=UTC)
DEFAULT_API_KEY = "leap-simulator-key"
INTERNAL_ERROR_TEXT = "An error happened whilst processing your request"  # Leap's 500 body, a JSON string
MAX_CONNECT_PAGE_SIZE = 10_000
_TRUNCATION_SHORTFALL = 64  # bytes promised by Content-Length but never sent

LastPageToken = Literal["absent", "null", "empty"]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server received it (``raw_query`` is exactly what was on the wire)."""

    method: str
    path: str
    raw_query: str
    query: dict[str, list[str]]
    body: Any  # parsed JSON; the raw text if it was not JSON; None when empty
    at: datetime  # simulated time of arrival


@dataclass(slots=True)
class _Reply:
    status: int
    body: Any = None  # encoded as JSON
    headers: dict[str, str] = field(default_factory=dict)
    truncate: bool = False
    drop: bool = False


class _Refusal(Exception):
    """An error answer in Leap's {title, status, details} shape."""

    def __init__(self, status: int, title: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(title)
        self.reply = _Reply(status, _problem(status, title, details))


@dataclass(frozen=True, slots=True)
class _ConnectFilter:
    ref_id: str | None
    start_from: int | None
    last_interaction_from: int | None

    def digest(self) -> bytes:
        parts = (self.ref_id or "", str(self.start_from), str(self.last_interaction_from))
        return query_digest("connect", *parts)


class LeapSimulator:
    """Leap's Connect and Meters v2 APIs on 127.0.0.1, answering at a simulated time.

    Use as a context manager (``with LeapSimulator(seed=1) as sim: sim.base_url``). The state of every
    generated customer is a pure function of (seed, simulated time); ``put_entry`` and ``touch`` are
    the only mutations.
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
        self._now = _epoch(start)
        self._tokens = PageTokens(hashlib.sha256(f"leap-simulator/{seed}".encode()).digest())
        self._lock = threading.RLock()
        self._overrides: dict[int, dict[str, Any]] = {}  # generated customers replaced by put_entry
        self._extras: list[dict[str, Any]] = []  # put entries with a Reference ID of their own
        self._extra_by_ref: dict[str, int] = {}
        self._touches: dict[int, list[int]] = {}
        self._requests: Counter[str] = Counter()
        self._log: deque[RecordedRequest] = deque(maxlen=request_log_size)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="leap-simulator",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not running: use it as a context manager or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

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
        return [self._population.ref_id(index) for index in range(self._population.size)]

    def snapshot(self, ref_id: str, at: datetime | None = None) -> dict[str, Any] | None:
        """The entry the API shows for ``ref_id`` at ``at`` (default now); None before the click."""
        index = self._index_of(ref_id)
        return None if index is None else self._entry(index, self._epoch_or_now(at))

    def iter_entries(self, at: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Every entry that exists at ``at`` (default now), in API order."""
        t = self._epoch_or_now(at)
        for index in range(self._total()):
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
        return [self._population.ref_id(index) for index in chosen]

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

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._log.clear()

    # --- HTTP dispatch (called from the server's threads) -------------------------------------

    def _respond(self, method: str, target: str, raw_body: bytes, authorization: str | None) -> _Reply:
        path, _, raw_query = target.partition("?")
        query = parse_qs(raw_query, keep_blank_values=True)  # '+' reads as a space, as form decoding does
        body = _decode_body(raw_body)
        self._record(RecordedRequest(method, path, raw_query, query, body, self.now))
        fault = self.faults.take(path, self._carries_page_token(path, query, body))
        if fault is not None and fault.kind not in (FaultKind.SLOW, FaultKind.TRUNCATED_BODY):
            return _fault_reply(fault, self._page_token_name(path))
        if fault is not None and fault.kind is FaultKind.SLOW:
            time.sleep(fault.delay_seconds)
        reply = self._authorized_reply(method, path, query, body, authorization)
        reply.truncate = fault is not None and fault.kind is FaultKind.TRUNCATED_BODY
        return reply

    def _authorized_reply(
        self, method: str, path: str, query: dict[str, list[str]], body: Any, authorization: str | None
    ) -> _Reply:
        if authorization != f"{wire.AUTH_SCHEME} {self.api_key}":
            return _Reply(401, _problem(401, "Unauthorized"))
        try:
            if path == self.connect_wire.path and method == "GET":
                return _Reply(200, self._connect_page(query))
            if path == wire.METERS_SEARCH_PATH and method == "POST":
                return _Reply(200, self._meters_page(body))
            if path in (self.connect_wire.path, wire.METERS_SEARCH_PATH):
                return _Reply(405, _problem(405, "Method Not Allowed", {"method": method}))
            return _Reply(404, _problem(404, "Not Found", {"path": path}))
        except _Refusal as refusal:
            return refusal.reply

    def _page_token_name(self, path: str) -> str:
        if path == wire.METERS_SEARCH_PATH:
            return wire.METERS_REQ_PAGE_TOKEN
        return self.connect_wire.param_page_token

    def _carries_page_token(self, path: str, query: dict[str, list[str]], body: Any) -> bool:
        if path == wire.METERS_SEARCH_PATH:
            return isinstance(body, dict) and bool(body.get(wire.METERS_REQ_PAGE_TOKEN))
        return bool(query.get(self.connect_wire.param_page_token))

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests[request.path] += 1
            self._log.append(request)

    # --- Connect API --------------------------------------------------------------------------

    def _connect_page(self, query: dict[str, list[str]]) -> dict[str, Any]:
        names = self.connect_wire
        selection = _ConnectFilter(
            ref_id=_single(query, names.param_ref_id),
            start_from=_query_instant(query, names.param_start_date),
            last_interaction_from=_query_instant(query, names.param_last_interaction_date),
        )
        page_size = _page_size(query, names.param_page_size, self.default_page_size)
        token = _single(query, names.param_page_token)
        cursor = self._open_token(token, CONNECT, selection.digest(), names.param_page_token)
        entries, following = self._select_entries(selection, cursor.position, page_size, self._now)
        answer: dict[str, Any] = {names.list_field: entries}
        self._add_next_token(answer, names.next_page_token_field, CONNECT, following, selection.digest())
        return answer

    def _select_entries(
        self, selection: _ConnectFilter, first: int, page_size: int, t: int
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        page: list[dict[str, Any]] = []
        for index in self._candidates(selection.ref_id, first):
            if not self._selected(index, selection, t):
                continue
            if len(page) == page_size:
                return page, Cursor(index)
            entry = self._entry(index, t)
            if entry is not None:
                page.append(entry)
        return page, None

    def _candidates(self, ref_id: str | None, first: int) -> Iterable[int]:
        if ref_id is None:
            return range(first, self._total())
        index = self._index_of(ref_id)
        return [index] if index is not None and index >= first else []

    def _selected(self, index: int, selection: _ConnectFilter, t: int) -> bool:
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

    def _meters_page(self, body: Any) -> dict[str, Any]:
        search = _MeterSearch.parse(body)
        cursor = self._open_token(search.page_token, METERS, search.digest, wire.METERS_REQ_PAGE_TOKEN)
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

    def _open_token(self, token: str | None, kind: int, digest: bytes, name: str) -> Cursor:
        if token is None:
            return Cursor(0)
        try:
            return self._tokens.open(token, kind, digest)
        except BadPageToken as exc:
            raise _Refusal(400, "Invalid page token", {name: str(exc)}) from exc

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


@dataclass(frozen=True, slots=True)
class _MeterSearch:
    """A Meters v2 search request, checked the way the spec constrains it."""

    page_token: str | None
    page_size: int
    reference_ids: tuple[str, ...] | None
    created_after: int | None
    created_before: int | None
    digest: bytes

    @classmethod
    def parse(cls, body: Any) -> _MeterSearch:
        if not isinstance(body, dict):
            raise _Refusal(400, "The request body must be a JSON object")
        token = body.get(wire.METERS_REQ_PAGE_TOKEN)
        if token is not None and not isinstance(token, str):
            raise _Refusal(400, "Invalid page token", {wire.METERS_REQ_PAGE_TOKEN: "not a string"})
        size = body.get(wire.METERS_REQ_PAGE_SIZE, wire.METERS_MAX_PAGE_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= wire.METERS_MAX_PAGE_SIZE:
            raise _Refusal(400, "Invalid page size", {wire.METERS_REQ_PAGE_SIZE: repr(size)})
        paging = (wire.METERS_REQ_PAGE_TOKEN, wire.METERS_REQ_PAGE_SIZE)
        selector = {name: value for name, value in body.items() if name not in paging}
        return cls(
            page_token=token or None,
            page_size=size,
            reference_ids=_reference_ids(body.get(wire.METERS_REQ_CONNECTION_REFERENCE_IDS)),
            created_after=_body_instant(body, wire.METERS_REQ_CREATED_AFTER),
            created_before=_body_instant(body, "created_before_date_time"),
            digest=query_digest("meters", json.dumps(selector, sort_keys=True)),
        )

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


def _reference_ids(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    field_name = wire.METERS_REQ_CONNECTION_REFERENCE_IDS
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Refusal(400, "Invalid connection reference ids", {field_name: "not a list of strings"})
    if not 1 <= len(value) <= wire.METERS_MAX_REFERENCE_IDS or len(set(value)) != len(value):
        raise _Refusal(
            400,
            "Invalid connection reference ids",
            {field_name: f"1 to {wire.METERS_MAX_REFERENCE_IDS} unique ids, got {len(value)}"},
        )
    return tuple(value)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a client's idle keep-alive connection must not hold up stop()

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], sim: LeapSimulator):
        super().__init__(address, handler)
        self.simulator = sim

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-answer (timeouts, cut-off tests) are expected: keep stderr quiet.
        self.simulator.server_errors.append(sys.exc_info()[1] or RuntimeError("unknown server error"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real API: benchmarks reuse connections
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request line http.server writes to stderr."""

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        sim = self.server.simulator
        try:
            reply = sim._respond(method, self.path, raw_body, self.headers.get(wire.AUTH_HEADER))
        except Exception as exc:  # a simulator bug: answer like Leap's 500 and keep it for the test
            sim.server_errors.append(exc)
            reply = _Reply(500, INTERNAL_ERROR_TEXT)
        self._write(reply)

    def _write(self, reply: _Reply) -> None:
        if reply.drop:
            self.close_connection = True
            return
        payload = json.dumps(reply.body, separators=(",", ":")).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        promised = len(payload) + (_TRUNCATION_SHORTFALL if reply.truncate else 0)
        self.send_header("Content-Length", str(promised))
        self.end_headers()
        self.wfile.write(payload[: len(payload) // 2] if reply.truncate else payload)
        self.wfile.flush()
        if reply.truncate:
            self.close_connection = True


def _fault_reply(fault: Fault, token_name: str) -> _Reply:
    match fault.kind:
        case FaultKind.RATE_LIMITED:
            headers = {"Retry-After": str(fault.retry_after_seconds)}
            return _Reply(429, _problem(429, "Too Many Requests"), headers)
        case FaultKind.SERVER_ERROR:
            return _Reply(500, INTERNAL_ERROR_TEXT)
        case FaultKind.EXPIRED_PAGE_TOKEN:
            details = {token_name: "the page token has expired"}
            return _Reply(400, _problem(400, "Invalid page token", details))
        case FaultKind.DROPPED_CONNECTION:
            return _Reply(0, drop=True)
        case _:
            return _Reply(fault.status, _problem(fault.status, _TITLES.get(fault.status, "Error")))


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "You do not have the necessary permissions for this operation",
    404: "Not Found",
    429: "Too Many Requests",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _problem(status: int, title: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {wire.ERROR_TITLE: title, wire.ERROR_STATUS: status, wire.ERROR_DETAILS: details or {}}


def _static_selected(entry: dict[str, Any], selection: _ConnectFilter) -> bool:
    if selection.ref_id is not None and entry.get(wire.ENTRY_REF_ID) != selection.ref_id:
        return False
    for threshold, name in (
        (selection.start_from, wire.ENTRY_START),
        (selection.last_interaction_from, wire.ENTRY_LAST_INTERACTION),
    ):
        moment = _readable_instant(entry.get(name))
        if threshold is not None and moment is not None and moment < threshold:
            return False
    return True


def _decode_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")


def _single(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _query_instant(query: dict[str, list[str]], name: str) -> int | None:
    text = _single(query, name)
    if text is None:
        return None
    moment = _readable_instant(text)
    if moment is None:
        raise _Refusal(400, "Invalid date", {name: text})
    return moment


def _body_instant(body: dict[str, Any], name: str) -> int | None:
    text = body.get(name)
    if text is None:
        return None
    moment = _readable_instant(text)
    if moment is None:
        raise _Refusal(400, "Invalid date", {name: repr(text)})
    return moment


def _page_size(query: dict[str, list[str]], name: str, default: int) -> int:
    text = _single(query, name)
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= MAX_CONNECT_PAGE_SIZE:
        raise _Refusal(400, "Invalid page size", {name: text})
    return int(text)


def _readable_instant(value: Any) -> int | None:
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
