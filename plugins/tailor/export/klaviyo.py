"""The Klaviyo sink: the feed's payloads as profiles, through Bulk Import Profiles (JSON:API, revision 2026-10-15).

    sink = KlaviyoSink(connections.credentials("klaviyo"))       # or KlaviyoSink.from_connection()
    sink.deliver(payloads, as_of_date=d, delivery_id=i, on_batch=record)

Each payload becomes one `profile` resource: attributes `email`, `external_id` (Tailor's customer id) and `first_name`
(left out when None, so a name Klaviyo holds is never blanked), every other field under `attributes.properties`; a
custom property whose value is None is removed in Klaviyo through the profile's `meta.patch_properties.unset`
rather than left at its previous value.

Limits (Bulk Import Profiles reference): 10,000 profiles and 5 MB of request body per job, 100 KB per profile. A
profile is serialized once, as compact UTF-8 JSON, and that text is both what is measured and what is sent: a
profile over 100 KB is skipped (BatchOutcome.skipped, "profile is N bytes, over Klaviyo's 100 KB limit"); the rest
are packed in feed order into jobs that hold both limits counting the JSON envelope, so a large batch is split into
more jobs, never refused.

Each job: POST /api/profile-bulk-import-jobs, then its status every `poll_interval` seconds until it is `complete`,
then, when its failed_count is not 0, every page of
GET /api/profile-bulk-import-jobs/{id}/import-errors (page[size]=100, following only links.next's page[cursor]):
an import-error's source.pointer (/data/attributes/profiles/data/<i>) names the profile that failed, and its
code and detail are the reason (BatchOutcome.failed). Everything else of the job is BatchOutcome.sent. A job that
ends `cancelled` (or `failed`) raises KlaviyoJobFailed naming the job.

Status: one GET /api/profile-bulk-import-jobs (sort=-created_at, 100 a page: the newest jobs first) reads the
status of every job in flight at once; a job not on its first LIST_PAGES pages (other jobs of the account were
created since) is read alone, GET /api/profile-bulk-import-jobs/{id}. Polling one job at a time would spend two
requests of the 150 a minute per job where the listing spends one per round of up to 100 jobs, so the POSTs, one a
job, are what bounds a delivery.

Throughput: the endpoints are driven by one worker thread each (submit, poll, import-errors; the poller reads both
the listing and single jobs), so each endpoint is paced exactly as the source connector paces its reads (its
EndpointPacer: 10/s burst, 150/min steady for every one, corrected from RateLimit-* headers) while they run side
by side; the payload iterator and on_batch stay on the calling thread. Up to `max_in_flight` jobs are between
packing and reporting at once (a round of the poller reads every running job, at most every `poll_interval`
seconds); on_batch is called once per completed job, in submission order, so at most `max_in_flight` jobs'
payloads (plus the one being packed) are held. 429 (after Retry-After), 5xx, timeouts and broken bodies are retried
by the source connector's HttpClient. A retried POST is safe: a job that a failed attempt did create (a 5xx after
the job was made, a lost answer) imports the same profiles, and an import is an upsert by email.

On failure (a job cancelled, a request still failing after its retries, a refused credential): no further job
is submitted, the jobs already in flight are finished and reported, then the first error is raised. Payloads not
reported are not recorded as delivered, so the next delivery sends them again.

A process killed while jobs are in flight cannot report them. So each job is announced once Klaviyo has given it an
id (on_submit(job_id, payloads), before it is polled), and the next delivery asks Klaviyo what became of the jobs
announced but never reported (resolve_jobs): a complete job's profiles count as delivered (less its import errors),
and only the profiles of a job Klaviyo does not know or that ended without importing are sent again.

The API key goes only into the Authorization header of requests to the connection's base URL; it is never logged.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import date

from tailor.export.payload import BatchOutcome, Payload
from tailor.sources import Credentials, Progress
from tailor.sources.http import HttpClient, RetryPolicy, SourceError, VendorError
from tailor.sources.klaviyo import REVISION, EndpointPacer, _next_cursor

log = logging.getLogger(__name__)

JOBS_PATH = "/api/profile-bulk-import-jobs"
MEDIA_TYPE = "application/vnd.api+json"
# Published limits (Bulk Import Profiles, 2026-10-15 reference).
MAX_PROFILES_PER_JOB = 10_000
MAX_JOB_BYTES = 5 * 1024 * 1024
MAX_PROFILE_BYTES = 100 * 1024
# (burst per second, steady per minute) of each endpoint the sink calls: the same for all four.
ENDPOINT_LIMITS = {"submit": (10, 150), "list": (10, 150), "poll": (10, 150), "errors": (10, 150)}
ERRORS_PAGE_MAX = 100
LIST_PAGE_MAX = 100
LIST_PAGES = 2  # pages of the listing read in a round before the jobs missing from them are read one by one
# Jobs submitted and not yet reported, at most. Each is in flight for two rounds of the poller at least (2 s apart
# by default), and Klaviyo takes 150 POSTs a minute. Measured with 5 MB jobs, rate limits on: 16 in flight gave
# 138-146 jobs a minute, 32 gave 144-154 (as many as 64 did). Memory: up to 32 jobs' payloads, 5 MB of JSON each.
MAX_IN_FLIGHT = 32
ATTRIBUTE_FIELDS = ("email", "external_id", "first_name")  # payload fields that are profile attributes
RUNNING_STATUSES = ("queued", "processing")
ENVELOPE_HEAD = b'{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":['
ENVELOPE_TAIL = b"]}}}}"
_POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)(?:/|$)")


class KlaviyoSinkError(SourceError):
    """A delivery to Klaviyo did not finish; the message names the job (when there was one) and what happened."""


class KlaviyoJobFailed(KlaviyoSinkError):
    """A bulk import job ended cancelled or failed."""

    def __init__(self, job_id: str, status: str, attributes: dict):
        self.job_id, self.status = job_id, status
        super().__init__(
            f"Klaviyo bulk import job {job_id} ended '{status}' ({attributes.get('completed_count')} of "
            f"{attributes.get('total_count')} profiles completed, {attributes.get('failed_count')} failed): its "
            "profiles were not recorded as delivered and the next delivery sends them again")


def profile_resource(payload: Payload) -> dict:
    """The payload as a Klaviyo `profile` resource for a bulk import (see the module docstring)."""
    fields = payload.fields
    attributes: dict = {"email": fields.get("email") or payload.email,
                        "external_id": str(fields.get("external_id") or payload.customer_id)}
    if fields.get("first_name") is not None:
        attributes["first_name"] = fields["first_name"]
    properties = {k: v for k, v in fields.items() if k not in ATTRIBUTE_FIELDS and v is not None}
    if properties:
        attributes["properties"] = properties
    resource: dict = {"type": "profile", "attributes": attributes}
    unset = [k for k, v in fields.items() if k not in ATTRIBUTE_FIELDS and v is None]
    if unset:
        resource["meta"] = {"patch_properties": {"unset": unset}}
    return resource


def encode(resource: dict) -> bytes:
    """Compact UTF-8 JSON: what is measured against the limits is exactly what is sent."""
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def job_body(profiles: list[bytes]) -> bytes:
    return ENVELOPE_HEAD + b",".join(profiles) + ENVELOPE_TAIL


@dataclass(eq=False)  # compared by identity
class _Job:
    """One bulk import job's worth of payloads, in feed order, and the payloads skipped while it was packed."""

    payloads: list[Payload] = field(default_factory=list)
    encoded: list[bytes] | None = field(default_factory=list)  # dropped once the job is submitted
    size: int = len(ENVELOPE_HEAD) + len(ENVELOPE_TAIL)  # the request body's bytes
    skipped: list[tuple[Payload, str]] = field(default_factory=list)
    number: int = 0  # 1-based, in submission order
    job_id: str | None = None
    future: Future = field(default_factory=Future)  # the job's BatchOutcome, or why it has none
    submitted_at: float = 0.0
    next_poll: float = 0.0
    polls: int = 0
    attributes: dict = field(default_factory=dict)  # the job's, once complete


@dataclass
class ImportStats:
    """What the last delivery did and how fast (jobs, profiles, requests per endpoint, seconds)."""

    jobs: int = 0
    profiles: int = 0  # submitted in jobs
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    requests: dict[str, int] = field(default_factory=dict)  # per endpoint (submit, poll, errors), retries included
    polls_per_job: list[int] = field(default_factory=list)
    seconds: float = 0.0
    progress: Progress = field(default_factory=Progress)  # retries, 429s met, rate waits

    def profiles_per_second(self) -> float:
        return self.profiles / self.seconds if self.seconds else 0.0

    def jobs_per_minute(self) -> float:
        return 60 * self.jobs / self.seconds if self.seconds else 0.0


class _Stopped(Exception):
    """The delivery is being abandoned (the caller failed): the workers drop their jobs."""


class _NotSubmitted(Exception):
    """A job packed but not submitted, because an earlier job failed: not an error of its own."""


@dataclass
class _Delivery:
    """One delivery's workers: their clients, queues and flags."""

    delivery_id: str
    clients: dict[str, HttpClient]
    on_submit: Callable[[str, list[Payload]], None] | None = None  # a job's id and payloads once Klaviyo has it
    submit: queue.Queue = field(default_factory=queue.Queue)
    poll: queue.Queue = field(default_factory=queue.Queue)
    errors: queue.Queue = field(default_factory=queue.Queue)
    halt: threading.Event = field(default_factory=threading.Event)  # submit nothing more
    stop: threading.Event = field(default_factory=threading.Event)  # drop everything (the caller failed)


class KlaviyoSink:
    """Delivers payloads to Klaviyo as profiles through bulk import jobs. See the module docstring."""

    name = "klaviyo"

    def __init__(self, credentials: Credentials, *, max_profiles_per_job: int = MAX_PROFILES_PER_JOB,
                 max_job_bytes: int = MAX_JOB_BYTES, max_profile_bytes: int = MAX_PROFILE_BYTES,
                 poll_interval: float = 2.0, max_in_flight: int = MAX_IN_FLIGHT, job_timeout: float = 6 * 3600.0,
                 revision: str = REVISION, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        if not 1 <= max_profiles_per_job <= MAX_PROFILES_PER_JOB:
            raise ValueError(f"max_profiles_per_job must be within 1..{MAX_PROFILES_PER_JOB:,}")
        if not 1 <= max_profile_bytes <= MAX_PROFILE_BYTES:
            raise ValueError(f"max_profile_bytes must be within 1..{MAX_PROFILE_BYTES:,}")
        if not len(ENVELOPE_HEAD) + len(ENVELOPE_TAIL) + max_profile_bytes <= max_job_bytes <= MAX_JOB_BYTES:
            raise ValueError(f"max_job_bytes must hold one profile of max_profile_bytes ({max_profile_bytes:,}) in "
                             f"its envelope and be at most {MAX_JOB_BYTES:,}")
        if max_in_flight < 1 or poll_interval < 0:
            raise ValueError("max_in_flight must be at least 1 and poll_interval not negative")
        self.credentials = credentials
        self.max_profiles_per_job = max_profiles_per_job
        self.max_job_bytes = max_job_bytes
        self.max_profile_bytes = max_profile_bytes
        self.poll_interval = poll_interval
        self.max_in_flight = max_in_flight
        self.job_timeout = job_timeout
        self.revision = revision
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        # kept across deliveries: Klaviyo's windows do not reset between them
        self.pacers = {name: EndpointPacer(*limits, clock=clock) for name, limits in ENDPOINT_LIMITS.items()}
        self.stats = ImportStats()  # of the last delivery

    @classmethod
    def from_connection(cls, conn_id: str | None = None, **options) -> KlaviyoSink:
        """The sink for the `klaviyo_default` Connection (or `conn_id`); the simulator when none is configured."""
        from tailor import connections

        return cls(connections.credentials("klaviyo", conn_id), **options)

    # ---- delivery (the calling thread) ------------------------------------------------------------------------
    def deliver(self, payloads: Iterable[Payload], *, as_of_date: date, delivery_id: str,
                on_batch: Callable[[BatchOutcome], None],
                on_submit: Callable[[str, list[Payload]], None] | None = None) -> None:
        """Send every payload (see the module docstring); on_batch(outcome) once per completed job, in order;
        on_submit(job_id, payloads) as each job is created (on the submitting thread; an error in it fails the job)."""
        stats = self.stats = ImportStats()
        run = _Delivery(delivery_id, {name: self._client(stats.progress, self.pacers[name]) for name in ENDPOINT_LIMITS},
                        on_submit=on_submit)
        workers = [threading.Thread(target=target, args=(run,), name=f"klaviyo-{name}", daemon=True)
                   for name, target in (("submit", self._submitter), ("poll", self._poller),
                                        ("errors", self._errors_reader))]
        for worker in workers:
            worker.start()
        window: deque[_Job] = deque()
        errors: list[BaseException] = []
        started = self.clock()
        log.info("klaviyo delivery %s for %s: importing through %s (up to %d jobs in flight)", delivery_id,
                 as_of_date, self.credentials.conn_id, self.max_in_flight)

        def report(job: _Job) -> None:
            while not wait([job.future], timeout=1.0).done:
                if not all(worker.is_alive() for worker in workers) and not job.future.done():  # a bug
                    job.future.set_exception(KlaviyoSinkError(
                        f"a Klaviyo import worker stopped unexpectedly; job #{job.number} has no outcome"))
            try:
                outcome = job.future.result()
            except _NotSubmitted:
                stats.jobs -= 1
                stats.profiles -= len(job.payloads)
                return
            except Exception as exc:  # every job error is raised once the jobs in flight are reported
                errors.append(exc)
                run.halt.set()
                log.error("klaviyo delivery %s: %s", delivery_id, exc)
                return
            stats.sent += len(outcome.sent)
            stats.failed += len(outcome.failed)
            stats.skipped += len(outcome.skipped)
            on_batch(outcome)

        finished = False
        try:
            for job in self._pack(payloads, delivery_id):
                while window and (len(window) >= self.max_in_flight or window[0].future.done()):
                    report(window.popleft())
                if errors or run.halt.is_set():
                    break
                if job.payloads:
                    stats.jobs += 1
                    stats.profiles += len(job.payloads)
                    job.number = stats.jobs
                    run.submit.put(job)
                else:  # only skipped payloads left: reported in order like a job
                    job.future.set_result(BatchOutcome(skipped=job.skipped))
                window.append(job)
            while window:
                report(window.popleft())
            finished = True
        finally:
            if not finished:  # the payloads or on_batch failed: drop the jobs, leave them to Klaviyo
                run.stop.set()
            run.submit.put(None)  # each worker passes the end on to the next one
            for worker in workers:
                worker.join(timeout=None if finished else 5.0)
            stats.seconds = self.clock() - started
            stats.requests = {name: client.requests_sent for name, client in run.clients.items()}
            for client in run.clients.values():
                client.close()
        log.info("klaviyo delivery %s: %d jobs, %d profiles submitted (%d imported, %d failed, %d skipped) in "
                 "%.1f s: %.0f profiles/s, %.1f jobs/min; requests %s, %d retries, %d throttled", delivery_id,
                 stats.jobs, stats.profiles, stats.sent, stats.failed, stats.skipped, stats.seconds,
                 stats.profiles_per_second(), stats.jobs_per_minute(), stats.requests, stats.progress.retries,
                 stats.progress.throttled)
        if errors:
            first = errors[0]
            more = f" ({len(errors) - 1} more jobs failed too)" if len(errors) > 1 else ""
            if isinstance(first, KlaviyoSinkError):
                first.args = (f"{first}{more}",)
                raise first
            raise KlaviyoSinkError(f"{first}{more}") from first

    def resolve_jobs(self, jobs: Mapping[str, list[Payload]]) -> Iterator[tuple[str, BatchOutcome | None]]:
        """What became of jobs an earlier delivery submitted but never reported (job id -> its payloads, in the order
        submitted): each job's outcome once Klaviyo says it is complete (its import errors read as failed), or None
        when Klaviyo does not know it or it ended without importing; a job still running is polled every
        `poll_interval` seconds until it ends (at most `job_timeout` seconds, then KlaviyoSinkError)."""
        progress = Progress()
        client = self._client(progress, self.pacers["poll"])
        errors_client = self._client(progress, self.pacers["errors"])
        try:
            for job_id, payloads in jobs.items():
                job = _Job(payloads=list(payloads), encoded=None, job_id=job_id, submitted_at=self.clock())
                while True:
                    try:
                        attributes = self._poll(job, client)
                    except KlaviyoJobFailed as exc:
                        log.warning("klaviyo: earlier job %s ended '%s': its %d profiles are sent again", job_id,
                                    exc.status, len(payloads))
                        yield job_id, None
                        break
                    except VendorError as exc:
                        if exc.status != 404:
                            raise
                        log.warning("klaviyo: earlier job %s is unknown to Klaviyo: its %d profiles are sent again",
                                    job_id, len(payloads))
                        yield job_id, None
                        break
                    if attributes is not None:
                        failures = {} if attributes.get("failed_count") == 0 else self._import_errors(job,
                                                                                                       errors_client)
                        yield job_id, self._outcome(job, failures, attributes, f"resolving {job_id}")
                        break
                    self.sleep(self.poll_interval)
        finally:
            client.close()
            errors_client.close()

    def _pack(self, payloads: Iterable[Payload], delivery_id: str) -> Iterator[_Job]:
        """Payloads into jobs within the profile-count and body-size limits; oversized profiles skipped."""
        job = _Job()
        for payload in payloads:
            try:
                raw = encode(profile_resource(payload))
            except (TypeError, ValueError) as exc:
                job.skipped.append((payload, f"profile is not JSON-serializable: {exc}"))
                log.warning("klaviyo delivery %s: skipped customer %s: not JSON-serializable (%s)", delivery_id,
                            payload.customer_id, exc)
                continue
            if len(raw) > self.max_profile_bytes:
                reason = (f"profile is {len(raw)} bytes, over Klaviyo's {self.max_profile_bytes // 1024} KB limit"
                          if self.max_profile_bytes % 1024 == 0 else
                          f"profile is {len(raw)} bytes, over the {self.max_profile_bytes}-byte limit")
                job.skipped.append((payload, reason))
                log.warning("klaviyo delivery %s: skipped customer %s: %s", delivery_id, payload.customer_id, reason)
                continue
            added = len(raw) + (1 if job.payloads else 0)  # the comma between profiles
            if job.payloads and (len(job.payloads) >= self.max_profiles_per_job
                                 or job.size + added > self.max_job_bytes):
                yield job
                job, added = _Job(), len(raw)
            job.payloads.append(payload)
            job.encoded.append(raw)
            job.size += added
        if job.payloads or job.skipped:
            yield job

    # ---- the workers: one per endpoint, so each endpoint is paced by one thread ---------------------------------
    def _submitter(self, run: _Delivery) -> None:
        """POST each job; hand it to the poller."""
        while (job := run.submit.get()) is not None:
            if run.halt.is_set() or run.stop.is_set():
                job.future.set_exception(_NotSubmitted())
                continue
            try:
                self._submit(job, run)
                if run.on_submit is not None:
                    run.on_submit(str(job.job_id), job.payloads)
            except Exception as exc:
                self._fail(run, job, exc)
                continue
            job.submitted_at = self.clock()
            job.next_poll = job.submitted_at + self.poll_interval
            run.poll.put(job)
        run.poll.put(None)

    def _submit(self, job: _Job, run: _Delivery) -> None:
        body = job_body(job.encoded)
        job.encoded = None  # the payloads stay (for the outcome), their JSON text goes
        try:
            answer, _ = run.clients["submit"].request_json("POST", JOBS_PATH, content=body,
                                                           headers={"Content-Type": MEDIA_TYPE})
        except SourceError as exc:
            raise KlaviyoSinkError(f"Klaviyo ({self.credentials.conn_id}): bulk import job #{job.number} of "
                                   f"{len(job.payloads)} profiles ({len(body):,} bytes) could not be submitted: "
                                   f"{exc}") from exc
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict) or not data.get("id"):
            raise KlaviyoSinkError(f"Klaviyo ({self.credentials.conn_id}): POST {JOBS_PATH} answered without a job id")
        job.job_id = str(data["id"])
        log.info("klaviyo delivery %s: job #%d %s submitted (%d profiles, %d bytes)", run.delivery_id, job.number,
                 job.job_id, len(job.payloads), len(body))

    def _poller(self, run: _Delivery) -> None:
        """Read the status of every running job in rounds, a round when the first of them is due; hand complete jobs
        with failures to the errors reader, finish the others."""
        running: list[_Job] = []
        closing = False
        while running or not closing:
            try:
                item = run.poll.get(block=not running)
            except queue.Empty:
                item = False
            if item is None:
                closing = True
                continue
            if item is not False:
                running.append(item)
                continue  # take every job waiting first
            if run.stop.is_set():
                for job in running:
                    job.future.set_exception(_Stopped())
                running.clear()
                continue
            delay = min(job.next_poll for job in running) - self.clock()
            if delay > 0:
                run.stop.wait(delay)
                continue
            try:
                listed = self._list_jobs({str(job.job_id) for job in running}, run.clients["list"])
            except Exception as exc:  # no job's status can be read: each fails, the next delivery resolves them
                for job in running:
                    self._fail(run, job, exc)
                running.clear()
                continue
            for job in list(running):
                try:
                    if job.job_id in listed:
                        job.polls += 1
                        attributes = self._status(job, listed[job.job_id], f"GET {JOBS_PATH}")
                    elif job.next_poll <= self.clock():
                        attributes = self._poll(job, run.clients["poll"])
                    else:
                        continue
                    if attributes is None:
                        job.next_poll = self.clock() + self.poll_interval
                        continue
                    running.remove(job)
                    self.stats.polls_per_job.append(job.polls)
                    if attributes.get("failed_count") == 0:
                        job.future.set_result(self._outcome(job, {}, attributes, run.delivery_id))
                    else:
                        job.attributes = attributes
                        run.errors.put(job)
                except Exception as exc:
                    if job in running:
                        running.remove(job)
                    self._fail(run, job, exc)
        run.errors.put(None)

    def _list_jobs(self, wanted: set[str], client: HttpClient) -> dict[str, dict]:
        """The attributes of the wanted jobs found on the first LIST_PAGES pages of the account's jobs, newest
        first (the jobs in flight are normally all on the first)."""
        found: dict[str, dict] = {}
        params: dict[str, str] = {"sort": "-created_at", "page[size]": str(LIST_PAGE_MAX)}
        for _ in range(LIST_PAGES):
            body, _ = client.request_json("GET", JOBS_PATH, params=params)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise KlaviyoSinkError(f"Klaviyo ({self.credentials.conn_id}): GET {JOBS_PATH} answered without a "
                                       "data list")
            for job in data:
                if isinstance(job, dict) and job.get("id") in wanted and isinstance(job.get("attributes"), dict):
                    found[job["id"]] = job["attributes"]
            cursor = _next_cursor(body)
            if cursor is None or len(found) == len(wanted):
                break
            params["page[cursor]"] = cursor
        return found

    def _poll(self, job: _Job, client: HttpClient) -> dict | None:
        """One poll of one job: its attributes once complete, None while it runs. Raises when it ended otherwise."""
        path = f"{JOBS_PATH}/{job.job_id}"
        body, _ = client.request_json("GET", path)
        job.polls += 1
        data = body.get("data") if isinstance(body, dict) else None
        return self._status(job, data.get("attributes") if isinstance(data, dict) else None, f"GET {path}")

    def _status(self, job: _Job, attributes: object, where: str) -> dict | None:
        """The job's attributes once complete, None while it runs; raises when it ended otherwise or ran too long."""
        if not isinstance(attributes, dict):
            raise KlaviyoSinkError(f"Klaviyo ({self.credentials.conn_id}): {where} answered without job "
                                   f"{job.job_id}'s attributes")
        status = attributes.get("status")
        if status == "complete":
            return attributes
        if status not in RUNNING_STATUSES:
            raise KlaviyoJobFailed(str(job.job_id), str(status), attributes)
        if self.clock() - job.submitted_at > self.job_timeout:
            raise KlaviyoSinkError(f"Klaviyo bulk import job {job.job_id} is still '{status}' after "
                                   f"{self.job_timeout:.0f} s; its profiles were not recorded as delivered")
        return None

    def _errors_reader(self, run: _Delivery) -> None:
        """Read the import-errors of each complete job that has failures; finish it."""
        while (job := run.errors.get()) is not None:
            if run.stop.is_set():
                job.future.set_exception(_Stopped())
                continue
            try:
                failures = self._import_errors(job, run.clients["errors"])
                job.future.set_result(self._outcome(job, failures, job.attributes, run.delivery_id))
            except Exception as exc:
                self._fail(run, job, exc)

    def _fail(self, run: _Delivery, job: _Job, exc: Exception) -> None:
        """The job's error, raised by deliver() in its turn; from now on nothing more is submitted."""
        run.halt.set()
        job.future.set_exception(_named(exc, job, self.credentials.conn_id))

    def _outcome(self, job: _Job, failures: dict[int, str], attributes: dict, delivery_id: str) -> BatchOutcome:
        expected = attributes.get("failed_count")
        if isinstance(expected, int) and expected != len(failures):
            log.warning("klaviyo delivery %s: job %s reports %d failed profiles but its import-errors name %d",
                        delivery_id, job.job_id, expected, len(failures))
        outcome = BatchOutcome(skipped=job.skipped, batch_id=job.job_id)
        for index, payload in enumerate(job.payloads):
            reason = failures.get(index)
            if reason is None:
                outcome.sent.append(payload)
            else:
                outcome.failed.append((payload, reason))
                log.warning("klaviyo delivery %s: job %s: customer %s not imported: %s", delivery_id, job.job_id,
                            payload.customer_id, reason)
        log.info("klaviyo delivery %s: job #%d %s complete after %d polls: %d imported, %d failed", delivery_id,
                 job.number, job.job_id, job.polls, len(outcome.sent), len(outcome.failed))
        return outcome

    def _import_errors(self, job: _Job, client: HttpClient) -> dict[int, str]:
        """The job's failed profiles: index in the job -> reason, from every page of its import-errors."""
        path = f"{JOBS_PATH}/{job.job_id}/import-errors"
        failures: dict[int, str] = {}
        by_key: dict[str, int] | None = None
        cursors: set[str] = set()
        cursor: str | None = None
        while True:
            params = {"page[size]": str(ERRORS_PAGE_MAX), **({"page[cursor]": cursor} if cursor else {})}
            body, _ = client.request_json("GET", path, params=params)
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise KlaviyoSinkError(f"Klaviyo ({self.credentials.conn_id}): GET {path} answered without a data list")
            for error in body["data"]:
                attributes = (error.get("attributes") if isinstance(error, dict) else None) or {}
                index = _pointer_index(attributes.get("source"), len(job.payloads))
                if index is None:  # no usable pointer: match the original payload's external_id or email
                    if by_key is None:
                        by_key = {}
                        for i, payload in enumerate(job.payloads):
                            by_key.setdefault(f"id:{payload.fields.get('external_id') or payload.customer_id}", i)
                            by_key.setdefault(f"email:{payload.email.strip().lower()}", i)
                    original = attributes.get("original_payload") or {}
                    original = original.get("attributes", original) if isinstance(original, dict) else {}
                    index = by_key.get(f"id:{original.get('external_id')}",
                                       by_key.get(f"email:{str(original.get('email') or '').strip().lower()}"))
                if index is None:
                    log.warning("klaviyo: job %s: an import error names no profile of the job (%s: %s)", job.job_id,
                                attributes.get("code"), attributes.get("detail"))
                    continue
                failures[index] = (f"Klaviyo import error {attributes.get('code') or 'unknown'}: "
                                   f"{attributes.get('detail') or attributes.get('title') or 'no detail given'}")
            cursor = _next_cursor(body)
            if cursor is None:
                return failures
            if cursor in cursors:
                raise KlaviyoSinkError(f"Klaviyo ({self.credentials.conn_id}): GET {path} handed out the same page "
                                       "cursor twice; stopping rather than looping")
            cursors.add(cursor)

    def _client(self, progress: Progress, pacer: EndpointPacer) -> HttpClient:
        return HttpClient(self.credentials, "Klaviyo", {"Authorization": f"Klaviyo-API-Key {self.credentials.token}"},
                          policy=self.policy, pacer=pacer, progress=progress, sleep=self.sleep,
                          default_headers={"revision": self.revision, "Accept": MEDIA_TYPE})


def _named(exc: Exception, job: _Job, conn_id: str) -> Exception:
    """A worker's error as the delivery raises it: naming the job."""
    if isinstance(exc, KlaviyoSinkError):
        return exc
    if isinstance(exc, _Stopped):
        return exc
    where = f"bulk import job {job.job_id}" if job.job_id else f"bulk import job #{job.number} (not submitted)"
    error = KlaviyoSinkError(f"Klaviyo ({conn_id}): {where}: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _pointer_index(source: object, count: int) -> int | None:
    """The profile index an import-error's source.pointer names (/data/attributes/profiles/data/<i>), if valid."""
    pointer = source.get("pointer") if isinstance(source, dict) else None
    match = _POINTER.match(pointer) if isinstance(pointer, str) else None
    if match is None:
        return None
    index = int(match.group(1))
    return index if index < count else None
