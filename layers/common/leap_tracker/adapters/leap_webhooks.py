"""Leap's Webhook Subscription API: list, create, update (PUT replaces every setting), delete, test.

It follows the layer's Leap conventions, from ``adapters/leap_http.py``: the bearer key from the same
provider, the same retry policy (429/5xx and network errors, backoff, Retry-After, a time budget), a
401/403 is fatal with a message naming the environment. Only the requests that are safe to repeat are
retried on an error answer: GET, PUT and DELETE. A create (POST) is not, since a retried create whose
first try did reach Leap would leave two subscriptions; nor is a test, which sends an event each time.
This API answers errors as ``{"error": ..., "message": ...}``, not the Connect API's problem shape.

Only the operator's command (``leap-tracker webhooks``) uses it: no function registers itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from leap_tracker.adapters.leap_http import (
    AUTH_STATUSES,
    RETRY_STATUSES,
    ApiKeyProvider,
    LeapSession,
    auth_refusal_message,
    json_answer,
    json_or_none,
    send,
)
from leap_tracker.config import LeapApiSettings
from leap_tracker.leap import wire
from leap_tracker.leap.api import LeapAuthError, LeapInvalidResponse, LeapRequestError, LeapUnavailable

IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class WebhookHeader:
    """A custom header Leap sends with every delivery (the receiver's secret is one)."""

    name: str
    value: str = field(repr=False)

    def wire(self) -> dict[str, str]:
        return {wire.WEBHOOK_HEADER_NAME: self.name, wire.WEBHOOK_HEADER_VALUE: self.value}


@dataclass(frozen=True, slots=True)
class WebhookSubscription:
    webhook_id: str
    receiver_url: str
    event_types: tuple[str, ...]
    headers: tuple[WebhookHeader, ...]


@dataclass(frozen=True, slots=True)
class WebhookTestResult:
    """Leap's answer to a test: did the receiver accept the sample event, and what it answered."""

    is_successful: bool
    status_code: int | None
    error: str | None
    response_time_ms: float | None


class LeapWebhookRequestError(LeapRequestError):
    """A 4xx Leap refused (auth aside), with the ``error`` and ``message`` it sent."""

    def __init__(self, text: str, status: int, error: str | None, message: str | None) -> None:
        super().__init__(text)
        self.status = status
        self.error = error
        self.message = message


class LeapWebhookNotFound(LeapWebhookRequestError):
    """404: no subscription with that id (in this Leap environment)."""


class LeapWebhooksClient(LeapSession):
    """The Webhook Subscription API over HTTP (a context manager: it closes its session)."""

    def __init__(
        self,
        settings: LeapApiSettings,
        key_provider: ApiKeyProvider | None = None,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(settings, key_provider, session, methods=IDEMPOTENT_METHODS)

    def subscriptions(self) -> list[WebhookSubscription]:
        answer = _object(self._call("GET", wire.WEBHOOKS_PATH), "the list answer")
        listed = answer.get(wire.WEBHOOK_SUBSCRIPTIONS)
        if not isinstance(listed, list):
            raise LeapInvalidResponse(f"the list answer's {wire.WEBHOOK_SUBSCRIPTIONS!r} is not a list")
        return [_subscription(item, position) for position, item in enumerate(listed)]

    def create(self, receiver_url: str, event_types: Sequence[str], headers: Sequence[WebhookHeader]) -> str:
        """A new subscription; its webhook_id."""
        body = _settings_body(receiver_url, event_types, headers)
        return _webhook_id(self._call("POST", wire.WEBHOOKS_PATH, body))

    def update(
        self,
        webhook_id: str,
        receiver_url: str,
        event_types: Sequence[str],
        headers: Sequence[WebhookHeader],
    ) -> str:
        """Replace every setting of a subscription (what is not sent is gone); its webhook_id."""
        body = _settings_body(receiver_url, event_types, headers)
        return _webhook_id(self._call("PUT", wire.webhook_path(webhook_id), body))

    def delete(self, webhook_id: str) -> str:
        """Delete a subscription; Leap's message."""
        answer = self._call("DELETE", wire.webhook_path(webhook_id))
        message = answer.get(wire.WEBHOOK_DELETED_MESSAGE) if isinstance(answer, dict) else None
        return str(message) if message is not None else "deleted"

    def send_test(self, webhook_id: str, payload: Mapping[str, Any]) -> WebhookTestResult:
        """Ask Leap to send ``payload`` (an event's payload) to the subscription's receiver now."""
        answer = _object(self._call("POST", wire.webhook_test_path(webhook_id), dict(payload)), "test")
        successful = answer.get(wire.WEBHOOK_TEST_IS_SUCCESSFUL)
        if not isinstance(successful, bool):
            raise LeapInvalidResponse(
                f"the test answer's {wire.WEBHOOK_TEST_IS_SUCCESSFUL!r} is not a boolean"
            )
        status = answer.get(wire.WEBHOOK_TEST_STATUS_CODE)
        elapsed = answer.get(wire.WEBHOOK_TEST_RESPONSE_TIME_MS)
        error = answer.get(wire.WEBHOOK_TEST_ERROR)
        return WebhookTestResult(
            is_successful=successful,
            status_code=status if isinstance(status, int) and not isinstance(status, bool) else None,
            error=None if error is None else str(error),
            response_time_ms=float(elapsed) if isinstance(elapsed, int | float) else None,
        )

    # --- HTTP -----------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = send(self._session, method, f"{self._base_url}{path}", self._settings, self._auth, body)
        status = response.status_code
        where = f"{method} {path}"
        if status in AUTH_STATUSES:
            raise LeapAuthError(auth_refusal_message(self._settings, status))
        if 200 <= status < 300:
            return json_answer(response, where)
        if status in RETRY_STATUSES or status >= 500:
            retried = method in IDEMPOTENT_METHODS
            raise LeapUnavailable(
                f"{where}: Leap answered {status}" + (" when retries ran out" if retried else "")
            )
        if 400 <= status < 500:
            raise _refusal(where, response)
        raise LeapInvalidResponse(f"{where}: unexpected HTTP status {status}")


def _settings_body(
    receiver_url: str, event_types: Sequence[str], headers: Sequence[WebhookHeader]
) -> dict[str, Any]:
    if not event_types:
        raise ValueError("a subscription needs at least one event type")
    return {
        wire.WEBHOOK_SUBSCRIPTION_RECEIVER_URL: receiver_url,
        wire.WEBHOOK_SUBSCRIPTION_EVENT_TYPES: list(dict.fromkeys(event_types)),
        wire.WEBHOOK_SUBSCRIPTION_HEADERS: [header.wire() for header in headers],
    }


def _refusal(where: str, response: requests.Response) -> LeapWebhookRequestError:
    body = json_or_none(response)
    problem = body if isinstance(body, dict) else {}
    error, message = problem.get(wire.WEBHOOK_ERROR), problem.get(wire.WEBHOOK_ERROR_MESSAGE)
    status = response.status_code
    text = f"{where}: Leap refused the request ({status}" + (f" {error})" if error else ")")
    if message:
        text += f": {message}"
    kind = LeapWebhookNotFound if status == 404 else LeapWebhookRequestError
    return kind(
        text,
        status=status,
        error=None if error is None else str(error),
        message=None if message is None else str(message),
    )


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LeapInvalidResponse(f"{what} is {type(value).__name__}, not a JSON object")
    return value


def _webhook_id(answer: Any) -> str:
    webhook_id = _object(answer, "the answer").get(wire.WEBHOOK_SUBSCRIPTION_ID)
    if not isinstance(webhook_id, str) or not webhook_id:
        raise LeapInvalidResponse(f"the answer has no {wire.WEBHOOK_SUBSCRIPTION_ID!r}")
    return webhook_id


def _subscription(item: Any, position: int) -> WebhookSubscription:
    where = f"{wire.WEBHOOK_SUBSCRIPTIONS}[{position}]"
    listed = _object(item, where)
    webhook_id = listed.get(wire.WEBHOOK_SUBSCRIPTION_ID)
    url = listed.get(wire.WEBHOOK_SUBSCRIPTION_RECEIVER_URL)
    types = listed.get(wire.WEBHOOK_SUBSCRIPTION_EVENT_TYPES) or []
    headers = listed.get(wire.WEBHOOK_SUBSCRIPTION_HEADERS) or []
    if not isinstance(webhook_id, str) or not isinstance(url, str):
        raise LeapInvalidResponse(f"{where} lacks its webhook_id or receiver_url")
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise LeapInvalidResponse(f"{where}.event_types is not a list of strings")
    if not isinstance(headers, list):
        raise LeapInvalidResponse(f"{where}.headers is not a list")
    return WebhookSubscription(
        webhook_id=webhook_id,
        receiver_url=url,
        event_types=tuple(types),
        headers=tuple(_header(header, f"{where}.headers") for header in headers),
    )


def _header(item: Any, where: str) -> WebhookHeader:
    header = _object(item, where)
    name, value = header.get(wire.WEBHOOK_HEADER_NAME), header.get(wire.WEBHOOK_HEADER_VALUE)
    if not isinstance(name, str):
        raise LeapInvalidResponse(f"{where}: a header without a name")
    # Leap may leave a value out of the list answer: kept empty rather than refused.
    return WebhookHeader(name, value if isinstance(value, str) else "")
