"""Counting the AWS API calls the handlers make, by function, service and operation.

A ``before-call`` hook is added to botocore's built-in handlers (the way moto hooks in), so every
session created while a :class:`CallCounter` is installed carries it, including the sessions the
handlers create lazily. Only calls made while a function is being invoked are counted: the runner's
own plumbing (reading streams, receiving messages) and test code are not what a deployment pays for.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from botocore import handlers

_EVENT = "before-call.*.*"


class CallCounter:
    def __init__(self) -> None:
        self.current_function: str | None = None  # set by the runner around each invocation
        self.by_function: dict[str, Counter[tuple[str, str]]] = {}

    def install(self) -> None:
        handlers.BUILTIN_HANDLERS.append((_EVENT, self._on_call))

    def uninstall(self) -> None:
        entry = (_EVENT, self._on_call)
        if entry in handlers.BUILTIN_HANDLERS:
            handlers.BUILTIN_HANDLERS.remove(entry)

    def totals(self) -> Counter[tuple[str, str]]:
        """(service, operation) -> calls, over every function."""
        total: Counter[tuple[str, str]] = Counter()
        for counts in self.by_function.values():
            total.update(counts)
        return total

    def _on_call(self, model: Any, **_: Any) -> None:
        function = self.current_function
        if function is None:
            return
        key = (model.service_model.service_name, model.name)
        self.by_function.setdefault(function, Counter())[key] += 1
