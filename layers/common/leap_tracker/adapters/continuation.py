"""The poller invoking itself, asynchronously, to continue a pass (``poller.plan.next_continuation``).

Lambda's Invoke with ``InvocationType=Event`` queues the event and answers 202: the continuation
starts within seconds, under Lambda's own asynchronous retries and the function's on-failure
destination, like a scheduled run. Anything but 202 raises: the run that asked fails, and Lambda's
retry of it resumes the pass from the checkpoint itself, so a lost continuation costs time, not data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from leap_tracker.poller.request import PollRequest


class ContinuationRefused(RuntimeError):
    """Lambda did not queue the continuation."""


class LambdaContinuations:
    def __init__(self, lambda_client: Callable[[], Any]) -> None:
        self._client = lambda_client  # created on the first continuation only

    def send(self, function_arn: str, request: PollRequest) -> None:
        answer = self._client().invoke(
            FunctionName=function_arn,
            InvocationType="Event",
            Payload=json.dumps(request.as_event()).encode(),
        )
        status = answer.get("StatusCode")
        if status != 202:
            raise ContinuationRefused(f"Lambda answered {status} to the continuation, not 202")
