"""Leap's side: a Connect source over fixed pages, client settings for the Leap simulator, and a
requests session with one canned answer."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

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


CANNED_BASE_URL = "https://leap.test"


class CannedAdapter(BaseAdapter):
    """Answers every request with the same status and body; remembers what it was sent."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__()
        self.status = status
        self.body = body
        self.requests: list[tuple[requests.PreparedRequest, dict[str, Any]]] = []

    @property
    def calls(self) -> int:
        return len(self.requests)

    def send(self, request: requests.PreparedRequest, **options: Any) -> requests.Response:
        self.requests.append((request, options))
        response = requests.Response()
        response.status_code = self.status
        response._content = self.body
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def canned_session(status: int, body: Any) -> tuple[requests.Session, CannedAdapter]:
    """A session whose requests to the canned host (or any prefix mounted later) get one fixed answer.

    Mounted on a longer prefix than the client's own adapter, so requests picks it first.
    """
    adapter = CannedAdapter(status, body if isinstance(body, bytes) else json.dumps(body).encode())
    session = requests.Session()
    session.mount(CANNED_BASE_URL, adapter)
    return session, adapter
