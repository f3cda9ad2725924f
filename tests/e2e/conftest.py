"""End-to-end fixtures: the whole product from template.yaml, against the Leap simulator.

- ``leap``: the Leap simulator (devtools/leap_simulator) on 127.0.0.1, starting at ``E2E_START``;
  its clock follows the cloud's (every ``cloud.advance`` sets it to the cloud's now).
- ``webhook``: a partner's Standard Webhooks endpoint (devtools/webhook_receiver) on 127.0.0.1.
- ``cloud``: a :class:`~devtools.local_runner.LocalCloud` over template.yaml in moto, its simulated
  clock at ``E2E_START``, the Leap API key and the webhook signing secret stored in Secrets Manager
  behind their template parameters, ``LEAP_API_BASE_URL`` pointing at the simulator and the
  outreach channel set to the webhook, at the receiver.
- ``default_cloud``: the same stack with the outreach parameters at their defaults (the topic
  channel: outreach requests land in the stack's ``OutreachRequestsQueue``).

    def test_a_completion_opens_a_meter_watch(cloud, leap):
        cloud.fire_schedule("PollerFunction")
        cloud.drain()
        cloud.advance(hours=1)
        ...

Every test under tests/e2e is marked ``e2e``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from devtools.leap_simulator import DEFAULT_START as LEAP_START
from devtools.leap_simulator import LeapSimulator
from devtools.local_runner import LocalCloud
from devtools.webhook_receiver import WebhookReceiver

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
E2E_START = LEAP_START  # both clocks start at the same instant
E2E_SEED = 7
E2E_CUSTOMERS = 60  # small: each test stays within seconds


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def leap() -> Iterator[LeapSimulator]:
    with LeapSimulator(seed=E2E_SEED, customers=E2E_CUSTOMERS, start=E2E_START) as simulator:
        yield simulator


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def cloud(leap: LeapSimulator, webhook: WebhookReceiver) -> Iterator[LocalCloud]:
    with LocalCloud(
        TEMPLATE,
        start=E2E_START,
        parameters={
            "LeapApiBaseUrl": leap.base_url,
            "OutreachChannels": "webhook",
            "OutreachWebhookUrl": webhook.url,
        },
        secrets={"LeapApiKeySecretArn": leap.api_key, "OutreachWebhookSecretArn": webhook.secret},
    ) as local:
        local.on_advance(lambda now, _delta: _follow(leap, now))
        yield local


@pytest.fixture
def default_cloud(leap: LeapSimulator) -> Iterator[LocalCloud]:
    """The stack with every outreach parameter at its template default (no webhook)."""
    with LocalCloud(
        TEMPLATE,
        start=E2E_START,
        parameters={"LeapApiBaseUrl": leap.base_url},
        secrets={"LeapApiKeySecretArn": leap.api_key},
    ) as local:
        local.on_advance(lambda now, _delta: _follow(leap, now))
        yield local


def _follow(leap: LeapSimulator, now: datetime) -> None:
    """Keep the simulator's clock on the cloud's: Leap answers as of the same instant."""
    leap.set_time(now)
