"""Headless Chromium driven over its DevTools protocol on ``--remote-debugging-pipe``: no port at all
(chromedriver listens on 127.0.0.1 and on [::1], and tests bind only to 127.0.0.1).

Chromium reads commands on its fd 3 and writes responses and events on its fd 4, each message JSON
ended by a NUL byte. :class:`Chromium` starts the browser with a fresh profile, and :meth:`Chromium.load`
opens one page in a new tab, waits for its load event, evaluates a script and returns what it gave
with the page's console errors and every request it made (``data:`` URLs aside)::

    with Chromium(CHROMIUM, flags) as browser:
        loaded = browser.load(page.as_uri(), "document.title")

Given a :class:`Shot`, :meth:`Chromium.load` also returns a PNG of the page (``Page.captureScreenshot``
with the viewport resized to the page's scroll height, clipped at ``Shot.max_height``);
``devtools/screenshot.py`` uses it for the README's picture of a real report.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

COMMAND_FD = 3  # Chromium reads commands here
RESPONSE_FD = 4  # and writes responses and events here
TIMEOUT = 10.0  # seconds for one step (start, a command, the load event)
CLOSE_TIMEOUT = 5.0  # then the process is killed
CHROMIUM = "/usr/bin/chromium"  # Debian's
# Without the background-networking flags Chromium phones home, and this network refuses it.
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1024",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCROLL_SIZE = "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"


class BrowserError(RuntimeError):
    """Chromium failed, died or did not answer in time."""


@dataclass(frozen=True)
class Loaded:
    """What one page gave: the script's value, its console errors and the URLs it requested."""

    value: Any
    console_errors: list[str]
    requests: list[str]
    png: bytes | None = None  # the screenshot, when a Shot was asked for


@dataclass(frozen=True)
class Shot:
    """A screenshot to take once the script ran: ``width`` CSS pixels wide, the page's whole height
    or its first ``max_height`` pixels."""

    width: int = 1200
    max_height: int | None = None


class Chromium:
    """One headless Chromium process and its DevTools pipe; a context manager."""

    def __init__(self, binary: str, flags: tuple[str, ...], timeout: float = TIMEOUT) -> None:
        self._binary = binary
        self._flags = flags
        self._timeout = timeout
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._log: Any = None
        self._commands: int | None = None
        self._responses: int | None = None

    def __enter__(self) -> Chromium:
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        self._log = tempfile.TemporaryFile()
        commands_read, self._commands = _above_pipe_fds(os.pipe())
        self._responses, responses_write = _above_pipe_fds(os.pipe())
        # bash puts the pipe's ends on the fds Chromium expects (3 and 4) and closes the
        # originals, then becomes Chromium (a preexec_fn would do it in a forked child of a process
        # that may have threads, which Python warns is unsafe).
        move = f'exec "$0" "$@" {COMMAND_FD}<&{commands_read} {RESPONSE_FD}>&{responses_write}'
        move += f" {commands_read}<&- {responses_write}>&-"
        args = [
            "/bin/bash",  # dash takes only one-digit fds in a redirection
            "-c",
            move,
            self._binary,
            *self._flags,
            f"--user-data-dir={self._profile.name}",
            "--remote-debugging-pipe",
        ]
        try:
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                pass_fds=(commands_read, responses_write),
                start_new_session=True,  # its own process group: a kill takes its helpers too
            )
        finally:
            os.close(commands_read)
            os.close(responses_write)
        try:
            self.command("Browser.getVersion")  # answers once the pipe is up
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def load(self, url: str, script: str, shot: Shot | None = None) -> Loaded:
        """Open ``url`` in a new tab, wait for its load event, then evaluate ``script`` (an expression)
        and, given ``shot``, take a screenshot."""
        target = self.command("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.command("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for domain in ("Runtime", "Log", "Network", "Page"):
                self.command(f"{domain}.enable", session=session)
            navigated = self.command("Page.navigate", {"url": url}, session=session)
            if "errorText" in navigated:
                raise BrowserError(f"navigating to {url}: {navigated['errorText']}")
            self.wait_for("Page.loadEventFired", session)
            value = self.evaluate(script, session)
            png = None if shot is None else self.screenshot(shot, session)
        finally:
            self.command("Target.closeTarget", {"targetId": target})
        events = [event for event in self._take_events() if event.get("sessionId") == session]
        return Loaded(value, console_errors(events), requested(events), png)

    def screenshot(self, shot: Shot, session: str) -> bytes:
        """A PNG of the page at ``shot.width``: the viewport grown to the page's whole height (laid out
        at that width first), so one capture holds it and no scrollbar shows, then clipped at
        ``shot.max_height``."""
        self._resize(shot.width, 600, session)
        _, height = self.evaluate(SCROLL_SIZE, session)
        self._resize(shot.width, height, session)
        if shot.max_height is not None:
            height = min(height, shot.max_height)
        clip = {"x": 0, "y": 0, "width": shot.width, "height": height, "scale": 1}
        captured = self.command("Page.captureScreenshot", {"format": "png", "clip": clip}, session=session)
        return base64.b64decode(captured["data"])

    def _resize(self, width: int, height: int, session: str) -> None:
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.command("Emulation.setDeviceMetricsOverride", metrics, session=session)

    def evaluate(self, script: str, session: str) -> Any:
        result = self.command(
            "Runtime.evaluate", {"expression": script, "returnByValue": True}, session=session
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"the script threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def command(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        """Send one command and return its result; events read meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self._send(message)
        deadline = time.monotonic() + self._timeout
        while True:
            received = self._receive(deadline, method)
            if received.get("id") == message["id"]:
                if "error" in received:
                    raise BrowserError(f"{method}: {received['error']}")
                return received.get("result", {})
            if "method" in received:
                self._events.append(received)

    def wait_for(self, event: str, session: str) -> dict[str, Any]:
        deadline = time.monotonic() + self._timeout
        seen = len(self._events)
        while True:
            for received in self._events[seen:]:
                if received["method"] == event and received.get("sessionId") == session:
                    return received
            seen = len(self._events)
            received = self._receive(deadline, event)
            if "method" in received:
                self._events.append(received)

    def close(self) -> None:
        """Browser.close, then kill if it has not exited in time; always frees the pipe and profile."""
        try:
            if self._process is not None and self._process.poll() is None:
                try:
                    self._send({"id": self._next_id + 1, "method": "Browser.close", "params": {}})
                    self._process.wait(CLOSE_TIMEOUT)
                except (OSError, subprocess.TimeoutExpired):
                    self._kill()
        finally:
            for fd in (self._commands, self._responses):
                _close_quietly(fd)
            if self._log is not None:
                self._log.close()
            if self._profile is not None:
                self._profile.cleanup()

    def _kill(self) -> None:
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(CLOSE_TIMEOUT)

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._commands, data) :]

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        """The next message, or BrowserError once ``deadline`` passed or the browser went away."""
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._responses], [], [], left)[0]:
                self._fail(f"no answer to {waiting_for} within {self._timeout:g} s")
            chunk = os.read(self._responses, 1 << 16)
            if not chunk:
                self._fail(f"Chromium closed its pipe while waiting for {waiting_for}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _take_events(self) -> list[dict[str, Any]]:
        events, self._events = self._events, []
        return events

    def _fail(self, why: str) -> None:
        output = ""
        if self._log is not None:
            self._log.seek(0)
            output = self._log.read().decode(errors="replace")[-2000:]
        self._kill()  # a hung browser must not outlive the test
        raise BrowserError(f"{why}; Chromium's output ends:\n{output}")


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    """console.error calls, uncaught exceptions and error log entries (failed loads among them)."""
    errors = []
    for event in events:
        params = event.get("params", {})
        if event["method"] == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append(" ".join(_describe(arg) for arg in params.get("args", [])))
        elif event["method"] == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append(details.get("exception", {}).get("description") or details["text"])
        elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            errors.append(f"{entry.get('url', '')} {entry['text']}".strip())
    return errors


def requested(events: list[dict[str, Any]]) -> list[str]:
    """Every URL the page requested, in order, but inline data: URLs."""
    urls = [
        event["params"]["request"]["url"]
        for event in events
        if event["method"] == "Network.requestWillBeSent"
    ]
    return [url for url in urls if not url.startswith("data:")]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header (its IHDR chunk); ValueError when ``data`` is no PNG."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError(f"not a PNG: starts {data[:16]!r}")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _describe(arg: dict[str, Any]) -> str:
    return str(arg["value"]) if "value" in arg else str(arg.get("description", arg.get("type")))


def _close_quietly(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _above_pipe_fds(ends: tuple[int, int]) -> tuple[int, int]:
    """A pipe whose two fds are above 3 and 4, so moving them onto 3 and 4 cannot clobber either."""
    moved = []
    for fd in ends:
        if fd <= RESPONSE_FD:
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, RESPONSE_FD + 1)
            os.close(fd)
            fd = high
        moved.append(fd)
    return moved[0], moved[1]
