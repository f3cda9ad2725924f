"""The local runner: template.yaml brought up in moto, with Lambda's part played in-process.

Used by ``make demo`` and the end-to-end tests; a development tool, never shipped in the layer.
Everything comes FROM ``template.yaml`` (after the real SAM transform), so the local picture cannot
drift from what deploys. docs/local-runner.md explains the mapping and what is not emulated.

    from devtools.local_runner import LocalCloud

    with LocalCloud("template.yaml", secrets={"LeapApiKeySecretArn": "key"}) as cloud:
        cloud.set_env(LEAP_API_BASE_URL="http://127.0.0.1:8080")   # every function
        cloud.fire_schedule("PollerFunction")       # a schedule is a call, not a wait
        cloud.drain()                                # stream -> emitter -> SNS -> SQS -> subscribers
        cloud.advance(hours=1)                       # simulated clock: moto and handlers follow it
        cloud.drain()                                # what became visible/due meanwhile
        print(cloud.summary())

``LocalCloud(template_path="template.yaml", *, parameters=None, secrets=None, env=None,
start=DEFAULT_START, stack_name="leap-connect-tracker", region="us-east-1", max_drain_rounds=10_000)``

- ``parameters``: template parameter overrides (defaults apply otherwise; constraints are checked).
- ``secrets``: ``{parameter name: secret string}``: each becomes a Secrets Manager secret in moto and
  the parameter is set to its ARN (so handlers take the real secret path).
- ``env``: variables added to every function's environment (after the template's).
- ``start``: the simulated clock's start (timezone-aware).

Attributes: ``resources`` (:class:`Resources`: ``table_name``, ``stream_arn``, ``topic_arn``,
``queue_url``, ``queue_arn``, ``function_name`` by logical id; ``not_emulated``), ``outputs``,
``parameters``, ``functions``, ``stream_mappings``, ``sqs_mappings``, ``schedules``, ``invocations``
(every :class:`InvocationRecord`), ``dropped_async_events``, ``clock``.

Methods: ``client(service)``, ``lambda_client()`` (a Lambda client whose invoke runs a function here),
``now()``, ``advance(seconds=, minutes=, hours=, days=)``,
``on_advance(listener)``, ``invoke(logical_id, event=None, asynchronous=False)``,
``function_url(logical_id)``, ``call_function_url(url, method, headers, body)`` (a request to a
function URL as Lambda's front end handles it: ``(status, headers, body)``),
``fire_schedule(logical_id, schedule_id=None, scheduled_time=None)``, ``pump()``, ``drain(max_rounds=None)``,
``override_handler(logical_id, handler)``, ``wrap_handler(logical_id, wrapper)``,
``fail_next(logical_id, times=1, error=None)``, ``set_remaining_time(logical_id, millis)``,
``set_env(logical_id=None, **values)``, ``cold_start(logical_id=None)``,
``subscribe_queue(topic_logical_id, filter_policy=None, scope="MessageAttributes", raw=True, name=None)``,
``drain_queue(queue, delete=True)``, ``deploy_subscriber(name, parameters=None, template=None)`` (a
stack from subscriber/template.yaml next to this one: :class:`SubscriberStack`, also in
``subscribers``), ``evaluate_alarms()`` (the SQS-metric alarms, from the queues:
:class:`AlarmEvaluation` each), and the counters ``aws_calls``, ``aws_calls_by_function``,
``invocation_counts``, ``errors``, ``summary()``; ``usage`` and ``current_invocation`` (what each
invocation would be billed for: its record's ``usage`` and ``duration_seconds``, docs/cost.md).
"""

from devtools.local_runner.alarms import AlarmEvaluation
from devtools.local_runner.cloud import DEFAULT_START, LocalCloud, RunnerLoopError
from devtools.local_runner.lambda_runtime import (
    FunctionTimeout,
    InjectedFailure,
    InvocationRecord,
    LambdaContext,
)
from devtools.local_runner.partner import PartnerMessage
from devtools.local_runner.resources import Resource, Resources
from devtools.local_runner.stack import Schedule, SubscriberStack
from devtools.local_runner.template import TemplateError

__all__ = [
    "DEFAULT_START",
    "AlarmEvaluation",
    "FunctionTimeout",
    "InjectedFailure",
    "InvocationRecord",
    "LambdaContext",
    "LocalCloud",
    "PartnerMessage",
    "Resource",
    "Resources",
    "RunnerLoopError",
    "Schedule",
    "SubscriberStack",
    "TemplateError",
]
