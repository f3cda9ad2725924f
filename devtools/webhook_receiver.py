"""A partner's webhook endpoint, locally: verifies Standard Webhooks signatures and records deliveries.

Verification uses the independent ``standardwebhooks`` package (the spec's reference library), never
this project's signer, so a passing test means any compliant receiver would accept the messages.
It listens on 127.0.0.1 only. Tests and ``make demo`` use it; it never ships in the Lambda layer.

    python -m devtools.webhook_receiver --port 8088 --secret whsec_...   # prints what it receives
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

HOST = "127.0.0.1"
HANG_LIMIT_SECONDS = 10.0  # a hung request never outlives this (the sender times out long before)


def new_secret() -> str:
    """A fresh ``whsec_`` secret (24 random bytes, base64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request the endpoint received."""

    webhook_id: str
    timestamp: str
    verified: bool
    status: int  # what the endpoint answered
    body: str
    error: str = ""

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def sent_at(self) -> datetime:
        """When the sender signed this attempt (its webhook-timestamp)."""
        return datetime.fromtimestamp(int(self.timestamp), UTC)


class WebhookReceiver:
    """Start it (or use it as a context manager), point the sender at :attr:`url`, read :attr:`deliveries`."""

    def __init__(self, secret: str | None = None, port: int = 0, path: str = "/outreach") -> None:
        self.secret = secret or new_secret()
        self.path = path
        self._verifier = Webhook(self.secret)
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._planned: list[int | str] = []  # statuses to answer next, or "hang"
        self._release = threading.Event()
        self._server = ThreadingHTTPServer((HOST, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- behaviour ------------------------------------------------------------------------------

    def fail_next(self, times: int = 1, status: int = HTTPStatus.SERVICE_UNAVAILABLE) -> None:
        """Answer the next ``times`` valid requests with ``status`` (after recording them)."""
        with self._lock:
            self._planned += [int(status)] * times

    def hang_next(self, times: int = 1) -> None:
        """Hold the next ``times`` requests without answering (until stopped), so the sender times out."""
        with self._lock:
            self._planned += ["hang"] * times

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Answer the next ``times`` valid requests 2xx, but only after ``seconds`` (a slow endpoint)."""
        with self._lock:
            self._planned += [f"delay:{seconds}"] * times

    def clear_planned(self) -> int:
        """Drop the planned answers not used yet; how many there were."""
        with self._lock:
            unused, self._planned = len(self._planned), []
        return unused

    # --- what was received ----------------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def accepted(self) -> list[Delivery]:
        """Verified deliveries answered 2xx, one per webhook-id (a receiver deduplicates on it)."""
        unique: dict[str, Delivery] = {}
        for delivery in self.deliveries:
            if delivery.verified and 200 <= delivery.status < 300:
                unique.setdefault(delivery.webhook_id, delivery)
        return list(unique.values())

    def rejected(self) -> list[Delivery]:
        return [d for d in self.deliveries if not d.verified]

    def events(self) -> Iterator[dict[str, Any]]:
        for delivery in self.accepted():
            yield delivery.event

    def summary(self) -> dict[str, Any]:
        """Plain numbers for the demo: what arrived, what verified, per reason, resends of one id."""
        deliveries = self.deliveries
        accepted = self.accepted()
        return {
            "requests": len(deliveries),
            "rejected_signatures": len(self.rejected()),
            "failed_on_purpose": sum(1 for d in deliveries if d.verified and not 200 <= d.status < 300),
            "messages": len(accepted),
            "resends_of_a_message": sum(1 for d in deliveries if d.verified and 200 <= d.status < 300)
            - len(accepted),
            "by_reason": dict(Counter(d.event.get("data", {}).get("reason") for d in accepted)),
        }

    # --- the server -----------------------------------------------------------------------------

    def _receive(self, path: str, headers: dict[str, str], body: bytes) -> int:
        text = body.decode("utf-8", errors="replace")
        webhook_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        if path != self.path:
            return self._record(
                Delivery(webhook_id, timestamp, False, HTTPStatus.NOT_FOUND, text, "wrong path")
            )
        try:
            self._verifier.verify(text, headers)
        except (WebhookVerificationError, ValueError) as exc:
            return self._record(
                Delivery(webhook_id, timestamp, False, HTTPStatus.UNAUTHORIZED, text, str(exc))
            )
        with self._lock:
            planned = self._planned.pop(0) if self._planned else HTTPStatus.NO_CONTENT
        if planned == "hang":
            self._release.wait(HANG_LIMIT_SECONDS)
            planned = HTTPStatus.GATEWAY_TIMEOUT
        elif isinstance(planned, str) and planned.startswith("delay:"):
            self._release.wait(float(planned.partition(":")[2]))
            planned = HTTPStatus.NO_CONTENT
        return self._record(Delivery(webhook_id, timestamp, True, int(planned), text))

    def _record(self, delivery: Delivery) -> int:
        with self._lock:
            self._deliveries.append(delivery)
        return delivery.status

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = receiver._receive(self.path, headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read deliveries
                return

        return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="A local Standard Webhooks receiver that verifies signatures."
    )
    parser.add_argument("--port", type=int, default=8088)
    parser.add_argument("--secret", default="", help="whsec_... (a new one is made and printed if omitted)")
    args = parser.parse_args(argv)
    receiver = WebhookReceiver(args.secret or None, port=args.port)
    receiver.start()
    print(f"listening on {receiver.url}\nsecret: {receiver.secret}\n(Ctrl-C to stop)", flush=True)
    seen = 0
    stop = threading.Event()
    try:
        while not stop.wait(0.5):
            for delivery in receiver.deliveries[seen:]:
                state = "verified" if delivery.verified else f"REJECTED ({delivery.error})"
                data = json.loads(delivery.body).get("data", {}) if delivery.verified else {}
                about = f"{data.get('reason')} {data.get('ref_id')}"
                print(f"{delivery.webhook_id} {state} -> {delivery.status}: {about}", flush=True)
            seen = len(receiver.deliveries)
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
