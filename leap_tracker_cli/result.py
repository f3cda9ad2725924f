"""What a subcommand answers, and the error it raises when it cannot (exit status 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class CommandError(Exception):
    """The command cannot do what was asked (a missing resource, a bad value): the message says why."""


@dataclass(frozen=True, slots=True)
class Result:
    text: str  # printed as is
    document: dict[str, Any]  # printed as one JSON document with --json
    status: int = 0  # the exit status: 1 when the command did only part of its work (the text says what)
