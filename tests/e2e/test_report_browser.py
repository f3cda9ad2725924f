"""report.html in a real browser: headless Chromium (Debian's ``chromium``, driven over its DevTools
protocol on a pipe by tests/browser.py: no port) opens the page ``leap-tracker report`` wrote from data
in moto, and every chart must have rendered: its inline <svg> laid out with a non-zero box, one per chart
the report drew, no console error and no request beyond the page itself; a screenshot of it is saved
in the test's tmp_path (its path printed and recorded as the ``screenshot`` property). The second test
plants breakage in that same page and shows the check catches each kind.

Chromium missing is a failure, never a skip: ``apt-get install chromium`` (``.ci/run`` does it when
/usr/bin/chromium is missing).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devtools.template_tables import create_connections_table
from leap_tracker.adapters.dynamo import serialize
from leap_tracker.timeutil import format_instant
from leap_tracker_cli import main as cli
from leap_tracker_cli.insight import render
from tests.browser import CHROMIUM, HEADLESS_FLAGS, Chromium, Shot, png_size
from tests.builders import history_writes, journey

INSTALL = "apt-get install -y chromium (or run .ci/run, which installs it)"
MIN_SCREENSHOT_BYTES = 10_000  # five charts and their tables: a blank or broken capture is far smaller
TABLE = "connections"
T0 = datetime(2025, 3, 5, 8, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=9)
# The title, the <h1>, and each chart's <svg>, in a section headed by its title, with its laid-out box.
PAGE_SCRIPT = """(() => {
const charts = Array.from(document.querySelectorAll('section')).map(section => {
  const svg = section.querySelector(':scope > svg');
  const box = svg ? svg.getBoundingClientRect() : null;
  const heading = section.querySelector('h2');
  return {title: heading ? heading.textContent : null,
          width: box ? box.width : 0, height: box ? box.height : 0,
          shapes: svg ? svg.querySelectorAll('path, rect, text, use').length : 0};
});
const h1 = document.querySelector('h1');
return {title: document.title, heading: h1 ? h1.textContent : '', charts: charts};
})()"""


@dataclass(frozen=True)
class Rendered:
    """What the browser made of a page."""

    title: str
    heading: str
    charts: list[dict[str, Any]]
    console_errors: list[str]
    requests: list[str]
    png: bytes | None = None


def problems(rendered: Rendered, expected_charts: list[str]) -> list[str]:
    """Everything wrong with a rendered report: empty when each chart rendered and nothing else happened."""
    found = []
    if rendered.title != "leap-tracker report" or rendered.heading != "leap-tracker report":
        found.append(f"title/heading: {rendered.title!r}, {rendered.heading!r}")
    titles = [chart["title"] for chart in rendered.charts]
    if titles != expected_charts:
        found.append(f"chart sections {titles}, expected {expected_charts}")
    for chart in rendered.charts:
        if not (chart["width"] > 0 and chart["height"] > 0 and chart["shapes"] > 0):
            found.append(f"chart {chart['title']!r} not rendered: {chart}")
    found.extend(f"console error: {message}" for message in rendered.console_errors)
    found.extend(f"network request: {url}" for url in rendered.requests)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"the browser test needs {CHROMIUM}: {INSTALL}", pytrace=False)
    with Chromium(CHROMIUM, HEADLESS_FLAGS) as chromium:
        yield chromium


def render_in(browser: Chromium, page: Path, shot: Shot | None = None) -> Rendered:
    url = page.resolve().as_uri()
    loaded = browser.load(url, PAGE_SCRIPT, shot)  # evaluated once the load event fired: layout has run
    value = loaded.value
    # The page's own file:// load aside (the browser leaves out inline data: URLs: matplotlib draws
    # the heatmap as an embedded PNG).
    besides = [seen for seen in loaded.requests if seen != url]
    return Rendered(
        value["title"], value["heading"], value["charts"], loaded.console_errors, besides, loaded.png
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """report.html and report.json of six entries (three completed), written by the command from moto."""
    out = tmp_path_factory.mktemp("insight")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_connections_table(client, TABLE)  # as template.yaml declares it
        for index in range(6):
            write_history(client, journey(f"Ref{index}", done=index % 2 == 0, start=T0))
        argv = ["report", "--table", TABLE, "--out", str(out), "--now", format_instant(NOW)]
        assert cli.main(argv, environ={}, client=lambda service, region_name=None: client) == 0
    return out


def write_history(client: Any, versions: list[dict[str, Any]]) -> None:
    for *_, item in history_writes(versions, T0):
        client.put_item(TableName=TABLE, Item=serialize(item))


def drawn_charts(report_dir: Path) -> list[str]:
    """The charts the report drew, one per figure report.json holds (render.CHARTS names them)."""
    document = json.loads((report_dir / "report.json").read_text())
    figures = ("funnel_daily", "stalls", "time_to_complete", "outreach", "variants")
    assert all(figure in document for figure in figures), sorted(document)
    assert len(render.CHARTS) == len(figures)
    return list(render.CHARTS)


def test_every_chart_of_the_report_renders_in_chromium(
    browser: Chromium,
    report: Path,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    rendered = render_in(browser, report / "report.html", Shot())

    assert problems(rendered, drawn_charts(report)) == []
    assert len(rendered.charts) == 5
    assert rendered.png is not None
    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(rendered.png)
    print(f"screenshot of the report: {screenshot}")
    record_property("screenshot", str(screenshot))
    width, height = png_size(screenshot.read_bytes())
    assert width == Shot().width
    assert height > 0
    assert screenshot.stat().st_size > MIN_SCREENSHOT_BYTES


# Each breaks the real page in one way the check must see.
PLANTED = {
    "a script error in a chart": (
        lambda page: page.replace("<svg", "<svg><script>throw new Error('planted')</script></svg><svg", 1),
        "console error",
    ),
    "an external URL": (
        lambda page: page.replace("</body>", "<img src='http://127.0.0.1:9/planted.png'></body>"),
        "network request: http://127.0.0.1:9/planted.png",
    ),
    "a chart laid out with no box": (
        lambda page: page.replace("<svg", "<svg style='display:none'", 1),
        "not rendered",
    ),
    "a chart missing": (
        lambda page: page.replace("<section><h2>time to complete</h2>", "<div><h2>time to complete</h2>"),
        "chart sections",
    ),
}


@pytest.mark.parametrize("breakage", list(PLANTED))
def test_the_check_fails_on_a_broken_page(
    browser: Chromium, report: Path, tmp_path: Path, breakage: str
) -> None:
    plant, expected = PLANTED[breakage]
    original = (report / "report.html").read_text()
    broken = plant(original)
    assert broken != original
    (tmp_path / "report.html").write_text(broken)

    found = problems(render_in(browser, tmp_path / "report.html"), drawn_charts(report))

    assert any(expected in problem for problem in found), found
