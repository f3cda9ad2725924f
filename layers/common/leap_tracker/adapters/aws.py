"""boto3 clients, created on first use (never at import) with one retry and timeout policy."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

# Standard retry mode: exponential backoff with jitter on throttling and transient errors.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=3,
    read_timeout=10,
)


def aws_client(service: str, session: boto3.session.Session | None = None) -> Any:
    """A client for ``service``; pass a session to share credentials/region (tests, local runner)."""
    return (session or boto3.session.Session()).client(service, config=CLIENT_CONFIG)
