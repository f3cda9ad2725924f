"""The Leap HTTP clients: the Connect API (paged GET) and Meters v2 search (paged POST).

One ``requests.Session`` carries both, with urllib3's ``Retry`` mounted for 429/5xx and network errors.
Auth failures are fatal and never retried; every other failure becomes one of the ``LeapError`` types
of :mod:`leap_tracker.leap.api`. The conventions (bearer auth, the retry policy, network errors, the
401/403 message) are module functions, shared with the Webhook Subscription API's client
(``adapters/leap_webhooks.py``). Entries and meters are yielded as raw dicts: validating them is the
poller's job, this module only checks the page envelope.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlencode

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from leap_tracker.adapters.secrets import secret_provider
from leap_tracker.config import LeapApiSettings
from leap_tracker.leap import wire
from leap_tracker.leap.api import (
    ConnectPage,
    ConnectQuery,
    LeapAuthError,
    LeapInvalidResponse,
    LeapPageTokenExpired,
    LeapRequestError,
    LeapUnavailable,
    PageAnswer,
)
from leap_tracker.timeutil import format_instant, parse_instant

ApiKeyProvider = Callable[[], str]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})
# The meters search is a POST but reads only, so it is as safe to repeat as the Connect GET.
RETRY_METHODS = frozenset({"GET", "POST"})


def api_key_provider(settings: LeapApiSettings) -> ApiKeyProvider:
    """Where the API key comes from: the Secrets Manager secret, else LEAP_API_KEY (local runs only)."""
    return secret_provider(
        settings.api_key_secret_arn,
        settings.api_key,
        settings.secret_max_age_seconds,
        missing="no Leap API key: set LEAP_API_KEY_SECRET_ARN (or LEAP_API_KEY for local runs)",
    )


@dataclass(slots=True)
class ClientStats:
    """Counters for metrics. ``requests`` are logical calls; ``retries`` are the extra attempts."""

    requests: int = 0
    retries: int = 0
    latency_seconds: float = 0.0
    connect_requests: int = 0
    meters_requests: int = 0
    auth_refusals: int = 0  # answers 401/403: the key was refused (the LeapAuthFailures metric)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class LeapApiRequestError(LeapRequestError):
    """A 4xx Leap refused, with the parts of Leap's ``{title, status, details}`` body it sent."""

    def __init__(self, message: str, status: int, title: str | None, details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.details = details


class BudgetedRetry(Retry):
    """urllib3's Retry, plus a bound on the TOTAL time spent retrying one request.

    Retry bounds the count and each single sleep (``backoff_max``, ``retry_after_max``) but not their
    sum, so a few long Retry-After answers could outlast the Lambda. Before each retry we check that
    the coming sleep still ends inside the budget (counted from the first failure); if not we stop, as
    if the count had run out. The check does not include the next attempt's own duration (bounded by
    the timeouts) nor the jitter, which is re-drawn when sleeping.
    """

    def __init__(
        self,
        *args: Any,
        budget_seconds: float = math.inf,
        deadline: float | None = None,
        on_retry: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.budget_seconds = budget_seconds
        self.deadline = deadline
        self.on_retry = on_retry

    def new(self, **kw: Any) -> Self:
        kw.setdefault("budget_seconds", self.budget_seconds)
        kw.setdefault("deadline", self.deadline)
        kw.setdefault("on_retry", self.on_retry)
        return super().new(**kw)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        following = super().increment(method, url, response, error, _pool, _stacktrace)
        if following.deadline is None:
            following.deadline = time.monotonic() + self.budget_seconds
        if time.monotonic() + following.planned_sleep(response) > following.deadline:
            reason = ResponseError(f"retry time budget of {self.budget_seconds:g}s spent")
            raise MaxRetryError(_pool, url, reason) from error  # type: ignore[arg-type]
        if self.on_retry is not None:
            self.on_retry()
        return following

    def planned_sleep(self, response: BaseHTTPResponse | None) -> float:
        """The sleep ``sleep()`` is about to take (Retry-After when honoured, else backoff sans jitter)."""
        if self.respect_retry_after_header and response is not None:
            retry_after = self.get_retry_after(response)
            if retry_after:
                return retry_after
        return self.new(backoff_jitter=0.0).get_backoff_time()


class BearerAuth(AuthBase):
    """Sets the bearer header on each request from the provider, so a rotated secret is picked up."""

    def __init__(self, provider: ApiKeyProvider) -> None:
        self._provider = provider

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[wire.AUTH_HEADER] = f"{wire.AUTH_SCHEME} {self._provider()}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(<redacted>)"


class LeapSession:
    """What every Leap API client holds: the settings, the base URL, the bearer auth and one session
    with the retry policy mounted (a context manager: it closes its session)."""

    def __init__(
        self,
        settings: LeapApiSettings,
        key_provider: ApiKeyProvider | None,
        session: requests.Session | None,
        **retry: Any,  # mount_retry_policy's keywords: which methods, what to count
    ) -> None:
        self._settings = settings
        self._base_url = settings.base_url.rstrip("/")
        self._auth = BearerAuth(key_provider or api_key_provider(settings))
        self._session = session or requests.Session()
        mount_retry_policy(self._session, settings, **retry)

    def __repr__(self) -> str:
        environment = self._settings.environment
        return f"{type(self).__name__}(base_url={self._base_url!r}, environment={environment!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()


class LeapHttpClient(LeapSession):
    """Implements ``ConnectSource`` and ``MeterSource`` over HTTP."""

    def __init__(
        self,
        settings: LeapApiSettings,
        key_provider: ApiKeyProvider | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.stats = ClientStats()
        super().__init__(settings, key_provider, session, on_retry=self._count_retry)

    # --- Connect API -------------------------------------------------------------------------

    def iter_pages(self, query: ConnectQuery, page_token: str | None = None) -> Iterator[ConnectPage]:
        """Yield the pages of one Connect selection, one at a time, starting at ``page_token``."""
        answers = self.iter_page_answers(query, page_token)
        return (answer.page() for answer in answers)

    def iter_page_answers(self, query: ConnectQuery, page_token: str | None = None) -> Iterator[PageAnswer]:
        """The same pages as answers received and not decoded yet (``api.PageAnswer``): the next
        request goes out once the caller read the answer's page."""
        selection = self._connect_selection(query)  # eager: a bad date fails at the call, not mid-loop
        return self._connect_answers(selection, page_token)

    def _connect_answers(self, selection: list[tuple[str, str]], token: str | None) -> Iterator[PageAnswer]:
        names = self._settings.connect_wire
        while True:
            pairs = selection + ([(names.param_page_token, token)] if token else [])
            # Encoded here, exactly once, with no safe characters: '+', '/' and '=' in a token must
            # reach Leap as %2B, %2F and %3D (requests leaves existing escapes alone).
            url = f"{self._base_url}{names.path}?{urlencode(pairs, quote_via=quote, safe='')}"
            response = self._answered("GET", url, sent_token=token)
            self.stats.connect_requests += 1
            answer = _ConnectAnswer(response, f"GET {_path_of(response.url)}", self._connect_page)
            yield answer
            token = self._following_token(token, answer.page().next_page_token)
            del answer  # not held while the next page is fetched
            if token is None:
                return

    def _connect_selection(self, query: ConnectQuery) -> list[tuple[str, str]]:
        names = self._settings.connect_wire
        if query.ref_id:
            pairs = [(names.param_ref_id, query.ref_id)]
        elif query.start_date:
            pairs = [(names.param_start_date, _wire_instant(query.start_date))]
        else:
            pairs = [(names.param_last_interaction_date, _wire_instant(str(query.last_interaction_date)))]
        return [*pairs, (names.param_page_size, str(self._settings.page_size))]

    def _connect_page(self, body: Any) -> ConnectPage:
        names = self._settings.connect_wire
        envelope = _require_object(body, "Connect answer")
        entries = _require_list_of_objects(envelope.get(names.list_field), f"Connect {names.list_field!r}")
        token = _optional_token(envelope.get(names.next_page_token_field), names.next_page_token_field)
        return ConnectPage(entries=entries, next_page_token=token)

    # --- Meters v2 ---------------------------------------------------------------------------

    def search_by_connection_references(
        self, reference_ids: Sequence[str], created_after: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield every meter of up to 100 Reference IDs (raw Meters v2 dicts), following pages."""
        unique_ids = list(dict.fromkeys(reference_ids))  # Leap requires unique items
        if len(unique_ids) > wire.METERS_MAX_REFERENCE_IDS:
            raise ValueError(
                f"{len(unique_ids)} Reference IDs in one meters search; Leap accepts at most "
                f"{wire.METERS_MAX_REFERENCE_IDS}"
            )
        if not unique_ids:
            return iter(())
        body: dict[str, Any] = {
            wire.METERS_REQ_CONNECTION_REFERENCE_IDS: unique_ids,
            wire.METERS_REQ_PAGE_SIZE: wire.METERS_MAX_PAGE_SIZE,
        }
        if created_after:
            body[wire.METERS_REQ_CREATED_AFTER] = _wire_instant(created_after)
        return self._meter_pages(body)

    def _meter_pages(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        url = f"{self._base_url}{wire.METERS_SEARCH_PATH}"
        token: str | None = None
        while True:
            request_body = {**body, wire.METERS_REQ_PAGE_TOKEN: token} if token else body
            answer = self._call("POST", url, json_body=request_body, sent_token=token)
            self.stats.meters_requests += 1
            envelope = _require_object(answer, "meters search answer")
            meters = _require_list_of_objects(envelope.get(wire.METERS_RESP_METERS), "meters")
            next_token = _optional_token(
                envelope.get(wire.METERS_RESP_NEXT_PAGE_TOKEN), wire.METERS_RESP_NEXT_PAGE_TOKEN
            )
            yield from meters
            token = self._following_token(token, next_token)
            if token is None:
                return

    # --- shared HTTP -------------------------------------------------------------------------

    def _count_retry(self) -> None:
        self.stats.retries += 1

    def _call(self, method: str, url: str, *, json_body: Any = None, sent_token: str | None) -> Any:
        """One logical request (retries included); returns the decoded JSON body of a 2xx answer."""
        response = self._answered(method, url, json_body=json_body, sent_token=sent_token)
        return json_answer(response, f"{method} {_path_of(response.url)}")

    def _answered(
        self, method: str, url: str, *, json_body: Any = None, sent_token: str | None
    ) -> requests.Response:
        """One logical request (retries included); its 2xx answer, or the error it means raised."""
        started = time.monotonic()
        self.stats.requests += 1
        try:
            response = send(self._session, method, url, self._settings, self._auth, json_body)
        finally:
            self.stats.latency_seconds += time.monotonic() - started
        return self._checked(response, method, sent_token)

    def _checked(self, response: requests.Response, method: str, sent_token: str | None) -> requests.Response:
        status = response.status_code
        where = f"{method} {_path_of(response.url)}"
        if status in AUTH_STATUSES:
            self.stats.auth_refusals += 1
            raise LeapAuthError(auth_refusal_message(self._settings, status))
        if 200 <= status < 300:
            return response
        if status in RETRY_STATUSES or status >= 500:
            raise LeapUnavailable(f"{where}: Leap still answered {status} when retries ran out")
        if status == 400 and sent_token:
            raise LeapPageTokenExpired(f"{where}: Leap refused the page token (400); restart the selection")
        if 400 <= status < 500:
            raise _request_error(where, response)
        raise LeapInvalidResponse(f"{where}: unexpected HTTP status {status}")

    @staticmethod
    def _following_token(sent: str | None, received: str | None) -> str | None:
        if received is not None and received == sent:
            raise LeapInvalidResponse("Leap sent back the page token it was given: paging would never end")
        return received


class _ConnectAnswer:
    """A 2xx Connect answer; its JSON decoded and its envelope checked on the first ``page()``, and
    the raw answer let go then."""

    __slots__ = ("_decode", "_page", "_response", "_where")

    def __init__(self, response: requests.Response, where: str, decode: Callable[[Any], ConnectPage]) -> None:
        self._response: requests.Response | None = response
        self._where = where
        self._decode = decode
        self._page: ConnectPage | None = None

    def page(self) -> ConnectPage:
        if self._page is None:
            assert self._response is not None
            response, self._response = self._response, None
            self._page = self._decode(json_answer(response, self._where))
        return self._page


# --- the conventions every Leap client of the layer shares (this one, adapters/leap_webhooks.py) ------


def mount_retry_policy(
    session: requests.Session,
    settings: LeapApiSettings,
    *,
    methods: frozenset[str] = RETRY_METHODS,
    on_retry: Callable[[], None] | None = None,
) -> None:
    """Mount the one retry policy for Leap: 429/5xx and network errors, backoff, Retry-After, a budget.

    ``methods`` are the ones safe to repeat (a request that creates something is not).
    """
    retry = BudgetedRetry(
        total=settings.max_retries,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=methods,
        backoff_factor=settings.backoff_factor,
        backoff_jitter=settings.backoff_factor,
        backoff_max=settings.max_retry_seconds,
        respect_retry_after_header=True,
        retry_after_max=math.ceil(settings.max_retry_seconds),
        # Hand back the last 429/5xx instead of raising, so the error names the status Leap sent.
        raise_on_status=False,
        budget_seconds=settings.max_retry_seconds,
        on_retry=on_retry,
    )
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)


def send(
    session: requests.Session,
    method: str,
    url: str,
    settings: LeapApiSettings,
    auth: AuthBase,
    json_body: Any = None,
) -> requests.Response:
    """One request (the mounted retries included); what the network does wrong becomes a LeapError."""
    try:
        return session.request(
            method,
            url,
            json=json_body,
            auth=auth,
            timeout=(settings.connect_timeout_seconds, settings.read_timeout_seconds),
            headers={"Accept": "application/json"},
        )
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
        # A body cut off mid-way surfaces after Retry is done with the request, so it is not
        # retried here: the caller resumes from its checkpoint on the next run.
        raise LeapInvalidResponse(f"{method} {_path_of(url)}: the answer was cut off ({exc})") from exc
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError) as exc:
        raise LeapUnavailable(
            f"{method} {_path_of(url)}: Leap unreachable after {settings.max_retries} "
            f"retries or {settings.max_retry_seconds:g}s ({type(exc).__name__})"
        ) from exc
    except requests.RequestException as exc:  # anything else requests raises is still a LeapError
        raise LeapUnavailable(f"{method} {_path_of(url)}: {type(exc).__name__}") from exc


def auth_refusal_message(settings: LeapApiSettings, status: int) -> str:
    """What a 401/403 means, naming the environment and the variable that holds the key."""
    base_url = settings.base_url.rstrip("/")
    environment = settings.environment
    where = (
        f"the {environment} environment ({base_url})"
        if environment in ("production", "staging")
        else f"the Leap environment at {base_url}"
    )
    variable = "LEAP_API_KEY_SECRET_ARN" if settings.api_key_secret_arn else "LEAP_API_KEY"
    return (
        f"Leap rejected the API key ({status}) for {where}: check {variable} holds a key for this environment"
    )


def json_answer(response: requests.Response, where: str) -> Any:
    """A 2xx answer's JSON; an answer that is not JSON is Leap's fault (LeapInvalidResponse)."""
    try:
        return response.json()
    except ValueError as exc:
        raise LeapInvalidResponse(f"{where}: the answer is not JSON ({response.status_code})") from exc


def json_or_none(response: requests.Response) -> Any:
    """An error answer's JSON body when it has one (a 500 may be plain text)."""
    try:
        return response.json()
    except ValueError:
        return None


def _request_error(where: str, response: requests.Response) -> LeapApiRequestError:
    body = json_or_none(response)
    problem = body if isinstance(body, dict) else {}
    title = problem.get(wire.ERROR_TITLE)
    details = problem.get(wire.ERROR_DETAILS)
    status = response.status_code
    summary = f"{where}: Leap refused the request ({status}"
    summary += f" {title})" if title else ")"
    if details:
        summary += f": {details}"
    return LeapApiRequestError(summary, status=status, title=title, details=details)


def _wire_instant(text: str) -> str:
    return format_instant(parse_instant(text))


def _path_of(url: str) -> str:
    """The URL without its query string (a page token is long and says nothing useful in a message)."""
    return url.split("?", 1)[0]


def _require_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LeapInvalidResponse(f"{what} is {type(value).__name__}, not a JSON object")
    return value


def _require_list_of_objects(value: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise LeapInvalidResponse(f"{what} is {type(value).__name__}, not a list")
    for position, item in enumerate(value):
        if not isinstance(item, dict):
            raise LeapInvalidResponse(f"{what}[{position}] is {type(item).__name__}, not an object")
    return value


def _optional_token(value: Any, what: str) -> str | None:
    """A next-page token; absent, null or empty all mean this was the last page."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise LeapInvalidResponse(f"{what} is {type(value).__name__}, not a string")
    return value
