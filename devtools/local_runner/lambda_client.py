"""A Lambda client for a LocalCloud: the part of boto3's that tools use, on the in-process functions.

moto cannot run the template's functions (the runner plays them in-process), so a tool that invokes
one, such as ``leap-tracker poll``, gets this from ``LocalCloud.lambda_client()`` in place of
``boto3.client("lambda")``. ``invoke`` runs the function through ``LocalCloud.invoke`` and answers
as Lambda does (``StatusCode``, ``Payload`` to ``read()``, ``FunctionError`` and Lambda's error body
when the handler raised); ``get_function_configuration`` gives the function's environment. A name,
an ARN or a logical id names the function; an unknown one is Lambda's ResourceNotFoundException.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from devtools.local_runner.shapes import error_payload

if TYPE_CHECKING:
    from devtools.local_runner.cloud import LocalCloud
    from devtools.local_runner.lambda_runtime import LocalFunction

# What the runner adds to a function's environment that Lambda's configuration does not list.
_RUNTIME_PREFIXES = ("AWS_", "_")


class LocalLambdaClient:
    def __init__(self, cloud: LocalCloud) -> None:
        self._cloud = cloud

    def invoke(
        self,
        *,
        FunctionName: str,
        InvocationType: str = "RequestResponse",
        Payload: bytes | str = b"",
        **_: Any,
    ) -> dict[str, Any]:
        function = self._function(FunctionName, "Invoke")
        event = json.loads(Payload) if Payload else {}
        if InvocationType == "DryRun":
            return {"StatusCode": 204, "Payload": io.BytesIO(b"")}
        if InvocationType == "Event":
            self._cloud.invoke(function.logical_id, event, asynchronous=True)
            return {"StatusCode": 202, "Payload": io.BytesIO(b"")}
        try:
            result = self._cloud.invoke(function.logical_id, event)
        except Exception as exc:  # the handler raised: Lambda answers 200 with the error as the payload
            body = json.dumps(error_payload(exc)).encode()
            return {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "ExecutedVersion": "$LATEST",
                "Payload": io.BytesIO(body),
            }
        body = json.dumps(result, default=str).encode()
        return {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": io.BytesIO(body)}

    def get_function_configuration(self, *, FunctionName: str, **_: Any) -> dict[str, Any]:
        function = self._function(FunctionName, "GetFunctionConfiguration")
        variables = {
            name: value
            for name, value in function.full_environment().items()
            if not name.startswith(_RUNTIME_PREFIXES)
        }
        return {
            "FunctionName": function.name,
            "FunctionArn": function.arn,
            "Timeout": function.timeout_seconds,
            "MemorySize": function.memory_mb,
            "Environment": {"Variables": variables},
        }

    def _function(self, name: str, operation: str) -> LocalFunction:
        for function in self._cloud.functions.values():
            if name in (function.name, function.arn, function.logical_id):
                return function
        error = {"Error": {"Code": "ResourceNotFoundException", "Message": f"Function not found: {name}"}}
        raise ClientError(error, operation)
