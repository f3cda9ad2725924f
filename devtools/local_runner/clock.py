"""The simulated clock: one instant that moto, the handlers and the Leap simulator all read.

time-machine patches ``time.time`` and ``datetime.now`` process-wide, with ``tick=False`` so time
only moves when :meth:`SimulatedClock.advance` moves it. moto computes SQS visibility timeouts,
message timers and redrive counts from those same calls, so advancing the clock is what makes a
failed message visible again. ``time.monotonic`` is not patched: socket timeouts and the
remaining-time countdown of a Lambda context keep working in real time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import time_machine

# (new now, how far it moved)
ClockListener = Callable[[datetime, timedelta], None]


class SimulatedClock:
    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the start must be timezone-aware (UTC)")
        self._start = start.astimezone(UTC)
        self._travel: time_machine.travel | None = None
        self._traveller: time_machine.Traveller | None = None
        self._listeners: list[ClockListener] = []

    def start(self) -> None:
        self._travel = time_machine.travel(self._start, tick=False)
        self._traveller = self._travel.start()

    def stop(self) -> None:
        if self._travel is not None:
            self._travel.stop()
        self._travel = self._traveller = None

    def now(self) -> datetime:
        return datetime.now(UTC)

    def on_advance(self, listener: ClockListener) -> None:
        """Call ``listener`` after every move (e.g. to keep the Leap simulator's clock in step)."""
        self._listeners.append(listener)

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the simulated clock only moves forward")
        if self._traveller is None:
            raise RuntimeError("the clock is not running (use the LocalCloud as a context manager)")
        self._traveller.shift(delta)
        now = self.now()
        for listener in self._listeners:
            listener(now, delta)
        return now
