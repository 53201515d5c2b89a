"""The one HTTP layer under every connector: pooled connections, timeouts, retries with exponential backoff and
jitter that honor Retry-After, a bounded retry budget, proactive pacing, and fail-fast authentication errors.

Retries use tenacity. What is retried: 429, 5xx, timeouts and connection errors, and bodies that are not the
JSON they claim to be (a truncated response). What is not: 401/403 (raised at once as AuthError naming the
connection and the vendor's message) and other 4xx (VendorError with the vendor's message).
"""

from __future__ import annotations

import functools
import json
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from tailor.sources import Credentials, Progress, Window

log = logging.getLogger(__name__)


class SourceError(Exception):
    """A source failed in a way a re-run will not fix by itself; the message says what and where."""


class AuthError(SourceError):
    """401/403: wrong, expired or under-privileged credentials. Never retried."""


class VendorError(SourceError):
    """A 4xx other than auth and throttling: the request itself is wrong (or the vendor refuses it)."""

    def __init__(self, message: str, status: int, body: str):
        super().__init__(message)
        self.status = status
        self.body = body


class RetryBudgetExhausted(SourceError):
    """Transient failures (5xx, timeouts, throttling, broken bodies) went on past the retry budget."""


class SourceSilent(SourceError):
    """An extract came back empty while the source itself shows a record updated inside the window: records were
    lost between the API and the batch (a filter or permission scope that broke silently, a misread page).
    Raised before anything is landed, so nothing is loaded and the watermark stays; a re-run reads the window again."""

    def __init__(self, source: str, entity: str, window: Window, newest: datetime):
        self.source, self.entity, self.window, self.newest = source, entity, window, newest
        super().__init__(
            f"{source}/{entity}: the extract of [{_iso(window.start)}, {_iso(window.end)}) returned no records, but "
            f"{source}'s most recently updated {entity} record before {_iso(window.end)} was updated at "
            f"{_iso(newest)}, inside that window: records were lost on the way. Nothing was landed and the "
            "watermark has not moved.")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _Transient(Exception):
    """A failure worth retrying; carries the server's Retry-After when it gave one."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Pacer:
    """Vendor-specific proactive pacing: wait before a request so that steady extraction rarely sees a 429.

    The base paces nothing; vendors read their own signals (Shopify's throttleStatus, rate-limit headers).
    """

    def wait_before(self, request_cost: float) -> float:
        """Seconds to sleep before a request of this cost."""
        return 0.0

    def observe(self, response: httpx.Response, body: object) -> None:
        """Learn from a response's headers and body."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8  # per request, the first included
    base_delay: float = 0.5
    max_delay: float = 30.0
    timeout: float = 30.0  # seconds per request (connect and read)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds: an integer, a decimal (Shopify sends '2.0') or an HTTP date."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _vendor_message(response: httpx.Response) -> str:
    """The vendor's own error text, short, for messages (never the request, which may hold a token)."""
    text = response.text.strip()
    return text[:300] + ("..." if len(text) > 300 else "")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS settings (certifi's CAs, or SSL_CERT_FILE / SSL_CERT_DIR), made once per process: each
    new client would load the CA bundle again, about 30 ms, and a run makes a client per stream and probe."""
    return httpx.create_ssl_context()


class HttpClient:
    """A pooled client for one source. JSON in, JSON out."""

    def __init__(self, credentials: Credentials, vendor: str, auth_headers: dict[str, str],
                 policy: RetryPolicy = RetryPolicy(), pacer: Pacer | None = None,
                 progress: Progress | None = None, sleep: Callable[[float], None] = time.sleep,
                 default_headers: dict[str, str] | None = None):
        self.credentials = credentials
        self.vendor = vendor
        self.policy = policy
        self.pacer = pacer or Pacer()
        self.progress = progress or Progress()
        self.sleep = sleep
        self.requests_sent = 0
        self._client = httpx.Client(base_url=credentials.base_url, timeout=policy.timeout, verify=tls_context(),
                                    headers={**(default_headers or {}), **auth_headers},
                                    limits=httpx.Limits(max_connections=4, max_keepalive_connections=4))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = min(self.policy.max_delay, self.policy.base_delay * 2 ** (state.attempt_number - 1))
        delay = backoff * (0.5 + random.random() / 2)  # jitter: spread retries of parallel workers
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        self.progress.retries += 1
        log.info("%s: %s, retry %d in %.1fs", self.credentials.conn_id,
                 exc.reason if isinstance(exc, _Transient) else exc, state.attempt_number, delay)
        return delay

    def request_json(self, method: str, path: str, *, params: dict | list | None = None, json_body: object = None,
                     cost: float = 1.0, headers: dict[str, str] | None = None,
                     content: bytes | None = None) -> tuple[object, httpx.Response]:
        """Send with retries; return (decoded JSON body, response). Raises SourceError subclasses.

        `content`: a body already encoded (exactly these bytes are sent, e.g. to stay within a size limit), instead
        of `json_body`; give its Content-Type in `headers`."""
        retrying = Retrying(stop=stop_after_attempt(self.policy.attempts), wait=self._wait,
                            retry=retry_if_exception_type(_Transient), sleep=self.sleep, reraise=True)
        try:
            return retrying(self._once, method, path, params, json_body, cost, headers, content)
        except _Transient as exc:
            raise RetryBudgetExhausted(
                f"{self.vendor} ({self.credentials.conn_id}): {method} {path} still failing after "
                f"{self.policy.attempts} attempts: {exc.reason}") from None

    def _once(self, method: str, path: str, params, json_body, cost: float, headers,
              content: bytes | None = None) -> tuple[object, httpx.Response]:
        pause = self.pacer.wait_before(cost)
        if pause > 0:
            self.progress.rate_waits += 1
            self.progress.rate_wait_seconds += pause
            self.sleep(pause)
        self.requests_sent += 1
        try:
            response = self._client.request(method, path, params=params, json=json_body, headers=headers,
                                            content=content)
        except httpx.TimeoutException:
            raise _Transient(f"timed out after {self.policy.timeout:.0f}s") from None
        except httpx.TransportError as exc:
            raise _Transient(f"connection failed: {type(exc).__name__}") from None
        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"{self.vendor} rejected the credentials of connection '{self.credentials.conn_id}' "
                            f"(HTTP {status}): {_vendor_message(response)}")
        if status == 429:
            self.progress.throttled += 1
            self.pacer.observe(response, None)  # a 429 still carries the vendor's rate-limit headers
            raise _Transient("throttled (429)", retry_after_seconds(response) or 1.0)
        if status >= 500:
            raise _Transient(f"server error {status}", retry_after_seconds(response))
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            if status < 400:
                raise _Transient(f"unreadable JSON body ({len(response.content)} bytes, truncated?)") from None
            body = None
        if status >= 400:
            raise VendorError(f"{self.vendor} ({self.credentials.conn_id}) refused {method} {path} "
                              f"(HTTP {status}): {_vendor_message(response)}", status, response.text)
        self.pacer.observe(response, body)
        return body, response
