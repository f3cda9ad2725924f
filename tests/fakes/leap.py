"""Leap's side: a Connect source over fixed pages, and client settings for the Leap simulator."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from devtools.leap_simulator import LeapSimulator
from leap_tracker.config import LeapApiSettings
from leap_tracker.leap.api import ConnectPage, ConnectQuery


def fast_leap_settings(simulator: LeapSimulator, **overrides: Any) -> LeapApiSettings:
    """Client settings pointing at a Leap simulator, with test-sized timeouts and backoff; override any."""
    fast = LeapApiSettings(
        base_url=simulator.base_url,
        api_key=simulator.api_key,
        connect_timeout_seconds=1.0,
        read_timeout_seconds=2.0,
        max_retries=3,
        max_retry_seconds=5.0,
        backoff_factor=0.001,
    )
    return replace(fast, **overrides)


class FakeSource:
    """A ConnectSource over fixed pages. Tokens are "tok+/<n>=" (they need URL encoding, like Leap's).

    ``errors[n]`` is raised (once) when page n is asked for; every request is recorded.
    """

    def __init__(self, pages: Sequence[Sequence[dict[str, Any]]]) -> None:
        self.pages = [list(page) for page in pages]
        self.errors: dict[int, Exception] = {}
        self.requests: list[tuple[ConnectQuery, str | None]] = []

    def iter_pages(self, query: ConnectQuery, page_token: str | None = None) -> Iterator[ConnectPage]:
        position = int(page_token.removeprefix("tok+/").removesuffix("=")) if page_token else 0
        token = page_token
        while True:
            self.requests.append((query, token))
            error = self.errors.pop(position, None)
            if error is not None:
                raise error
            entries = copy.deepcopy(self.pages[position]) if position < len(self.pages) else []
            position += 1
            token = f"tok+/{position}=" if position < len(self.pages) else None
            yield ConnectPage(entries=entries, next_page_token=token)
            if token is None:
                return
