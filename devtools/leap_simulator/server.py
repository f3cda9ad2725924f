"""The Leap simulator's HTTP face: a server on 127.0.0.1 that reads each request, routes it and writes
the answer in Leap's shapes.

A request is recorded, then an armed fault may answer instead (or slow the answer, or cut its body
short); then the API key is checked and the path routed: the Connect list (GET), the Meters v2
search (POST) and the Webhook Subscription API (``/v1.1/webhooks``: GET, POST; ``/{id}``: PUT,
DELETE; ``/{id}/test``: POST). Query strings and bodies are checked as the spec constrains them, and
a bad one is answered with Leap's ``{title, status, details}`` problem (the Subscription API's own
``{error, message}``). The answers come from the simulated Leap (simulator.py). A Connect answer,
once built, waits out what is left of the simulator's ``page_latency_ms`` before it is sent.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from devtools.leap_simulator.faults import Fault, FaultKind
from devtools.leap_simulator.simulator import (
    ConnectFilter,
    LeapSimulator,
    MeterSearch,
    RecordedRequest,
    readable_instant,
)
from devtools.leap_simulator.tokens import BadPageToken, query_digest
from devtools.leap_simulator.webhooks import UnknownWebhook, WebhookBodyError
from leap_tracker.leap import wire

INTERNAL_ERROR_TEXT = "An error happened whilst processing your request"  # Leap's 500 body, a JSON string
MAX_CONNECT_PAGE_SIZE = 10_000
_TRUNCATION_SHORTFALL = 64  # bytes promised by Content-Length but never sent


class SimulatorServer:
    """Serves one simulator on 127.0.0.1 (a free port) from a daemon thread."""

    def __init__(self, simulator: LeapSimulator) -> None:
        self._http = _Server(("127.0.0.1", 0), _Handler, simulator)
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="leap-simulator",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"


# ------------------------------------------------------------------------------------ routing


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


def _respond(
    sim: LeapSimulator, method: str, target: str, raw_body: bytes, authorization: str | None
) -> _Reply:
    path, _, raw_query = target.partition("?")
    query = parse_qs(raw_query, keep_blank_values=True)  # '+' reads as a space, as form decoding does
    body = _decode_body(raw_body)
    sim.record(RecordedRequest(method, path, raw_query, query, body, sim.now))
    fault = sim.faults.take(path, _carries_page_token(sim, path, query, body))
    if fault is not None and fault.kind not in (FaultKind.SLOW, FaultKind.TRUNCATED_BODY):
        return _fault_reply(fault, _page_token_name(sim, path))
    if fault is not None and fault.kind is FaultKind.SLOW:
        time.sleep(fault.delay_seconds)
    reply = _authorized_reply(sim, method, path, query, body, authorization)
    reply.truncate = fault is not None and fault.kind is FaultKind.TRUNCATED_BODY
    return reply


def _authorized_reply(
    sim: LeapSimulator,
    method: str,
    path: str,
    query: dict[str, list[str]],
    body: Any,
    authorization: str | None,
) -> _Reply:
    webhooks = path == wire.WEBHOOKS_PATH or path.startswith(f"{wire.WEBHOOKS_PATH}/")
    if authorization != f"{wire.AUTH_SCHEME} {sim.api_key}":
        if webhooks:
            return _webhook_error(401, "Unauthorized", "a valid API key is required")
        return _Reply(401, _problem(401, "Unauthorized"))
    if webhooks:
        return _webhooks_reply(sim, method, path.removeprefix(wire.WEBHOOKS_PATH).strip("/"), body)
    connect_path = sim.connect_wire.path
    try:
        if path == connect_path and method == "GET":
            return _Reply(200, _connect_page(sim, query))
        if path == wire.METERS_SEARCH_PATH and method == "POST":
            return _Reply(200, sim.meters_page(_meter_search(body)))
        if path in (connect_path, wire.METERS_SEARCH_PATH):
            return _Reply(405, _problem(405, "Method Not Allowed", {"method": method}))
        return _Reply(404, _problem(404, "Not Found", {"path": path}))
    except _Refusal as refusal:
        return refusal.reply
    except BadPageToken as exc:
        return _Reply(400, _problem(400, "Invalid page token", {_page_token_name(sim, path): str(exc)}))


def _webhooks_reply(sim: LeapSimulator, method: str, rest: str, body: Any) -> _Reply:
    """The Webhook Subscription API; ``rest`` is the path after /v1.1/webhooks ("", "<id>", "<id>/test")."""
    parts = rest.split("/") if rest else []
    try:
        match parts, method:
            case [], "GET":
                return _Reply(200, {wire.WEBHOOK_SUBSCRIPTIONS: sim.list_webhooks()})
            case [], "POST":
                return _Reply(200, {wire.WEBHOOK_SUBSCRIPTION_ID: sim.create_webhook(body)})
            case [webhook_id], "PUT":
                return _Reply(200, {wire.WEBHOOK_SUBSCRIPTION_ID: sim.update_webhook(webhook_id, body)})
            case [webhook_id], "DELETE":
                sim.delete_webhook(webhook_id)
                return _Reply(200, {wire.WEBHOOK_DELETED_MESSAGE: f"webhook {webhook_id} deleted"})
            case [webhook_id, "test"], "POST":
                return _Reply(200, sim.test_webhook(webhook_id, body))
            case [] | [_] | [_, "test"], _:
                return _webhook_error(405, "Method Not Allowed", f"{method} is not allowed here")
            case _:
                return _webhook_error(404, "Not Found", f"no such path under {wire.WEBHOOKS_PATH}")
    except WebhookBodyError as exc:
        return _webhook_error(400, "Bad Request", str(exc))
    except UnknownWebhook as exc:
        return _webhook_error(404, "Not Found", f"no webhook {exc.args[0]}")


def _webhook_error(status: int, error: str, message: str) -> _Reply:
    return _Reply(status, {wire.WEBHOOK_ERROR: error, wire.WEBHOOK_ERROR_MESSAGE: message})


def _page_token_name(sim: LeapSimulator, path: str) -> str:
    if path == wire.METERS_SEARCH_PATH:
        return wire.METERS_REQ_PAGE_TOKEN
    return sim.connect_wire.param_page_token


def _carries_page_token(sim: LeapSimulator, path: str, query: dict[str, list[str]], body: Any) -> bool:
    if path == wire.METERS_SEARCH_PATH:
        return isinstance(body, dict) and bool(body.get(wire.METERS_REQ_PAGE_TOKEN))
    return bool(query.get(sim.connect_wire.param_page_token))


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


# ------------------------------------------------------------------------- reading requests


def _connect_page(sim: LeapSimulator, query: dict[str, list[str]]) -> dict[str, Any]:
    names = sim.connect_wire
    selection = ConnectFilter(
        ref_id=_single(query, names.param_ref_id),
        start_from=_query_instant(query, names.param_start_date),
        last_interaction_from=_query_instant(query, names.param_last_interaction_date),
    )
    page_size = _page_size(query, names.param_page_size, sim.default_page_size)
    return sim.connect_page(selection, page_size, _single(query, names.param_page_token))


def _meter_search(body: Any) -> MeterSearch:
    """A Meters v2 search request, checked the way the spec constrains it."""
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
    return MeterSearch(
        page_token=token or None,
        page_size=size,
        reference_ids=_reference_ids(body.get(wire.METERS_REQ_CONNECTION_REFERENCE_IDS)),
        created_after=_body_instant(body, wire.METERS_REQ_CREATED_AFTER),
        created_before=_body_instant(body, "created_before_date_time"),
        digest=query_digest("meters", json.dumps(selector, sort_keys=True)),
    )


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
    moment = readable_instant(text)
    if moment is None:
        raise _Refusal(400, "Invalid date", {name: text})
    return moment


def _body_instant(body: dict[str, Any], name: str) -> int | None:
    text = body.get(name)
    if text is None:
        return None
    moment = readable_instant(text)
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


# ------------------------------------------------------------------------------- http.server


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

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request line http.server writes to stderr."""

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        started = time.monotonic()
        sim = self.server.simulator
        try:
            reply = _respond(sim, method, self.path, raw_body, self.headers.get(wire.AUTH_HEADER))
        except Exception as exc:  # a simulator bug: answer like Leap's 500 and keep it for the test
            sim.server_errors.append(exc)
            reply = _Reply(500, INTERNAL_ERROR_TEXT)
        if reply.drop:
            self.close_connection = True
            return
        payload = json.dumps(reply.body, separators=(",", ":")).encode()
        if self.path.partition("?")[0] == sim.connect_wire.path:
            sim.pace_connect_answer(started)  # the building above is inside the latency, not added to it
        self._write(reply, payload)

    def _write(self, reply: _Reply, payload: bytes) -> None:
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
