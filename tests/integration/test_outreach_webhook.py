"""The webhook channel against the local receiver (which verifies with the ``standardwebhooks`` package)."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest

from devtools.webhook_receiver import WebhookReceiver, new_secret
from leap_tracker.adapters.webhook import WebhookChannel, WebhookDeliveryError
from leap_tracker.outreach.messages import OutreachMessage

MESSAGE = OutreachMessage.of(
    {"type": "outreach.requested", "id": "e1", "data": {"reason": "not_started", "ref_id": "Réf-1"}},
    "msg_abc",
)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def channel(url: str, secret: str, timeout: float = 2.0) -> WebhookChannel:
    return WebhookChannel(url, lambda: secret, timeout)


def test_a_delivery_verifies_and_carries_the_event(receiver: WebhookReceiver) -> None:
    channel(receiver.url, receiver.secret).deliver(MESSAGE)
    channel(receiver.url, receiver.secret).deliver(MESSAGE)  # a resend: same webhook-id

    assert [d.webhook_id for d in receiver.deliveries] == ["msg_abc", "msg_abc"]
    assert list(receiver.events()) == [MESSAGE.event]
    assert receiver.summary() == {
        "requests": 2,
        "rejected_signatures": 0,
        "failed_on_purpose": 0,
        "messages": 1,
        "resends_of_a_message": 1,
        "by_reason": {"not_started": 1},
    }


def test_a_wrong_secret_is_rejected_and_is_a_failure(receiver: WebhookReceiver) -> None:
    with pytest.raises(WebhookDeliveryError, match="401"):
        channel(receiver.url, new_secret()).deliver(MESSAGE)

    (rejected,) = receiver.rejected()
    assert "signature" in rejected.error.lower()
    assert receiver.accepted() == []


def test_an_error_answer_is_a_failure(receiver: WebhookReceiver) -> None:
    receiver.fail_next(1, status=500)

    with pytest.raises(WebhookDeliveryError, match="500"):
        channel(receiver.url, receiver.secret).deliver(MESSAGE)
    channel(receiver.url, receiver.secret).deliver(MESSAGE)

    assert [d.status for d in receiver.deliveries] == [500, 204]


def test_a_timeout_is_a_failure(receiver: WebhookReceiver) -> None:
    receiver.hang_next(1)

    with pytest.raises(WebhookDeliveryError, match="Timeout"):
        channel(receiver.url, receiver.secret, timeout=0.2).deliver(MESSAGE)


def test_a_refused_connection_is_a_failure() -> None:
    with WebhookReceiver() as gone:
        url, secret = gone.url, gone.secret
    with pytest.raises(WebhookDeliveryError, match="ConnectionError"):
        channel(url, secret).deliver(MESSAGE)


def test_a_redirect_is_not_followed() -> None:
    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(WebhookDeliveryError, match="307"):
            channel(f"http://127.0.0.1:{server.server_address[1]}/hook", new_secret()).deliver(MESSAGE)
    finally:
        server.shutdown()
        server.server_close()
