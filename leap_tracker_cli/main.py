"""The ``leap-tracker`` entry point: argparse subcommands, resource discovery, text or ``--json``.

Exit status: 0 done, 1 AWS or Leap refused or failed (credentials, permissions, throttling, a Leap
key refused) or the command did only part of its work (an event not sent, a message kept: the answer
says which), 2 a usage or discovery error (the message says what to pass). With ``--json`` the answer,
or the error, is one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, TextIO

from leap_tracker.leap.api import LeapError
from leap_tracker_cli import hash as hash_command
from leap_tracker_cli import (
    poll,
    poller,
    redrive,
    replay,
    replay_failures,
    report,
    status,
    subscribe,
    tail,
    webhooks,
)
from leap_tracker_cli.discovery import ClientFactory, Discovery, DiscoveryError
from leap_tracker_cli.result import CommandError, Result

PROG = "leap-tracker"
SUBCOMMANDS: Sequence[ModuleType] = (
    hash_command,
    subscribe,
    tail,
    status,
    replay,
    replay_failures,
    redrive,
    poll,
    poller,
    report,
    webhooks,
)


def main(
    argv: list[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    client: ClientFactory | None = None,
    out: TextIO | None = None,
) -> int:
    """Run one subcommand; the exit status. ``environ``, ``client`` and ``out`` are for tests."""
    out = out or sys.stdout
    args = parser().parse_args(argv)
    try:
        result = args.command.run(args, _discovery(args, environ, client))
    except (CommandError, DiscoveryError) as exc:
        return _fail(out, args.json, str(exc), status=2)
    except LeapError as exc:  # a key refused (the message names the environment), Leap unavailable...
        return _fail(out, args.json, f"Leap: {exc}", status=1)
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError  # loaded with boto3 by then

        if not isinstance(exc, BotoCoreError | ClientError):
            raise
        # No credentials, access denied, throttling, an unknown secret...: AWS's own words.
        return _fail(out, args.json, f"AWS: {type(exc).__name__}: {exc}", status=1)
    _print(out, result, args.json)
    return result.status


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack-name", help="the deployed stack, to find its resources (DescribeStacks)")
    common.add_argument("--region", help="AWS region (default: your AWS configuration's)")
    common.add_argument("--profile", help="AWS profile (default: your AWS configuration's)")
    common.add_argument("--json", action="store_true", help="print one JSON document")
    top = argparse.ArgumentParser(
        prog=PROG,
        description="Operate a deployed leap-connect-tracker stack from your machine (docs/security.md).",
    )
    commands = top.add_subparsers(dest="name", required=True, metavar="command")
    for module in SUBCOMMANDS:
        actions = getattr(module, "ACTIONS", None)
        if actions is None:
            sub = commands.add_parser(
                module.NAME, help=module.HELP, description=module.HELP, parents=[common]
            )
            module.add_arguments(sub)
            sub.set_defaults(command=module)
            continue
        # A subcommand with actions (`webhooks register`): each action is parsed like a subcommand.
        group = commands.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        nested = group.add_subparsers(dest="action", required=True, metavar="action")
        for action in actions:
            sub = nested.add_parser(action.NAME, help=action.HELP, description=action.HELP, parents=[common])
            action.add_arguments(sub)
            sub.set_defaults(command=action)
    return top


def _discovery(
    args: argparse.Namespace, environ: Mapping[str, str] | None, client: ClientFactory | None
) -> Discovery:
    """What the subcommand may look up: its resources' explicit flags, the stack, the environment."""
    explicit = {
        r.flag: getattr(args, r.flag.removeprefix("--").replace("-", "_")) for r in args.command.RESOURCES
    }
    given = [flag for flag, value in explicit.items() if value]
    if args.stack_name and given:
        raise CommandError(f"--stack-name and {given[0]} both say where to look: pass one of them")
    return Discovery(
        client=client or _boto3_clients(args.region, args.profile),
        environ=os.environ if environ is None else environ,
        stack_name=args.stack_name,
        explicit=explicit,
    )


def _boto3_clients(region: str | None, profile: str | None) -> Callable[..., Any]:
    def client(service: str, region_name: str | None = None) -> Any:
        import boto3  # on first use: --help needs no AWS SDK

        session = boto3.session.Session(profile_name=profile, region_name=region)
        return session.client(service, region_name=region_name or region)

    return client


def _print(out: TextIO, result: Result, as_json: bool) -> None:
    out.write((json.dumps(result.document, indent=2) if as_json else result.text) + "\n")


def _fail(out: TextIO, as_json: bool, message: str, status: int) -> int:
    if as_json:
        out.write(json.dumps({"error": message}, indent=2) + "\n")
    else:
        sys.stderr.write(f"{PROG}: {message}\n")
    return status
