"""``leap-tracker hash``: the pseudonym of a Reference ID or an entry id, as the log lines show it.

The functions log ``ref:<16 hex>`` / ``entry:<16 hex>`` instead of the identifiers (keyed with the
stack's log hash key, leap_tracker.privacy); this prints the one to search for:

    leap-tracker hash --ref-id Test1012 --stack-name leap-connect-tracker
    ref:df19e75b952f90b7

The key comes from the stack's secret (``--stack-name``, ``--key-secret-arn`` or
``LOG_HASH_KEY_SECRET_ARN``), or, for a local run, from ``LOG_HASH_KEY`` itself.
"""

from __future__ import annotations

import argparse
from typing import Any

from leap_tracker.config import VARIABLES, Settings
from leap_tracker.privacy import ENTRY, REF, KeyTooShort, Pseudonyms
from leap_tracker_cli.discovery import Discovery, Resource, arn_region
from leap_tracker_cli.result import CommandError, Result

NAME = "hash"
HELP = "print the pseudonym the logs show for a Reference ID or an entry id"

_SECRET_VARIABLE = VARIABLES[Settings]["log_hash_key_secret_arn"].name  # LOG_HASH_KEY_SECRET_ARN
_LOCAL_KEY_VARIABLE = VARIABLES[Settings]["log_hash_key"].name  # LOG_HASH_KEY
KEY_SECRET = Resource(
    what="the log hash key secret",
    flag="--key-secret-arn",
    output="LogHashKeySecretArn",
    logical_id="LogHashKeySecret",
    variable=_SECRET_VARIABLE,
)
RESOURCES = (KEY_SECRET,)  # each with its explicit flag, which add_arguments declares


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--ref-id", metavar="REF_ID", help="a Reference ID, as in the Connect URL")
    which.add_argument("--entry-id", metavar="ENTRY_ID", help="a Leap entry id (data.connection.id)")
    parser.add_argument(
        KEY_SECRET.flag,
        metavar="ARN",
        help=f"the secret holding the key (default: the stack's with --stack-name, else "
        f"${_SECRET_VARIABLE}, else the key itself in ${_LOCAL_KEY_VARIABLE})",
    )


def run(args: argparse.Namespace, discovery: Discovery) -> Result:
    pseudonyms, key_source = stack_pseudonyms(discovery)
    kind, value = (REF, args.ref_id) if args.ref_id is not None else (ENTRY, args.entry_id)
    shown = pseudonyms.ref(value) if kind == REF else pseudonyms.entry(value)
    # Never the identifier itself in the document: it may be pasted into a ticket or a chat.
    return Result(text=shown, document={"kind": kind, "pseudonym": shown, "key_source": key_source})


def stack_pseudonyms(discovery: Discovery) -> tuple[Pseudonyms, str]:
    """The stack's pseudonyms and where the key came from (also for the commands that report entries)."""
    secret = discovery.locate(KEY_SECRET)
    if secret is not None:
        key, source = _secret_string(discovery, secret.value), f"{secret.source} ({secret.value})"
    else:
        key, source = discovery.environ.get(_LOCAL_KEY_VARIABLE, "").strip(), _LOCAL_KEY_VARIABLE
        if not key:
            raise CommandError(
                f"no log hash key: pass --stack-name or {KEY_SECRET.flag}, or set {_SECRET_VARIABLE} "
                f"(or {_LOCAL_KEY_VARIABLE}, the key itself, as for a local run)"
            )
    try:
        return Pseudonyms.from_secret(key), source
    except KeyTooShort as exc:
        raise CommandError(f"{source}: {exc}") from None


def _secret_string(discovery: Discovery, arn: str) -> str:
    answer: dict[str, Any] = discovery.client("secretsmanager", region_name=arn_region(arn)).get_secret_value(
        SecretId=arn
    )
    if "SecretString" not in answer:
        raise CommandError(f"the secret {arn} holds binary data, not the key's text")
    return str(answer["SecretString"])
