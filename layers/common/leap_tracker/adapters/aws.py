"""boto3 clients, created on first use (never at import) with one retry and timeout policy, and the
error code of a failed call."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

# Standard retry mode: exponential backoff with jitter on throttling and transient errors.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=3,
    read_timeout=10,
)


def aws_client(service: str, session: boto3.session.Session | None = None) -> Any:
    """A client for ``service``; pass a session to share credentials/region (tests, local runner)."""
    return (session or boto3.session.Session()).client(service, config=CLIENT_CONFIG)


def error_code(error: BaseException) -> str:
    """The AWS error code of a failed call (``ConditionalCheckFailedException``, ``Throttling``...);
    empty when it is not a service error (no answer, or another kind of exception)."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""
