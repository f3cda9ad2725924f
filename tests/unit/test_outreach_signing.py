"""The Standard Webhooks signer, checked against the spec's published vector and the reference package;
and the deferral arithmetic."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from leap_tracker.adapters.webhook import WebhookSecretError, secret_key, sign, signed_headers
from leap_tracker.outreach import deferral

# The test vector published with the Standard Webhooks specification.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = '{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_signer_reproduces_the_published_test_vector() -> None:
    assert sign(secret_key(VECTOR_SECRET), VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_the_signer_fails_the_vector_with_any_other_input() -> None:
    key = secret_key(VECTOR_SECRET)

    assert sign(key, VECTOR_ID, VECTOR_TIMESTAMP + 1, VECTOR_BODY) != VECTOR_SIGNATURE
    assert sign(key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY.replace(" ", "")) != VECTOR_SIGNATURE


def test_the_reference_package_accepts_our_headers() -> None:
    body = '{"type":"outreach.requested","data":{"ref_id":"Ref é"}}'
    headers = signed_headers(secret_key(VECTOR_SECRET), "msg_1", int(time.time()), body)

    assert Webhook(VECTOR_SECRET).verify(body, headers) == {
        "type": "outreach.requested",
        "data": {"ref_id": "Ref é"},
    }


def test_the_reference_package_rejects_a_tampered_body_or_another_secret() -> None:
    body = '{"a":1}'
    headers = signed_headers(secret_key(VECTOR_SECRET), "msg_1", int(time.time()), body)

    with pytest.raises(WebhookVerificationError):
        Webhook(VECTOR_SECRET).verify('{"a":2}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(body, headers)


def test_a_plain_base64_secret_works_too_and_garbage_does_not() -> None:
    assert secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == secret_key(VECTOR_SECRET)
    for bad in ("whsec_", "whsec_not base64!", ""):
        with pytest.raises(WebhookSecretError):
            secret_key(bad)


# --- deferral -------------------------------------------------------------------------------------

NOW = datetime(2025, 3, 5, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("wait", "seconds"),
    [
        (timedelta(minutes=59, seconds=30), 3570),
        (timedelta(milliseconds=10), 1),
        (timedelta(0), 1),
        (timedelta(hours=30), deferral.MAX_VISIBILITY_SECONDS),
    ],
)
def test_a_deferral_waits_until_actionable_within_sqs_limits(wait: timedelta, seconds: int) -> None:
    assert deferral.visibility_seconds(NOW + wait, NOW) == seconds


def test_deferrals_hand_over_before_the_dead_letter_queue() -> None:
    max_receive_count = 8  # template.yaml: OutreachQueue RedrivePolicy
    assert not deferral.hand_over_to_sweep(1)
    assert deferral.hand_over_to_sweep(deferral.HAND_OVER_AT_RECEIVE)
    assert max_receive_count > deferral.HAND_OVER_AT_RECEIVE


def test_queue_url_from_the_event_source_arn() -> None:
    url = deferral.queue_url(
        "https://sqs.us-east-1.amazonaws.com", "arn:aws:sqs:us-east-1:123456789012:MyQueue"
    )

    assert url == "https://sqs.us-east-1.amazonaws.com/123456789012/MyQueue"
    with pytest.raises(ValueError, match="not an SQS queue ARN"):
        deferral.queue_url("https://sqs", "arn:aws:sns:us-east-1:123456789012:topic")
