"""What the soak injected and when: seeded, in order, shown around each violation."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True, slots=True)
class Mark:
    at: datetime  # simulated time
    kind: str  # a FaultKind value, or "phase" for the driver's own marks
    target: str  # function, path or endpoint
    detail: str = ""

    def line(self) -> str:
        moment = self.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"{moment}  {self.kind:<24} {self.target} {self.detail}".rstrip()


@dataclass
class Timeline:
    marks: list[Mark] = field(default_factory=list)

    def add(self, at: datetime, kind: str, target: str, detail: str = "") -> None:
        self.marks.append(Mark(at, kind, target, detail))

    def counts(self) -> Counter[str]:
        """Faults that took effect, by kind (the driver's phase marks left out)."""
        return Counter(mark.kind for mark in self.marks if mark.kind != "phase")

    def around(self, moment: datetime | None, window: timedelta = timedelta(hours=2)) -> list[Mark]:
        if moment is None:
            return []
        return [mark for mark in self.marks if abs(mark.at - moment) <= window]
