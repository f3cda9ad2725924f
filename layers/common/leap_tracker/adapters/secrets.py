"""Secrets for the adapters: read from Secrets Manager when an ARN is configured, else a local value."""

from __future__ import annotations

from collections.abc import Callable

from leap_tracker.config import ConfigError

SecretProvider = Callable[[], str]


def secret_provider(arn: str, local_value: str, max_age_seconds: int, missing: str) -> SecretProvider:
    """A zero-argument callable returning the secret string.

    With ``arn``: Secrets Manager through Powertools parameters, cached ``max_age_seconds`` (a rotation
    is picked up after that). Without: ``local_value`` (local runs only). Neither: ConfigError(missing).
    """
    if arn:

        def from_secrets_manager() -> str:
            # Imported here: Powertools parameters pulls in boto3, which a module import must not do.
            from aws_lambda_powertools.utilities.parameters import get_secret

            secret = get_secret(arn, max_age=max_age_seconds)
            return (secret.decode() if isinstance(secret, bytes) else str(secret)).strip()

        return from_secrets_manager
    if local_value:
        return lambda: local_value
    raise ConfigError(missing)
