"""The fault soak, short: two seeds, a simulated day each, faults on every boundary, every invariant
of devtools/soak holding with something checked; and every planted bug caught by its invariant."""

from __future__ import annotations

from contextlib import redirect_stdout
from io import StringIO

import pytest

from devtools.leap_simulator.webhooks import WebhookFault
from devtools.soak.driver import run_seed
from devtools.soak.plan import FaultKind
from devtools.soak.plants import PLANTS

HOURS = 24
CUSTOMERS = 60


@pytest.mark.parametrize("seed", [1, 2])
def test_a_simulated_day_of_faults_loses_and_doubles_nothing(seed: int) -> None:
    with redirect_stdout(StringIO()):  # the functions' JSON logs
        report = run_seed(seed, HOURS, CUSTOMERS)

    counts = report.timeline.counts()
    assert sum(counts.values()) > 10, counts
    pushed = {kind for kind in counts if kind.startswith("leap_webhook_")}  # Leap's webhooks ran, faulty
    assert pushed == {f"leap_webhook_{fault}" for fault in WebhookFault}, counts
    assert counts[FaultKind.POLLER_TIME_LIMIT], counts  # passes were cut and continued
    for result in report.results:
        assert result.passed, (result.name, result.violations[:5])
    checked = {result.name: result.checked for result in report.results}
    vacuous = {
        name
        for name, count in checked.items()
        if count == 0 and name != "no alarm condition without an alarm"
    }
    assert not vacuous, checked


# Each plant with the shortest run that still catches it (a small population keeps the file quick).
PLANT_HOURS = {
    "emitter-counts-partial-publish": 12,
    "hour-from-start-date": 12,
    "poller-drops-page-after-retry": 8,
    "poller-drops-continuations": 8,
    "outreach-max-attempts-off-by-one": 12,
    "outreach-messages-completed": 12,
    "outreach-ignores-holdout": 12,
    "receiver-accepts-any-secret": 8,
}
PLANT_CUSTOMERS = 40


def test_every_plant_has_a_run_here() -> None:
    assert set(PLANT_HOURS) == set(PLANTS)


@pytest.mark.parametrize("name", sorted(PLANT_HOURS))
def test_a_planted_bug_is_caught_by_its_invariant(name: str) -> None:
    plant = PLANTS[name]
    with redirect_stdout(StringIO()):
        report = run_seed(1, PLANT_HOURS[name], PLANT_CUSTOMERS, plant)

    caught = [r for r in report.results if r.name == plant.invariant]
    assert caught, plant.invariant
    assert caught[0].violations, [(r.name, len(r.violations)) for r in report.results]
