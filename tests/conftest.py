"""Shared test set-up: every test runs with fake AWS credentials, the Powertools variables and a log
hash key set.

Nothing here reaches AWS: moto intercepts boto3 in the tests that use it, and these variables make
sure a test that forgets `mock_aws` fails on credentials instead of touching a real account.
"""

from __future__ import annotations

import os

import pytest

from tests.fakes.log_key import LOG_HASH_KEY

TEST_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # moto's DynamoDB Streams answer 404 on account-id endpoints with current botocore.
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "POWERTOOLS_SERVICE_NAME": "leap-connect-tracker",
    "POWERTOOLS_METRICS_NAMESPACE": "LeapConnectTracker",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
    # The stand-in for the log hash key secret (local runs only), so a handler built from the
    # environment has one; a test of the missing key removes it.
    "LOG_HASH_KEY": LOG_HASH_KEY,
}

# Set at import so module-level Powertools objects created during collection see them too.
for _name, _value in TEST_ENVIRONMENT.items():
    os.environ[_name] = _value


@pytest.fixture(autouse=True)
def _aws_test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TEST_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
