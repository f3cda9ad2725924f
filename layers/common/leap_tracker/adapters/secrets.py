"""Secrets for the adapters: read from Secrets Manager when an ARN is configured, else a local value."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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


# --- a secret that is rotated while callers still send its old value (the webhook receiver's) -------

CURRENT_STAGE = "AWSCURRENT"
PREVIOUS_STAGE = "AWSPREVIOUS"  # Secrets Manager moves it to the old version when a new one is put
SecretValues = Callable[[], tuple[str, ...]]


def rotating_secret(
    arn: str, max_age_seconds: int, clock: Callable[[], float] = time.monotonic
) -> SecretValues:
    """A zero-argument callable returning the values to accept: the AWSCURRENT version's string and,
    when the secret has one, the AWSPREVIOUS version's, each cached ``max_age_seconds``.

    Through Powertools parameters, one provider per stage: Powertools' cache key is the secret's name
    alone (not the VersionStage), so one provider would answer both stages with whichever it read
    first. A secret never rotated has no AWSPREVIOUS version; that absence is cached as long.
    """
    # Imported here: Powertools parameters pulls in boto3, which a module import must not do.
    from aws_lambda_powertools.utilities.parameters import SecretsProvider
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    from leap_tracker.adapters.aws import CLIENT_CONFIG, error_code

    current, previous = SecretsProvider(boto_config=CLIENT_CONFIG), SecretsProvider(boto_config=CLIENT_CONFIG)
    no_previous_until = [float("-inf")]

    def read(provider: Any, stage: str) -> str:
        secret = provider.get(arn, max_age=max_age_seconds, VersionStage=stage)
        return (secret.decode() if isinstance(secret, bytes) else str(secret)).strip()

    def values() -> tuple[str, ...]:
        found = [read(current, CURRENT_STAGE)]
        if clock() >= no_previous_until[0]:
            try:
                found.append(read(previous, PREVIOUS_STAGE))
            except GetParameterError as exc:
                if error_code(exc.__context__ or exc) != "ResourceNotFoundException":
                    raise  # Secrets Manager failing: the call fails, Leap sends it again
                no_previous_until[0] = clock() + max_age_seconds
        return tuple(value for value in found if value)

    return values
