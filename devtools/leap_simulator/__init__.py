"""A local stand-in for Leap's Connect, Meters v2 and Webhook Subscription APIs (a development tool:
never in the layer), which also pushes webhooks to the receivers registered with it.

with LeapSimulator(seed=7, customers=300) as sim:
    client = LeapHttpClient(settings_for(sim.base_url), key_provider=lambda: sim.api_key)
    sim.advance(hours=30)
    ...
    while (due := sim.next_webhook_at()) is not None and due <= until:
        sim.set_time(due)
        sim.push_due_webhooks()
"""

from devtools.leap_simulator.faults import (
    Fault,
    FaultKind,
    dropped_connection,
    expired_page_token,
    http_error,
    rate_limited,
    server_error,
    slow,
    truncated_body,
)
from devtools.leap_simulator.population import UNKNOWN_ERROR_CODE, connection_status
from devtools.leap_simulator.server import INTERNAL_ERROR_TEXT
from devtools.leap_simulator.simulator import (
    DEFAULT_API_KEY,
    DEFAULT_START,
    LeapSimulator,
    ListingOrder,
    PacedAnswer,
    RecordedRequest,
)
from devtools.leap_simulator.webhooks import (
    Outcome,
    Transport,
    WebhookAttempt,
    WebhookDelivery,
    WebhookFault,
    WebhookFaults,
    WebhookTest,
    post_with_requests,
)

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_START",
    "INTERNAL_ERROR_TEXT",
    "UNKNOWN_ERROR_CODE",
    "Fault",
    "FaultKind",
    "LeapSimulator",
    "ListingOrder",
    "Outcome",
    "PacedAnswer",
    "RecordedRequest",
    "Transport",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookFault",
    "WebhookFaults",
    "WebhookTest",
    "connection_status",
    "dropped_connection",
    "expired_page_token",
    "http_error",
    "post_with_requests",
    "rate_limited",
    "server_error",
    "slow",
    "truncated_body",
]
