"""Fixtures around the Leap simulator (devtools.leap_simulator) and the Leap HTTP client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.leap_simulator import LeapSimulator
from leap_tracker.adapters.leap_http import LeapHttpClient
from leap_tracker.config import LeapApiSettings
from tests.fakes import fast_leap_settings

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
        return fast_leap_settings(leap_simulator, **overrides)

    return make


@pytest.fixture
def leap_client(leap_settings: Callable[..., LeapApiSettings]) -> Iterator[LeapHttpClient]:
    with LeapHttpClient(leap_settings()) as client:
        yield client
