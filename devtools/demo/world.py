"""The local world: the Leap simulator, template.yaml in the local runner, a partner's webhook endpoint
and two partner queues, each a subscriber stack deployed from subscriber/template.yaml next to the
main one; where the functions' own output goes; the rules the functions run with."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from devtools.demo.model import (
    EMITTER,
    EVENTS_TOPIC,
    FILTERED_POLICY,
    METER_SWEEP,
    OUTREACH,
    DemoConfig,
)
from devtools.leap_simulator import DEFAULT_START as CAMPAIGN_START
from devtools.leap_simulator import LeapSimulator
from devtools.local_runner import LocalCloud
from devtools.webhook_receiver import WebhookReceiver
from leap_tracker.config import MeterWatchSettings, Settings, load_settings
from leap_tracker.events.diff import DiffRules
from subscriber.filter_policies import named_policy

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = PROJECT_ROOT / "template.yaml"
# The partner's two subscriber stacks: every event, and the ready policy FILTERED_POLICY.
EVERYTHING_STACK = "partner-everything"
FILTERED_STACK = "partner-filtered"


@dataclass(frozen=True, slots=True)
class World:
    """The three local parts, wired as tests/e2e/conftest.py wires them."""

    leap: LeapSimulator
    webhook: WebhookReceiver
    cloud: LocalCloud
    everything: str  # partner queue URLs
    filtered: str
    filter_policy: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rules:
    """The configuration the functions actually run with (template.yaml's environment)."""

    settings: Settings  # the outreach function's
    meters: MeterWatchSettings  # the meter sweep's
    diff: DiffRules  # the emitter's

    @property
    def actionable_delay(self) -> timedelta:
        return timedelta(minutes=self.settings.actionable_delay_minutes)


DEMO_HOLDOUT_PERCENT = 50


@contextmanager
def bring_up(config: DemoConfig) -> Iterator[World]:
    click_window = timedelta(days=config.click_days)
    leap = LeapSimulator(config.seed, config.customers, start=CAMPAIGN_START, click_window=click_window)
    with leap, WebhookReceiver() as webhook:
        cloud = LocalCloud(
            TEMPLATE,
            start=config.start,
            parameters={
                "LeapApiBaseUrl": leap.base_url,
                "OutreachChannels": "webhook",  # the demo's partner takes outreach on a signed webhook
                "OutreachWebhookUrl": webhook.url,
                # Half held out (the default is 10%): three simulated days then hold enough customers
                # on both sides of the comparison for the report to conclude (docs/demo.md).
                "OutreachHoldoutPercent": str(DEMO_HOLDOUT_PERCENT),
            },
            secrets={"LeapApiKeySecretArn": leap.api_key, "OutreachWebhookSecretArn": webhook.secret},
        )
        with cloud:
            leap.set_time(cloud.now())
            cloud.on_advance(lambda now, _delta: leap.set_time(now))  # Leap answers as of the same instant
            topic = {"EventsTopicArn": cloud.resources.topic_arn(EVENTS_TOPIC)}
            everything = cloud.deploy_subscriber(EVERYTHING_STACK, topic)  # no filter policy
            filtered = cloud.deploy_subscriber(FILTERED_STACK, topic | {"FilterPolicyName": FILTERED_POLICY})
            yield World(
                leap=leap,
                webhook=webhook,
                cloud=cloud,
                everything=everything.queue_url,
                filtered=filtered.queue_url,
                filter_policy=named_policy(FILTERED_POLICY).policy,
            )


class _FunctionOutput(io.TextIOBase):
    """Where the functions' stdout goes during the run: their JSON log lines and EMF metrics (one
    document per invocation) would bury the demo's own lines. Discarded, or appended to a file.

    One object for the whole process: Powertools' Logger keeps the stream it found at import.
    ``tap`` sees the text too (the cost measurement counts log bytes and EMF metrics).
    """

    def __init__(self) -> None:
        super().__init__()
        self.target: TextIO | None = None
        self.tap: Callable[[str], None] | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.target is not None:
            self.target.write(text)
        if self.tap is not None:
            self.tap(text)
        return len(text)


_FUNCTION_OUTPUT = _FunctionOutput()


@contextmanager
def functions_output_to(path: Path | None, tap: Callable[[str], None] | None = None) -> Iterator[None]:
    with ExitStack() as stack:
        _FUNCTION_OUTPUT.target = stack.enter_context(path.open("a", encoding="utf-8")) if path else None
        _FUNCTION_OUTPUT.tap = tap
        stack.callback(setattr, _FUNCTION_OUTPUT, "target", None)
        stack.callback(setattr, _FUNCTION_OUTPUT, "tap", None)
        stack.enter_context(redirect_stdout(_FUNCTION_OUTPUT))
        yield


def running_rules(cloud: LocalCloud) -> Rules:
    def settings_of(function: str) -> Settings:
        return load_settings(cloud.functions[function].full_environment())

    return Rules(
        settings=settings_of(OUTREACH),
        meters=settings_of(METER_SWEEP).meters,
        diff=DiffRules.from_settings(settings_of(EMITTER)),
    )
