"""Lambda's Invoke API called from a function's own code, played by the runner (moto cannot run the
template's functions): the poller invokes itself to continue a pass the time limit cut short.

A botocore hook (added to the built-in handlers, as moto's own is) answers ``lambda.Invoke`` while a
function of this cloud runs: an ``Event`` invocation is queued as Lambda's asynchronous invocations are
(``async_invocations``: it runs in the next round of ``drain()``, at the simulated now, with Lambda's
retries and on-failure destination), and answered 202. The target is found by name, ARN or logical id;
an unknown one is Lambda's ResourceNotFoundException. A synchronous invocation from a function's code
is not something this product does: it is refused (a 400), not guessed. Outside a function's run (a
test or a tool using moto's own Lambda) the hook lets the call through.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from botocore import handlers
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody

from devtools.local_runner.lambda_runtime import LocalFunction

_REMEMBER = "before-parameter-build.lambda.Invoke"
_ANSWER = "before-call.lambda.Invoke"
_PARAMS = "local_runner_invoke"  # where the request context keeps the call's parameters


class FunctionInvokes:
    def __init__(
        self,
        functions: Callable[[], dict[str, LocalFunction]],
        running: Callable[[], str | None],
        enqueue: Callable[[LocalFunction, Any], None],
    ) -> None:
        self._functions = functions
        self._running = running  # the logical id of the function being invoked, None between invocations
        self._enqueue = enqueue
        self.sent: list[tuple[str, str, Any]] = []  # (caller, target, event) of every invocation queued

    def install(self) -> None:
        handlers.BUILTIN_HANDLERS.extend([(_REMEMBER, self._remember), (_ANSWER, self._answer)])

    def uninstall(self) -> None:
        for entry in ((_REMEMBER, self._remember), (_ANSWER, self._answer)):
            if entry in handlers.BUILTIN_HANDLERS:
                handlers.BUILTIN_HANDLERS.remove(entry)

    def _remember(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[_PARAMS] = dict(params)

    def _answer(self, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        caller = self._running()
        params = context.get(_PARAMS)
        if caller is None or params is None:
            return None  # not a function's call: moto answers it
        name = str(params.get("FunctionName", ""))
        target = self._target(name)
        if target is None:
            return _error(404, "ResourceNotFoundException", f"Function not found: {name}")
        if params.get("InvocationType", "RequestResponse") != "Event":
            return _error(
                400, "InvalidParameterValueException", "the local runner plays Event invocations only"
            )
        payload = params.get("Payload") or b"{}"
        event = json.loads(payload.read() if hasattr(payload, "read") else payload)
        self._enqueue(target, event)
        self.sent.append((caller, target.logical_id, event))
        return _response(202, {"StatusCode": 202, "Payload": _body(b"")})

    def _target(self, name: str) -> LocalFunction | None:
        bare = name.split(":function:", 1)[-1].split(":", 1)[0] if ":function:" in name else name
        for function in self._functions().values():
            if name in (function.name, function.arn, function.logical_id) or bare == function.name:
                return function
        return None


def _body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def _response(status: int, parsed: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
    http = AWSResponse("https://lambda.local-runner/", status, {}, None)
    parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": status})
    return http, parsed


def _error(status: int, code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    return _response(status, {"Error": {"Code": code, "Message": message}})
