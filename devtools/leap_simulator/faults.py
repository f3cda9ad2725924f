"""Faults a test can switch on: what goes wrong, on which path, for how many requests (thread-safe)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    RATE_LIMITED = "rate_limited"  # 429 + Retry-After
    SERVER_ERROR = "server_error"  # 500 with Leap's plain-string body
    HTTP_ERROR = "http_error"  # any status with Leap's {title, status, details} body
    SLOW = "slow"  # sleep, then answer normally
    TRUNCATED_BODY = "truncated_body"  # Content-Length larger than the body, then close
    EXPIRED_PAGE_TOKEN = "expired_page_token"  # 400 on a request that carries a page token
    DROPPED_CONNECTION = "dropped_connection"  # close the connection without answering


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    status: int = 500
    retry_after_seconds: int = 1
    delay_seconds: float = 0.0


def rate_limited(retry_after_seconds: int = 1) -> Fault:
    return Fault(FaultKind.RATE_LIMITED, status=429, retry_after_seconds=retry_after_seconds)


def server_error() -> Fault:
    return Fault(FaultKind.SERVER_ERROR, status=500)


def http_error(status: int) -> Fault:
    return Fault(FaultKind.HTTP_ERROR, status=status)


def slow(seconds: float) -> Fault:
    return Fault(FaultKind.SLOW, delay_seconds=seconds)


def truncated_body() -> Fault:
    return Fault(FaultKind.TRUNCATED_BODY)


def expired_page_token() -> Fault:
    return Fault(FaultKind.EXPIRED_PAGE_TOKEN, status=400)


def dropped_connection() -> Fault:
    return Fault(FaultKind.DROPPED_CONNECTION)


@dataclass(slots=True)
class _Armed:
    fault: Fault
    remaining: int | None  # None: until cleared
    path: str | None  # None: any path


class FaultPlan:
    """Armed faults, first armed first served. Each matching request uses up one of its ``times``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []

    def arm(self, fault: Fault, times: int | None = 1, path: str | None = None) -> None:
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for 'until cleared')")
        with self._lock:
            self._armed.append(_Armed(fault, times, path))

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def pending(self) -> int:
        """How many armed faults are left (an unbounded one counts once)."""
        with self._lock:
            return len(self._armed)

    def take(self, path: str, carries_page_token: bool) -> Fault | None:
        """The fault this request meets, if any, counting it as used."""
        with self._lock:
            for armed in self._armed:
                if armed.path is not None and armed.path != path:
                    continue
                if armed.fault.kind is FaultKind.EXPIRED_PAGE_TOKEN and not carries_page_token:
                    continue
                if armed.remaining is not None:
                    armed.remaining -= 1
                    if armed.remaining == 0:
                        self._armed.remove(armed)
                return armed.fault
        return None
