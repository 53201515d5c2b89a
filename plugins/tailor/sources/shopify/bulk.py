"""Reading a large window as one bulk operation instead of thousands of pages.

First loads, backfills, anything whose `<entity>Count(query:)` reaches the bulk threshold run as a bulk operation
with the same selection and search as the paged path: bulkOperationRunQuery -> poll bulkOperation(id:) ->
download the JSONL at `url` without our token (on Shopify it is a presigned storage URL) -> reassemble it
(reassembly). A shop runs a limited number of bulk operations at a time: LIMIT_REACHED / OPERATION_IN_PROGRESS
are waited out until the deadline. An operation abandoned by an error while it runs (deadline, interrupt) is
canceled so it does not hold one of the shop's slots.

A bulk operation reads the shop as of its creation, after the window's end, so every version it returns is as
exact as a paged read: a record edited afterwards has its newer version in a later window.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tailor.sources import Progress, RecordVersion
from tailor.sources.http import RetryBudgetExhausted, RetryPolicy, SourceError, tls_context
from tailor.sources.shopify.paging import report_progress
from tailor.sources.shopify.reassembly import BulkResultReader
from tailor.sources.shopify.selection import EntitySpec
from tailor.sources.shopify.transport import GraphqlTransport

log = logging.getLogger(__name__)

DEFAULT_BULK_THRESHOLD = 10_000  # records in a window from which a bulk operation beats paging
BUSY_CODES = {"LIMIT_REACHED", "OPERATION_IN_PROGRESS"}  # no slot free now: try again later
ENDED_STATUSES = ("FAILED", "CANCELED", "EXPIRED")  # statuses an operation never leaves, without a result


def reaches_bulk_threshold(transport: GraphqlTransport, spec: EntitySpec, search: str, threshold: int | None) -> bool:
    """Whether the search matches at least `threshold` records (None: never bulk, 0 or less: always), counted by
    Shopify up to the threshold."""
    if threshold is None:
        return False
    if threshold <= 0:
        return True
    query = (f"query TailorCount($query: String, $limit: Int) {{ {spec.count_field}(query: $query, "
             f"limit: $limit) {{ count precision }} }}")
    data = transport.request(f"count:{spec.entity}", query, {"query": search, "limit": threshold})
    counted = data.get(spec.count_field) or {}
    return int(counted.get("count") or 0) >= threshold


@dataclass(frozen=True)
class BulkPolling:
    """How often a bulk operation is asked about (growing by half each time up to `max_interval`), and for how long."""

    interval: float
    max_interval: float
    timeout: float


@dataclass
class BulkOperation:
    gid: str
    status: str = "CREATED"
    finished: bool = False  # it ended on Shopify's side: nothing to cancel


class BulkOperationRunner:
    """Runs one query as a bulk operation on Shopify: start it (waiting for a free slot), poll it until it ends,
    cancel it when abandoned. The result is the final bulkOperation object (with `url` of its JSONL)."""

    def __init__(self, transport: GraphqlTransport, progress: Progress, polling: BulkPolling,
                 sleep: Callable[[float], None], clock: Callable[[], float]):
        self.transport = transport
        self.progress = progress
        self.polling = polling
        self.sleep = sleep
        self.clock = clock

    def run(self, query: str) -> dict:
        deadline = self.clock() + self.polling.timeout
        operation = self._start(query, deadline)
        try:
            return self._wait(operation, deadline)
        finally:
            if not operation.finished:
                self._cancel(operation)

    def _start(self, query: str, deadline: float) -> BulkOperation:
        mutation = ("mutation TailorBulkRun($query: String!) { bulkOperationRunQuery(query: $query, "
                    "groupObjects: false) { bulkOperation { id status } userErrors { field message code } } }")
        conn_id = self.transport.conn_id
        delay = self.polling.interval
        while True:
            data = self.transport.request("bulk:run", mutation, {"query": query})
            payload = data.get("bulkOperationRunQuery") or {}
            errors = payload.get("userErrors") or []
            operation = payload.get("bulkOperation")
            if operation and not errors:
                log.info("%s: bulk operation %s started", conn_id, operation["id"])
                return BulkOperation(operation["id"], operation.get("status", "CREATED"))
            busy = {e.get("code") for e in errors} & BUSY_CODES
            if not busy:
                raise SourceError(f"Shopify ({conn_id}) refused the bulk query: "
                                  + "; ".join(str(e.get("message")) for e in errors))
            if self.clock() + delay > deadline:
                raise SourceError(f"Shopify ({conn_id}): no bulk operation slot became free in "
                                  f"{self.polling.timeout:.0f}s ({', '.join(sorted(busy))})")
            log.info("%s: bulk operations busy (%s), trying again in %.1fs", conn_id, ", ".join(sorted(busy)), delay)
            self.progress.rate_waits += 1
            self.progress.rate_wait_seconds += delay
            self.sleep(delay)
            delay = min(self.polling.max_interval, delay * 1.5)

    def _wait(self, operation: BulkOperation, deadline: float) -> dict:
        query = ("query TailorBulkPoll($id: ID!) { bulkOperation(id: $id) { id status errorCode objectCount "
                 "rootObjectCount fileSize url partialDataUrl } }")
        conn_id = self.transport.conn_id
        delay = self.polling.interval
        while True:
            info = self.transport.request("bulk:poll", query, {"id": operation.gid}).get("bulkOperation")
            if not info:
                raise SourceError(f"Shopify ({conn_id}) no longer knows bulk operation {operation.gid}")
            operation.status = info.get("status", "")
            if operation.status == "COMPLETED":
                operation.finished = True
                log.info("%s: bulk operation %s completed: %s objects, %s bytes", conn_id, operation.gid,
                         info.get("objectCount"), info.get("fileSize"))
                return info
            if operation.status in ENDED_STATUSES:
                operation.finished = True
                partial = " (partial data exists; not used)" if info.get("partialDataUrl") else ""
                raise SourceError(f"Shopify ({conn_id}) bulk operation {operation.gid} ended {operation.status} "
                                  f"with error code {info.get('errorCode')}{partial}")
            if self.clock() + delay > deadline:
                raise SourceError(f"Shopify ({conn_id}) bulk operation {operation.gid} still {operation.status} "
                                  f"after {self.polling.timeout:.0f}s; canceled")
            self.sleep(delay)
            delay = min(self.polling.max_interval, delay * 1.5)

    def _cancel(self, operation: BulkOperation) -> None:
        mutation = ("mutation TailorBulkCancel($id: ID!) { bulkOperationCancel(id: $id) { bulkOperation { status } "
                    "userErrors { message } } }")
        with suppress(SourceError):  # best effort: the operation is abandoned either way
            self.transport.request("bulk:cancel", mutation, {"id": operation.gid})
            log.info("%s: bulk operation %s canceled", self.transport.conn_id, operation.gid)


def download_result(url: str, path: Path, *, conn_id: str, policy: RetryPolicy, progress: Progress,
                    sleep: Callable[[float], None]) -> None:
    """The result file, streamed to disk. The URL is presigned storage: no Shopify token goes there."""
    host = urlsplit(url).netloc
    with httpx.Client(timeout=policy.timeout, follow_redirects=True, verify=tls_context()) as client:
        for attempt in range(1, policy.attempts + 1):
            try:
                with client.stream("GET", url) as response:
                    if response.status_code >= 400 and response.status_code < 500:
                        raise SourceError(f"Shopify ({conn_id}) bulk result at {host} answered HTTP "
                                          f"{response.status_code} (expired link?)")
                    if response.status_code >= 500:
                        raise httpx.HTTPStatusError("server error", request=response.request, response=response)
                    _write_whole_body(response, path)
                    return
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                if attempt == policy.attempts:
                    raise RetryBudgetExhausted(f"Shopify ({conn_id}): downloading the bulk result from "
                                               f"{host} failed {attempt} times: {type(exc).__name__}") from None
                delay = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
                progress.retries += 1
                log.info("%s: bulk download from %s failed (%s), retry in %.1fs", conn_id, host,
                         type(exc).__name__, delay)
                sleep(delay)


def _write_whole_body(response: httpx.Response, path: Path) -> None:
    """The streamed body to `path`; a body shorter than its Content-Length is a transport error (retried)."""
    expected = response.headers.get("Content-Length")
    written = 0
    with open(path, "wb") as out:
        for chunk in response.iter_bytes(1 << 20):
            out.write(chunk)
            written += len(chunk)
    if expected is not None and int(expected) != written:
        raise httpx.ReadError(f"got {written} of {expected} bytes")


class BulkReader:
    """The versions of one entity matching a search, read through a bulk operation and its downloaded result."""

    def __init__(self, transport: GraphqlTransport, progress: Progress, polling: BulkPolling,
                 download_policy: RetryPolicy, sleep: Callable[[float], None], clock: Callable[[], float]):
        self.transport = transport
        self.progress = progress
        self.download_policy = download_policy
        self.sleep = sleep
        self.operations = BulkOperationRunner(transport, progress, polling, sleep, clock)
        self.result_reader = BulkResultReader(transport)

    def records(self, spec: EntitySpec, search: str) -> Iterator[RecordVersion]:
        query = (f"{{ {spec.root}(query: {json.dumps(search)}, sortKey: UPDATED_AT) {{ edges {{ node {{ "
                 f"{spec.node_selection(True)} }} }} }} }}")
        url = self.operations.run(query).get("url")
        if not url:  # COMPLETED with no objects: Shopify gives no file
            return
        with tempfile.TemporaryDirectory(prefix="tailor-shopify-bulk-") as tmp:
            path = Path(tmp) / "result.jsonl"
            download_result(url, path, conn_id=self.transport.conn_id, policy=self.download_policy,
                            progress=self.progress, sleep=self.sleep)
            self.progress.pages += 1
            yield from self.result_reader.records(spec, path)
        report_progress(self.progress)
