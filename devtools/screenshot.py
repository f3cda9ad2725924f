"""A PNG of a page in headless Chromium, taken by the browser test's own client (tests/browser.py):
the README's picture of the demo's report comes from it::

    python -m devtools.screenshot demo-out/report/report.html docs/img/report.png
    python -m devtools.screenshot PAGE OUT.png --width 1200 --max-height 0   # the whole page

The page must load without a console error or a request beyond itself, as the browser test demands.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.browser import CHROMIUM, HEADLESS_FLAGS, Chromium, Shot, png_size

DEFAULT_WIDTH = 1200
DEFAULT_MAX_HEIGHT = 1440  # the demo report's title, its funnel and its stalls: the whole page is ~5600 px


def capture(page: Path, shot: Shot) -> bytes:
    """The PNG of ``page``; RuntimeError when it logged a console error or fetched anything else."""
    url = page.resolve().as_uri()
    with Chromium(CHROMIUM, HEADLESS_FLAGS) as browser:
        loaded = browser.load(url, "document.title", shot)
    elsewhere = [seen for seen in loaded.requests if seen != url]
    if loaded.console_errors or elsewhere:
        raise RuntimeError(f"{page}: console errors {loaded.console_errors}, requests {elsewhere}")
    assert loaded.png is not None
    return loaded.png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.screenshot", description=__doc__.split("::")[0])
    parser.add_argument("page", type=Path, help="the HTML file to open")
    parser.add_argument("out", type=Path, help="where to write the PNG")
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="viewport width, px (%(default)s)")
    parser.add_argument(
        "--max-height", type=int, default=DEFAULT_MAX_HEIGHT, help="clip there, px (%(default)s; 0: no clip)"
    )
    args = parser.parse_args(argv)
    png = capture(args.page, Shot(args.width, args.max_height or None))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(png)
    width, height = png_size(png)
    print(f"wrote {args.out}: {width}x{height} px, {len(png) // 1024} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
