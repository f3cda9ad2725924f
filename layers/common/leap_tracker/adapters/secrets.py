"""Secrets for the adapters: read from Secrets Manager when an ARN is configured, else a local value."""

from __future__ import annotations

from collections.abc import Callable

from leap_tracker.config import ConfigError, Settings
from leap_tracker.privacy import KeyTooShort, Pseudonyms

SecretProvider = Callable[[], str]

# The log hash key is read once per cold start (the pseudonyms are built from it then), so the cache
# only spares a second read when two things ask at the same cold start.
LOG_HASH_KEY_CACHE_SECONDS = 900


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


def log_pseudonyms(settings: Settings) -> Pseudonyms:
    """The pseudonyms of log lines and FIFO group ids, keyed with the stack's log hash key: the secret
    LOG_HASH_KEY_SECRET_ARN names (read now: call it once per cold start), else LOG_HASH_KEY."""
    read = secret_provider(
        settings.log_hash_key_secret_arn,
        settings.log_hash_key,
        LOG_HASH_KEY_CACHE_SECONDS,
        missing="no log hash key: set LOG_HASH_KEY_SECRET_ARN (or LOG_HASH_KEY for local runs)",
    )
    try:
        return Pseudonyms.from_secret(read())
    except KeyTooShort as exc:
        variable = "LOG_HASH_KEY_SECRET_ARN" if settings.log_hash_key_secret_arn else "LOG_HASH_KEY"
        raise ConfigError(f"{variable}: {exc}") from None
