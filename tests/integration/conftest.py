"""Fixtures of the integration tests: moto's DynamoDB with the table as template.yaml declares it,
the Leap simulator and the Leap HTTP client pointing at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devtools.leap_simulator import LeapSimulator
from devtools.template_tables import create_connections_table
from leap_tracker.adapters.aws import aws_client
from leap_tracker.adapters.leap_http import LeapHttpClient
from leap_tracker.config import LeapApiSettings
from tests.fakes.leap import fast_leap_settings

SIMULATOR_SEED = 7
SIMULATOR_CUSTOMERS = 300

_SESSION = boto3.session.Session(region_name="us-east-1")  # reused: loading the service model is slow


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    """A DynamoDB client on moto (made as the handlers make theirs), for the test's duration."""
    with mock_aws():
        yield aws_client("dynamodb", _SESSION)


@pytest.fixture
def connections_table(dynamodb: Any) -> str:
    """The connections table, created as template.yaml declares it; its name."""
    return create_connections_table(dynamodb)


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
