"""One page ahead: the next Connect page is asked for while the current one is stored.

Leap chains its pages by token, so a pass cannot be faster than pages x Leap's latency; what it can
do is not add its own work to that. The token of page n+1 is in page n's answer, so the request for
n+1 goes out (in one worker thread) as soon as page n is in hand, and validating, comparing and writing
page n happens while Leap answers. Never more than one page is in flight or waiting: memory stays
that of two pages, however long the pass. The source's iterator is only ever advanced by the worker,
one call at a time; a failure of the fetch is raised where the page is taken, as it would have been
without the worker. A source that hands out answers not decoded yet (``iter_page_answers``: the HTTP
client does) has them decoded in the caller's thread, when it takes the page: the worker then holds
only the raw answer of page n+1 while page n is stored, never a second decoded page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from leap_tracker.leap.api import ConnectPage, PageAnswer

type Fetched = tuple[ConnectPage | None, float]  # the page (None: the source ended) and its latency (ms)
type Received = tuple[ConnectPage | PageAnswer | None, float]


class PagePrefetch:
    """``request()`` asks for the next page in the background; ``take()`` waits for it."""

    def __init__(self, pages: Iterator[ConnectPage | PageAnswer], monotonic: Callable[[], float]) -> None:
        self._pages = pages
        self._monotonic = monotonic
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="leap-prefetch")
        self._in_flight: Future[Received] | None = None

    @property
    def in_flight(self) -> bool:
        return self._in_flight is not None

    def request(self) -> None:
        if self._in_flight is None:
            self._in_flight = self._executor.submit(self._fetch)

    def take(self) -> Fetched:
        """The page asked for (asking now if nothing is in flight); raises what fetching it raised.
        An answer not decoded yet is decoded here, in the caller's thread: by now the caller let the
        page before it go, so two decoded pages are never alive at once."""
        self.request()
        assert self._in_flight is not None
        future, self._in_flight = self._in_flight, None
        received, latency_ms = future.result()
        del future
        if received is None or isinstance(received, ConnectPage):
            return received, latency_ms
        return received.page(), latency_ms

    def _fetch(self) -> Received:
        started = self._monotonic()
        page = next(self._pages, None)
        return page, round((self._monotonic() - started) * 1000, 3)

    def __enter__(self) -> PagePrefetch:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        """Waits for a page still in flight (its result, or failure, is dropped: the pass stops before
        it), so that nothing uses the source after the run."""
        if self._in_flight is not None:
            self._in_flight.exception()
            self._in_flight = None
        self._executor.shutdown(wait=True)
        close = getattr(self._pages, "close", None)
        if close is not None:
            close()
