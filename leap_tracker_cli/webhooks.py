"""``leap-tracker webhooks register|list|delete|test``: the stack's webhook receiver in Leap's Webhook
Subscription API.

    leap-tracker webhooks register --stack-name leap-connect-tracker      # again after a URL or secret change
    leap-tracker webhooks list --stack-name leap-connect-tracker
    leap-tracker webhooks test --stack-name leap-connect-tracker
    leap-tracker webhooks delete --all-for-stack --stack-name leap-connect-tracker

``register`` subscribes the receiver URL (stack output ``WebhookReceiverUrl``) to every event type (or
the ``--event-type`` ones), with one custom header: the stack's ``WebhookSecretHeader`` parameter
(default ``x-api-key``) carrying the secret ``WebhookSecretArn`` names. A subscription already
pointing at that URL (else one carrying the stack's current secret: the function URL was replaced) is
updated in place (PUT: every setting replaced), so running it again is how a new secret value, URL or
list of types reaches Leap; ``--webhook-id`` updates a given subscription instead (one still pointing
at an old URL with an old secret). ``list`` shows Leap's subscriptions with header values
masked, ``delete`` removes one (or ``--all-for-stack``: those pointing at this stack's URL), ``test``
asks Leap to send a sample ``meter.created`` with an obviously synthetic Reference ID.

Leap's base URL and API key are the poller's: with ``--stack-name`` (or ``--poller-function``) the
poller function's environment (``LEAP_API_BASE_URL``, ``LEAP_API_KEY_SECRET_ARN``, whose secret is
read here), else this machine's (``LEAP_API_BASE_URL`` and ``LEAP_API_KEY_SECRET_ARN`` or, locally,
``LEAP_API_KEY``). A refusal by Leap is exit status 1 with Leap's words; an unknown subscription id is 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from leap_tracker.config import VARIABLES, ConfigError, LeapApiSettings, WebhookSettings, load_settings
from leap_tracker.leap import wire
from leap_tracker_cli.discovery import Discovery, DiscoveryError, Located, Resource, add_flag, arn_region
from leap_tracker_cli.function_settings import function_settings
from leap_tracker_cli.poll import POLLER_FUNCTION
from leap_tracker_cli.result import CommandError, Result

if TYPE_CHECKING:  # the client brings requests in: imported on first use, so --help stays light
    from leap_tracker.adapters.leap_webhooks import LeapWebhooksClient, WebhookSubscription

NAME = "webhooks"
HELP = "register the stack's webhook receiver with Leap; list, delete or test Leap's subscriptions"

RECEIVER_URL = Resource(
    what="the webhook receiver URL",
    flag="--receiver-url",
    output="WebhookReceiverUrl",
    logical_id="WebhookReceiverUrl",  # no resource holds the URL itself: the output is the one place
    variable="WEBHOOK_RECEIVER_URL",  # set by hand: no function reads it
)
WEBHOOK_SECRET = Resource(
    what="the webhook secret",
    flag="--webhook-secret-arn",
    output="WebhookSecretArn",
    logical_id="WebhookSecret",
    variable=VARIABLES[WebhookSettings]["secret_arn"].name,  # WEBHOOK_SECRET_ARN, as the receiver reads it
)
SECRET_HEADER_PARAMETER = "WebhookSecretHeader"
_SECRET_HEADER_VARIABLE = VARIABLES[WebhookSettings]["secret_header"].name  # WEBHOOK_SECRET_HEADER
MASK = "****"
# The sample `test` sends: obviously not a customer's (the processor's Meters API check finds nothing).
SAMPLE_PARTNER_REFERENCE = "leap-tracker-webhooks-test"
SAMPLE_METER_ID = "00000000-0000-4000-8000-000000000000"
SAMPLE_TRANSMISSION_REGION = "CAISO"
SAMPLE_METER_TYPE = "UTILITY_METER"


@dataclass(frozen=True, slots=True)
class Action:
    """One ``webhooks <action>``: what main.py reads of a subcommand (a module's names)."""

    NAME: str
    HELP: str
    RESOURCES: tuple[Resource, ...]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Discovery], Result]


# --- register -----------------------------------------------------------------------------------


def _register_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--event-type",
        action="append",
        choices=wire.WEBHOOK_EVENT_TYPES,
        metavar="TYPE",
        help="subscribe to this type (again for several; default: all seven)",
    )
    parser.add_argument(
        "--webhook-id",
        metavar="ID",
        help="update this subscription (one still pointing at an old URL) instead of the one at the URL",
    )
    _add_flags(parser, _REGISTER_RESOURCES)


def _register(args: argparse.Namespace, discovery: Discovery) -> Result:
    from leap_tracker.adapters.leap_webhooks import WebhookHeader

    url = discovery.require(RECEIVER_URL)
    header, header_source = _secret_header(discovery)
    secret = discovery.require(WEBHOOK_SECRET)
    headers = (WebhookHeader(header, _secret_value(discovery, secret.value)),)
    event_types = tuple(dict.fromkeys(args.event_type or wire.WEBHOOK_EVENT_TYPES))
    with _leap(discovery) as (leap, leap_document):
        subscriptions = leap.subscriptions()
        at_url = [s for s in subscriptions if same_url(s.receiver_url, url.value)]
        # Not at the URL but carrying this stack's secret: the function URL was replaced, the stack not.
        ours = at_url or [s for s in subscriptions if any(h.value == headers[0].value for h in s.headers)]
        target = args.webhook_id or (ours[0].webhook_id if ours else None)
        if target is None:
            webhook_id, action = leap.create(url.value, event_types, headers), "created"
        else:
            webhook_id, action = (
                _not_found_is_usage(leap.update, target, url.value, event_types, headers),
                "updated",
            )
    previous = next((s.receiver_url for s in subscriptions if s.webhook_id == webhook_id), None)
    moved_from = previous if previous is not None and not same_url(previous, url.value) else None
    others = [s.webhook_id for s in at_url if s.webhook_id != webhook_id]
    document = {
        "webhook_id": webhook_id,
        "action": action,
        "moved_from": moved_from,
        "receiver_url": url.value,
        "receiver_url_source": url.source,
        "event_types": list(event_types),
        "secret_header": header,
        "secret_header_source": header_source,
        "secret_source": f"{secret.source} ({secret.value})",
        "other_subscriptions_at_url": others,
        "leap": leap_document,
    }
    lines = [
        webhook_id,
        f"  {action} in Leap {leap_document['environment']}: {url.value} receives "
        f"{_types_text(event_types)} with the {header} header",
    ]
    if moved_from:
        lines.append(f"  (it pointed at {moved_from} before)")
    if others:
        lines.append(
            f"  {len(others)} more subscription(s) point at this URL ({', '.join(others)}): each delivery "
            f"would come more than once; remove them with `leap-tracker webhooks delete ID`"
        )
    return Result("\n".join(lines), document)


# --- list ---------------------------------------------------------------------------------------


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    _add_flags(parser, _LEAP_RESOURCES)


def _list(args: argparse.Namespace, discovery: Discovery) -> Result:
    ours = _optional_receiver_url(discovery)
    with _leap(discovery) as (leap, leap_document):
        subscriptions = leap.subscriptions()
    rows = [_masked(s, ours) for s in subscriptions]
    document = {"receiver_url": ours, "subscriptions": rows, "leap": leap_document}
    lines = [f"{len(rows)} subscription(s) in Leap {leap_document['environment']}"]
    for row in rows:
        mark = "  (this stack)" if row["this_stack"] else ""
        lines.append(f"  {row['webhook_id']}  {row['receiver_url']}{mark}")
        lines.append(f"    types: {', '.join(row['event_types']) or '-'}")
        headers = ", ".join(f"{h['name']}: {h['value']}" for h in row["headers"])
        lines.append(f"    headers: {headers or '-'}")
    return Result("\n".join(lines), document)


def _masked(subscription: WebhookSubscription, ours: str | None) -> dict[str, Any]:
    return {
        "webhook_id": subscription.webhook_id,
        "receiver_url": subscription.receiver_url,
        "this_stack": ours is not None and same_url(subscription.receiver_url, ours),
        "event_types": list(subscription.event_types),
        "headers": [{"name": h.name, "value": MASK if h.value else ""} for h in subscription.headers],
    }


# --- delete -------------------------------------------------------------------------------------


def _delete_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("webhook_id", nargs="?", metavar="ID", help="the subscription to delete")
    which.add_argument(
        "--all-for-stack",
        action="store_true",
        help="every subscription pointing at this stack's receiver URL",
    )
    _add_flags(parser, _LEAP_RESOURCES)


def _delete(args: argparse.Namespace, discovery: Discovery) -> Result:
    url = discovery.require(RECEIVER_URL).value if args.all_for_stack else None
    with _leap(discovery) as (leap, leap_document):
        if url is None:
            chosen = [args.webhook_id]
        else:
            chosen = [s.webhook_id for s in leap.subscriptions() if same_url(s.receiver_url, url)]
        for webhook_id in chosen:
            _not_found_is_usage(leap.delete, webhook_id)
    document = {"deleted": chosen, "receiver_url": url, "leap": leap_document}
    if not chosen:
        return Result(f"no subscription in Leap {leap_document['environment']} points at {url}", document)
    lines = [
        f"deleted in Leap {leap_document['environment']}:",
        *(f"  {webhook_id}" for webhook_id in chosen),
    ]
    return Result("\n".join(lines), document)


# --- test ---------------------------------------------------------------------------------------


def _test_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "webhook_id", nargs="?", metavar="ID", help="the subscription (default: the one at this stack's URL)"
    )
    _add_flags(parser, _LEAP_RESOURCES)


def sample_meter_created() -> dict[str, Any]:
    """The payload ``test`` asks Leap to send: a meter.created no customer can have."""
    return {
        wire.WEBHOOK_EVENT_TYPE: wire.WEBHOOK_METER_CREATED,
        wire.WEBHOOK_METER_ID: SAMPLE_METER_ID,
        wire.WEBHOOK_PARTNER_REFERENCE: SAMPLE_PARTNER_REFERENCE,
        wire.WEBHOOK_TRANSMISSION_REGION: SAMPLE_TRANSMISSION_REGION,
        wire.WEBHOOK_METER_TYPE: SAMPLE_METER_TYPE,
    }


def _test(args: argparse.Namespace, discovery: Discovery) -> Result:
    url = None if args.webhook_id else discovery.require(RECEIVER_URL).value
    with _leap(discovery) as (leap, leap_document):
        webhook_id = args.webhook_id or _only_subscription_at(leap.subscriptions(), str(url))
        result = _not_found_is_usage(leap.send_test, webhook_id, sample_meter_created())
    document = {
        "webhook_id": webhook_id,
        "is_successful": result.is_successful,
        "status_code": result.status_code,
        "error": result.error,
        "response_time_ms": result.response_time_ms,
        "payload": sample_meter_created(),
        "leap": leap_document,
    }
    verdict = "accepted" if result.is_successful else "NOT accepted"
    text = (
        f"test of {webhook_id}: the receiver {verdict} the sample meter.created "
        f"(status {result.status_code if result.status_code is not None else 'none'}"
        + (f", {result.response_time_ms:g} ms" if result.response_time_ms is not None else "")
        + ")"
        + (f": {result.error}" if result.error else "")
    )
    return Result(text, document, status=0 if result.is_successful else 1)


def _only_subscription_at(subscriptions: list[WebhookSubscription], url: str) -> str:
    found = [s.webhook_id for s in subscriptions if same_url(s.receiver_url, url)]
    if len(found) != 1:
        how_many = "no subscription points" if not found else f"{len(found)} subscriptions point"
        raise CommandError(f"{how_many} at {url}: pass the subscription's ID (leap-tracker webhooks list)")
    return found[0]


# --- shared -------------------------------------------------------------------------------------


def same_url(left: str, right: str) -> bool:
    """One receiver, whether or not a URL ends in a slash (a function URL does)."""
    return left.rstrip("/") == right.rstrip("/")


def leap_settings(discovery: Discovery) -> tuple[LeapApiSettings, str]:
    """The poller's Leap settings (its deployed environment when it can be found), and where from."""
    if discovery.locate(POLLER_FUNCTION) is not None:
        found = function_settings(discovery, POLLER_FUNCTION)
        return found.settings.leap, found.source
    try:
        return load_settings(discovery.environ).leap, "this machine's environment"
    except ConfigError as exc:
        raise CommandError(f"this machine's environment: {exc}") from None


@contextmanager
def _leap(discovery: Discovery) -> Iterator[tuple[LeapWebhooksClient, dict[str, str]]]:
    from leap_tracker.adapters.leap_webhooks import LeapWebhooksClient

    settings, source = leap_settings(discovery)
    document = {"environment": settings.environment, "base_url": settings.base_url, "settings_source": source}
    with LeapWebhooksClient(settings, key_provider=_api_key(discovery, settings)) as client:
        yield client, document


def _api_key(discovery: Discovery, settings: LeapApiSettings) -> Callable[[], str]:
    """The poller's key: the secret its LEAP_API_KEY_SECRET_ARN names (read once), else LEAP_API_KEY."""
    arn = settings.api_key_secret_arn
    if arn:
        return cache(lambda: _secret_value(discovery, arn))
    if settings.api_key:
        return lambda: settings.api_key
    raise CommandError(
        "no Leap API key: pass --stack-name or --poller-function (the poller's LEAP_API_KEY_SECRET_ARN), "
        "or set LEAP_API_KEY_SECRET_ARN (or LEAP_API_KEY, the key itself, as for a local run)"
    )


def _secret_header(discovery: Discovery) -> tuple[str, str]:
    """The secret's header: the stack's parameter, else WEBHOOK_SECRET_HEADER, else the default."""
    parameter = discovery.stack_parameter(SECRET_HEADER_PARAMETER)
    if parameter is not None and parameter.value:
        return parameter.value, parameter.source
    if discovery.stack_name:
        return (
            wire.DEFAULT_WEBHOOK_SECRET_HEADER,
            f"the default (stack {discovery.stack_name} has no parameter)",
        )
    local = discovery.environ.get(_SECRET_HEADER_VARIABLE, "").strip()
    if local:
        return local, _SECRET_HEADER_VARIABLE
    return wire.DEFAULT_WEBHOOK_SECRET_HEADER, f"the default ({_SECRET_HEADER_VARIABLE} is not set)"


def _secret_value(discovery: Discovery, arn: str) -> str:
    client = discovery.client("secretsmanager", region_name=arn_region(arn))
    answer: dict[str, Any] = client.get_secret_value(SecretId=arn)
    value = str(answer.get("SecretString", "")).strip()
    if not value:
        raise CommandError(f"the secret {arn} holds no text")
    return value


def _optional_receiver_url(discovery: Discovery) -> str | None:
    """This stack's receiver URL when it can be found (``list`` marks its subscriptions), else None."""
    try:
        found: Located | None = discovery.locate(RECEIVER_URL)
    except DiscoveryError:
        return None
    return None if found is None else found.value


def _not_found_is_usage[T](call: Callable[..., T], webhook_id: str, *args: Any) -> T:
    from leap_tracker.adapters.leap_webhooks import LeapWebhookNotFound

    try:
        return call(webhook_id, *args)
    except LeapWebhookNotFound:
        raise CommandError(f"Leap has no subscription {webhook_id} (leap-tracker webhooks list)") from None


def _types_text(event_types: tuple[str, ...]) -> str:
    if set(event_types) == set(wire.WEBHOOK_EVENT_TYPES):
        return f"all {len(event_types)} event types"
    return ", ".join(event_types)


def _add_flags(parser: argparse.ArgumentParser, resources: tuple[Resource, ...]) -> None:
    for resource in resources:
        add_flag(parser, resource, metavar={RECEIVER_URL: "URL", WEBHOOK_SECRET: "ARN"}.get(resource, "NAME"))


_LEAP_RESOURCES = (RECEIVER_URL, POLLER_FUNCTION)
_REGISTER_RESOURCES = (RECEIVER_URL, WEBHOOK_SECRET, POLLER_FUNCTION)

ACTIONS = (
    Action(
        "register",
        "subscribe this stack's receiver URL (or update its subscription) with its secret header",
        _REGISTER_RESOURCES,
        _register_arguments,
        _register,
    ),
    Action(
        "list", "Leap's webhook subscriptions, header values masked", _LEAP_RESOURCES, _list_arguments, _list
    ),
    Action(
        "delete",
        "delete a subscription (or every one pointing at this stack)",
        _LEAP_RESOURCES,
        _delete_arguments,
        _delete,
    ),
    Action(
        "test",
        "ask Leap to send a sample meter.created to a subscription",
        _LEAP_RESOURCES,
        _test_arguments,
        _test,
    ),
)
