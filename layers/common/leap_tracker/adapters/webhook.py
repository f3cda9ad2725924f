"""The ``webhook`` channel: a POST to the partner's endpoint signed per the Standard Webhooks spec.

Signing is a few lines, so it is written here rather than shipping the ``standardwebhooks`` package in
the layer; the tests check it against that package and the spec's published test vector.

- ``webhook-id``: the message's id, derived from its dedupe key (a resend reuses it: deduplicate on it);
- ``webhook-timestamp``: seconds since the epoch of THIS attempt (receivers reject stale ones);
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``, where the key is
  the base64-decoded part of the ``whsec_...`` secret.

Any answer but 2xx (redirects included: the signed body is never forwarded), a timeout or a connection
error raises :class:`WebhookDeliveryError`, and the queue retries the message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable

import requests

from leap_tracker.outreach.messages import OutreachMessage

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
USER_AGENT = "leap-connect-tracker-outreach/1"
CONNECT_TIMEOUT_CAP_SECONDS = 3.05


class WebhookSecretError(ValueError):
    """The signing secret is not ``whsec_<base64>`` (or plain base64)."""


class WebhookDeliveryError(RuntimeError):
    """The endpoint did not take the message (status, timeout or connection error)."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_`` + base64 of the key bytes)."""
    encoded = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookSecretError("the webhook secret must be whsec_ followed by base64") from exc
    if not key:
        raise WebhookSecretError("the webhook secret is empty")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value for one attempt."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(key: bytes, msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: sign(key, msg_id, timestamp, body),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }


class WebhookChannel:
    """POSTs each message to one endpoint. The secret is fetched lazily (and may rotate: re-read)."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: Callable[[], str],
        timeout_seconds: float,
        session: requests.Session | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._secret = secret
        self._timeout = (min(CONNECT_TIMEOUT_CAP_SECONDS, timeout_seconds), timeout_seconds)
        self._session = session or requests.Session()
        self._wall_clock = wall_clock  # the attempt's real time: receivers check it against theirs
        self.deliveries = 0

    def deliver(self, message: OutreachMessage) -> None:
        headers = signed_headers(
            secret_key(self._secret()), message.webhook_id, int(self._wall_clock()), message.body
        )
        try:
            response = self._session.post(
                self._url,
                data=message.body.encode(),
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise WebhookDeliveryError(f"{type(exc).__name__} posting {message.webhook_id}") from exc
        if not 200 <= response.status_code < 300:
            raise WebhookDeliveryError(f"endpoint answered {response.status_code} to {message.webhook_id}")
        self.deliveries += 1

    def close(self) -> None:
        self._session.close()
