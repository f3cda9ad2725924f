"""Fixtures around the Leap simulator (devtools.leap_simulator) and the Leap HTTP client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from devtools.leap_simulator import LeapSimulator
from leap_tracker.adapters.leap_http import LeapHttpClient
from leap_tracker.config import LeapApiSettings

SIMULATOR_SEED = 7
SIMULATOR_CUSTOMERS = 300


@pytest.fixture
def leap_simulator() -> Iterator[LeapSimulator]:
    """A running simulator (seed 7, 300 customers) at its start time; stopped after the test."""
    with LeapSimulator(seed=SIMULATOR_SEED, customers=SIMULATOR_CUSTOMERS) as sim:
        yield sim


@pytest.fixture
def leap_settings(leap_simulator: LeapSimulator) -> Callable[..., LeapApiSettings]:
    """Client settings pointing at the simulator, with test-sized timeouts and backoff; override any."""

    def make(**overrides: Any) -> LeapApiSettings:
        fast = LeapApiSettings(
            base_url=leap_simulator.base_url,
            api_key=leap_simulator.api_key,
            connect_timeout_seconds=1.0,
            read_timeout_seconds=2.0,
            max_retries=3,
            max_retry_seconds=5.0,
            backoff_factor=0.001,
        )
        return replace(fast, **overrides)

    return make


@pytest.fixture
def leap_client(leap_settings: Callable[..., LeapApiSettings]) -> Iterator[LeapHttpClient]:
    with LeapHttpClient(leap_settings()) as client:
        yield client
