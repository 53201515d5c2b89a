"""KlaviyoSink against the simulator's Klaviyo over real HTTP: every field readable back from GET /api/profiles,
batches split by profile count and by body size (never refused), profiles over 100 KB skipped with their reason,
invalid profiles reported failed with Klaviyo's reason from import-errors, 429s and 5xx on the POST and the polls
retried with nothing lost or duplicated, a cancelled job raised after the finished ones are reported, the key never
logged, and the throughput against the bulk endpoints' rate limits."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import date

import httpx
import pytest

import simulator.klaviyo as sim_klaviyo
import tailor.export.klaviyo as klaviyo_sink
from simulator.faults import Faults
from simulator.state import TOKENS
from tailor.export.klaviyo import (
    MAX_JOB_BYTES,
    MAX_PROFILE_BYTES,
    KlaviyoJobFailed,
    KlaviyoSink,
    KlaviyoSinkError,
    encode,
    job_body,
    profile_resource,
)
from tailor.export.payload import BatchOutcome, Payload
from tailor.sources import Credentials
from tailor.sources.http import RetryPolicy
from tests.integration.lakekit import FAST

CONN = "klaviyo_test"
AS_OF = date(2026, 11, 1)
HEADERS = {"Authorization": f"Klaviyo-API-Key {TOKENS['klaviyo']}", "revision": sim_klaviyo.REVISION,
           "Accept": "application/vnd.api+json"}


def make_payload(i: int, email: str | None = None, **extra) -> Payload:
    """A feed row as the export builds it: attributes, custom properties of every JSON type, a None or two."""
    recommendations = [{"rank": r + 1, "product_id": str(7000 + (i * 7 + r) % 97), "title": f"Product ✓ {r}",
                        "price": round(9.5 + r * 1.25, 2), "reason": "bought_together" if r % 2 else "popular"}
                       for r in range(10)]
    fields = {"email": email or f"tailor.customer{i}@example.com", "external_id": str(100_000 + i),
              "first_name": None if i % 7 == 0 else f"Zoë{i}", "tailor_greeting_name": f"Zoë{i}",
              "tailor_segment": ("Champions", "At risk", "New")[i % 3], "tailor_segment_id": i % 3,
              "tailor_churn_probability": round((i % 100) / 100, 2), "tailor_next_order_date":
              None if i % 5 == 0 else "2026-12-01", "tailor_recommendations": recommendations,
              "tailor_send_hour_local": i % 24, "tailor_experiment_group": "treatment", **extra}
    return Payload.of(fields["external_id"], fields["email"], fields)


def make_sink(sim, **options) -> KlaviyoSink:
    options.setdefault("policy", FAST)
    options.setdefault("sleep", lambda seconds: None)  # retries without waiting (timing is not the point)
    options.setdefault("poll_interval", 0)
    return KlaviyoSink(Credentials(CONN, sim.url, TOKENS["klaviyo"]), **options)


def deliver(sink: KlaviyoSink, payloads, **kwargs) -> list[BatchOutcome]:
    outcomes: list[BatchOutcome] = []
    sink.deliver(payloads, as_of_date=AS_OF, delivery_id="klaviyo-test", on_batch=outcomes.append, **kwargs)
    return outcomes


def read_back(sim, email: str) -> list[dict]:
    with httpx.Client(base_url=sim.url, headers=HEADERS, timeout=30) as c:
        answer = c.get("/api/profiles", params={"filter": f'equals(email,"{email}")'})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def expected_properties(payload: Payload) -> dict:
    return {k: v for k, v in payload.fields.items() if k not in ("email", "external_id", "first_name")
            and v is not None}


def sent(outcomes: list[BatchOutcome]) -> list[str]:
    return [p.customer_id for o in outcomes for p in o.sent]


def test_every_field_reads_back_batches_in_order_and_streamed(simulator, monkeypatch, caplog):
    sim = simulator(customers=300, rate_limits=False)
    world = sim.state.world
    rows = world.index("profiles", world.now)[0]
    known = [world.profile_at(int(q), world.now) for q in rows[:40]]
    payloads = [make_payload(i, email=known[i]["email"] if i < len(known) else None) for i in range(300)]
    # the customer had a property Tailor now sends as None: the import removes it
    stale = payloads[5]
    assert stale.fields["tailor_next_order_date"] is None
    deliver(make_sink(sim), [make_payload(5, email=stale.email, tailor_next_order_date="2020-01-01")])
    monkeypatch.setenv("AIRFLOW_CONN_KLAVIYO_DEFAULT",
                       json.dumps({"conn_type": "http", "host": sim.url, "password": TOKENS["klaviyo"]}))
    sink = KlaviyoSink.from_connection(max_profiles_per_job=50, poll_interval=0, policy=FAST, max_in_flight=3)
    assert sink.credentials.conn_id == "klaviyo_default"
    consumed, consumed_at_batch = 0, []

    def stream() -> Iterator[Payload]:
        nonlocal consumed
        for payload in payloads:
            consumed += 1
            yield payload

    outcomes: list[BatchOutcome] = []

    def on_batch(outcome: BatchOutcome) -> None:
        consumed_at_batch.append(consumed)
        outcomes.append(outcome)

    with caplog.at_level(logging.DEBUG):
        sink.deliver(stream(), as_of_date=AS_OF, delivery_id="klaviyo-test", on_batch=on_batch)
    assert len(outcomes) == 6 and all(len(o.sent) == 50 and not o.failed and not o.skipped for o in outcomes)
    assert sent(outcomes) == [p.customer_id for p in payloads]  # once each, in feed order
    # streamed: when job k is reported, at most max_in_flight + 1 jobs' payloads were read ahead of it
    assert all(n <= (k + 1 + 3 + 1) * 50 for k, n in enumerate(consumed_at_batch)), consumed_at_batch
    # each job's status read from the listing of the account's jobs, none alone; the simulator moves every running
    # job a step per listing, so a job created just before a round is done after one or two of the sink's rounds
    assert sink.stats.jobs == 6 and sink.stats.profiles == 300 and len(sink.stats.polls_per_job) == 6
    assert set(sink.stats.polls_per_job) <= {1, 2} and sink.stats.requests["poll"] == 0, sink.stats
    # every profile through any(email, [...]) pages, a sample through equals(email, "...") one by one
    everyone = {}
    with httpx.Client(base_url=sim.url, headers=HEADERS, timeout=30) as c:
        for start in range(0, len(payloads), 100):
            emails = ",".join(f'"{p.email}"' for p in payloads[start:start + 100])
            answer = c.get("/api/profiles", params={"filter": f"any(email,[{emails}])", "page[size]": 100})
            assert answer.status_code == 200 and answer.json()["links"]["next"] is None, answer.text
            everyone.update({p["attributes"]["email"]: p for p in answer.json()["data"]})
    assert len(everyone) == len(payloads)
    for payload in payloads[::6]:
        assert read_back(sim, payload.email) == [everyone[payload.email.lower()]]
    for i, payload in enumerate(payloads):
        attributes = everyone[payload.email.lower()]["attributes"]
        assert attributes["email"] == payload.email.lower()
        assert attributes["external_id"] == payload.customer_id
        if i < len(known):  # an existing profile: Tailor's properties added, its own kept, a None name not blanked
            assert attributes["first_name"] == (payload.fields["first_name"] or known[i]["first_name"])
            assert {k: v for k, v in attributes["properties"].items() if k != "birthday"} == \
                expected_properties(payload)
        else:
            assert attributes["first_name"] == payload.fields["first_name"]
            assert attributes["properties"] == expected_properties(payload)
    assert "tailor_next_order_date" not in read_back(sim, stale.email)[0]["attributes"]["properties"]
    assert TOKENS["klaviyo"] not in caplog.text
    assert all(TOKENS["klaviyo"] not in str(r.args) for r in caplog.records)


def test_batches_over_5mb_are_split_never_refused(simulator):
    sim = simulator(customers=300, rate_limits=False)
    # ~64 KB profiles: 5 MB holds about 80 of them, so 200 need three jobs by size with 10,000 allowed by count
    payloads = [make_payload(i, tailor_content_block="é" * 32_000) for i in range(200)]
    sizes = [len(encode(profile_resource(p))) for p in payloads]
    assert all(60_000 < s < MAX_PROFILE_BYTES for s in sizes) and sum(sizes) > 2 * MAX_JOB_BYTES
    sink = make_sink(sim, policy=RetryPolicy(attempts=12, base_delay=0.001, max_delay=0.01, timeout=30.0))
    outcomes = deliver(sink, payloads)
    assert sent(outcomes) == [p.customer_id for p in payloads] and not any(o.failed or o.skipped for o in outcomes)
    assert len(outcomes) == 3
    # packed greedily: each job's body within 5 MB with its envelope, and the next profile would not have fitted
    edge = 0
    for outcome in outcomes:
        count = len(outcome.sent)
        body = job_body([encode(profile_resource(p)) for p in payloads[edge:edge + count]])
        assert len(body) <= MAX_JOB_BYTES
        if edge + count < len(payloads):
            assert len(body) + 1 + sizes[edge + count] > MAX_JOB_BYTES
        edge += count
    jobs = sim.state.vendor_state["klaviyo"].jobs
    assert len(jobs) == 3 and {j.status for j in jobs.values()} == {"complete"}
    assert sum(len(j.profiles) for j in jobs.values()) == 200 and all(j.failed_count == 0 for j in jobs.values())
    assert read_back(sim, payloads[-1].email)[0]["attributes"]["properties"]["tailor_content_block"] == "é" * 32_000


def test_profile_over_100kb_is_skipped_with_its_reason(simulator, caplog):
    sim = simulator(customers=300, rate_limits=False)
    payloads = [make_payload(i) for i in range(120)]
    payloads[7] = make_payload(7, tailor_recommendations_block="x" * 110_000)
    # a profile of exactly 100 KB is within the limit: sent, and accepted by Klaviyo
    base = make_payload(8, tailor_recommendations_block="")
    pad = MAX_PROFILE_BYTES - len(encode(profile_resource(base)))
    payloads[8] = make_payload(8, tailor_recommendations_block="y" * pad)
    assert len(encode(profile_resource(payloads[8]))) == MAX_PROFILE_BYTES
    with caplog.at_level(logging.WARNING, logger="tailor.export.klaviyo"):
        outcomes = deliver(make_sink(sim, max_profiles_per_job=50), payloads)
    skipped = [(p, reason) for o in outcomes for p, reason in o.skipped]
    assert [p.customer_id for p, _ in skipped] == [payloads[7].customer_id]
    size = len(encode(profile_resource(payloads[7])))
    assert skipped[0][1] == f"profile is {size} bytes, over Klaviyo's 100 KB limit"
    assert outcomes[0].skipped  # reported with the job it was read into
    assert sent(outcomes) == [p.customer_id for i, p in enumerate(payloads) if i != 7]
    assert not any(o.failed for o in outcomes)
    assert read_back(sim, payloads[7].email) == []
    assert read_back(sim, payloads[8].email)[0]["attributes"]["properties"]["tailor_recommendations_block"] == \
        "y" * pad
    assert payloads[7].customer_id in caplog.text
    # only skipped payloads left after the last job: still reported, in order
    tail = deliver(make_sink(sim, max_profiles_per_job=50), [make_payload(200), payloads[7]])
    assert [len(o.sent) for o in tail] == [1] and [p for p, _ in tail[0].skipped] == [payloads[7]]
    alone = deliver(make_sink(sim), [payloads[7]])
    assert len(alone) == 1 and not alone[0].sent and len(alone[0].skipped) == 1


def test_invalid_profiles_come_back_failed_with_klaviyos_reason(simulator, caplog):
    sim = simulator(customers=300, rate_limits=False, faults="duplicates=1.0")  # import-errors pages repeat a record
    payloads = [make_payload(i) for i in range(300)]
    bad = {3, 4, *range(150, 262)}  # the second job has 112 failures: two pages of import-errors
    for i in bad:
        payloads[i] = make_payload(i, email=f"not-an-email-{i}")
    sink = make_sink(sim, max_profiles_per_job=150)
    with caplog.at_level(logging.WARNING, logger="tailor.export.klaviyo"):
        outcomes = deliver(sink, payloads)
    failed = [(p.customer_id, reason) for o in outcomes for p, reason in o.failed]
    assert [c for c, _ in failed] == [payloads[i].customer_id for i in sorted(bad)]  # once each, in order
    for (_, reason), i in zip(failed, sorted(bad), strict=True):
        assert reason == (f"Klaviyo import error invalid: 'not-an-email-{i}' is not a valid email address; the "
                          "simulator imports profiles by email.")
        assert payloads[i].customer_id in caplog.text
    assert sent(outcomes) == [p.customer_id for i, p in enumerate(payloads) if i not in bad]
    assert [len(o.sent) + len(o.failed) for o in outcomes] == [150, 150]
    assert sink.stats.requests["errors"] == 3
    assert read_back(sim, payloads[0].email) and read_back(sim, payloads[299].email)
    assert read_back(sim, payloads[3].email) == []


@pytest.mark.parametrize("faults", ["429=0.3,5xx=0.3", "429=0.2,5xx=0.2,truncated=0.15"])
def test_429_and_5xx_mid_job_are_retried_and_nothing_is_lost(simulator, monkeypatch, faults):
    """Faults on the POST and on the polls (and errors pages): every profile imported once, every job reported once.
    A truncated answer to a POST leaves a job the sink never heard of: the retry makes another with the same
    profiles, an upsert, so Klaviyo still holds each profile once."""
    sim = simulator(customers=300, rate_limits=False, faults=faults)
    faulted: list[tuple[str, str, int]] = []
    original = sim_klaviyo.fault_response

    def recording(status: int, retry_after: int | None):
        response = original(status, retry_after)

        async def app(scope, receive, send):
            faulted.append((scope["method"], scope["path"], status))
            await response(scope, receive, send)
        return app

    monkeypatch.setattr(sim_klaviyo, "fault_response", recording)
    payloads = [make_payload(i) for i in range(400)]
    payloads[10] = make_payload(10, email="broken-address")
    sink = make_sink(sim, max_profiles_per_job=40)
    outcomes = deliver(sink, payloads)
    assert len(outcomes) == 10
    assert sent(outcomes) == [p.customer_id for i, p in enumerate(payloads) if i != 10]
    assert [p.customer_id for o in outcomes for p, _ in o.failed] == [payloads[10].customer_id]
    assert sink.stats.progress.retries > 0
    posts = {status for method, path, status in faulted if method == "POST"}
    polls = {status for method, path, status in faulted if method == "GET" and re.fullmatch(
        r"/api/profile-bulk-import-jobs(/\w+)?", path)}
    assert 429 in posts and posts - {429} and 429 in polls and polls - {429}, faulted
    monkeypatch.setattr(sim_klaviyo, "fault_response", original)
    surface = sim.state.vendor_state["klaviyo"]
    complete = [j for j in surface.jobs.values() if j.status == "complete"]
    assert len(complete) == 10 and sorted(len(j.profiles) for j in complete) == [40] * 10
    if "truncated" not in faults:
        assert len(surface.jobs) == 10  # a refused POST made no job
    assert len(surface.imported) == 399  # each good profile once
    sim.state.faults = Faults()  # read back without faults
    for payload in payloads[::37]:
        found = read_back(sim, payload.email)
        assert len(found) == (0 if payload is payloads[10] else 1)


def test_cancelled_job_raises_after_the_finished_ones_are_reported(simulator):
    sim = simulator(customers=300, rate_limits=False)
    surface = sim.state.vendor_state["klaviyo"]
    doomed = "tailor.customer130@example.com"  # in the third job of 50
    advance = surface.advance

    def cancelling(job):
        if any(p["attributes"].get("email") == doomed for p in job.profiles):
            job.status = "cancelled"
            return
        advance(job)

    surface.advance = cancelling
    payloads = [make_payload(i) for i in range(1000)]
    outcomes: list[BatchOutcome] = []
    sink = make_sink(sim, max_profiles_per_job=50, max_in_flight=2)
    with pytest.raises(KlaviyoJobFailed) as raised:
        sink.deliver(payloads, as_of_date=AS_OF, delivery_id="klaviyo-test", on_batch=outcomes.append)
    (cancelled,) = [j for j in surface.jobs.values() if j.status == "cancelled"]
    assert raised.value.job_id == cancelled.job_id and cancelled.job_id in str(raised.value)
    assert "'cancelled'" in str(raised.value)
    # the two before it and the one in flight beside it were reported; nothing after was submitted
    assert len(outcomes) in (2, 3) and sent(outcomes)[:100] == [p.customer_id for p in payloads[:100]]
    assert payloads[130].customer_id not in sent(outcomes)
    assert len(surface.jobs) <= 4


def test_jobs_left_in_flight_are_resolved_complete_cancelled_or_unknown(simulator):
    # what the next delivery asks after a process was killed with jobs in flight (tailor.export.deliveries)
    sim = simulator(customers=300, rate_limits=False)
    surface = sim.state.vendor_state["klaviyo"]
    payloads = [make_payload(i, email="not-an-email" if i == 3 else None) for i in range(120)]
    announced: dict[str, list[Payload]] = {}
    deliver(make_sink(sim, max_profiles_per_job=40), payloads,
            on_submit=lambda job_id, job: announced.setdefault(job_id, list(job)))
    assert [p for job in announced.values() for p in job] == payloads  # each job announced with its payloads
    first, second, third = announced
    surface.jobs[second].status = "cancelled"
    lost = {first: announced[first], second: announced[second], "01UNKNOWNJOB": announced[third]}
    resolved = dict(make_sink(sim).resolve_jobs(lost))
    assert resolved[second] is None and resolved["01UNKNOWNJOB"] is None
    outcome = resolved[first]
    assert outcome.batch_id == first and [p for p, _ in outcome.failed] == [payloads[3]]
    assert outcome.sent == announced[first][:3] + announced[first][4:]


def test_jobs_missing_from_the_listing_are_read_one_by_one(simulator, monkeypatch):
    """Other jobs of the account created meanwhile push the delivery's own off the listing's pages read: each
    missing job's status is then read alone, and nothing is lost."""
    monkeypatch.setattr(klaviyo_sink, "LIST_PAGE_MAX", 1)
    monkeypatch.setattr(klaviyo_sink, "LIST_PAGES", 1)  # only the newest job of the account is listed
    sim = simulator(customers=300, rate_limits=False)
    payloads = [make_payload(i) for i in range(200)]
    sink = make_sink(sim, max_profiles_per_job=20, max_in_flight=4)
    outcomes = deliver(sink, payloads)
    assert sent(outcomes) == [p.customer_id for p in payloads] and len(outcomes) == 10
    assert sink.stats.requests["poll"] > 0 and sink.stats.requests["list"] > 0, sink.stats


def test_a_listing_that_keeps_failing_fails_the_jobs_in_flight_and_the_next_delivery_resolves_them(simulator,
                                                                                                     monkeypatch):
    """No job's status can be read: the jobs in flight fail (the delivery raises naming one), what was reported
    before stays a prefix of the feed, and the jobs announced but never reported turn out complete when resolved."""
    sim = simulator(customers=300, rate_limits=False)
    surface = sim.state.vendor_state["klaviyo"]
    listing, listings = surface._get_import_jobs, []

    def failing_after_three(request, headers):
        listings.append(request.url)
        if len(listings) > 3:
            raise sim_klaviyo.ApiError(503, "service_unavailable", "Service unavailable.", "The listing is down.")
        return listing(request, headers)

    monkeypatch.setattr(surface, "_get_import_jobs", failing_after_three)
    payloads = [make_payload(i) for i in range(200)]
    announced: dict[str, list[Payload]] = {}
    outcomes: list[BatchOutcome] = []
    sink = make_sink(sim, max_profiles_per_job=20, max_in_flight=4)
    with pytest.raises(KlaviyoSinkError, match=r"bulk import job \w+: .*503") as raised:
        sink.deliver(payloads, as_of_date=AS_OF, delivery_id="klaviyo-test", on_batch=outcomes.append,
                     on_submit=lambda job_id, job: announced.setdefault(job_id, list(job)))
    assert CONN in str(raised.value)
    reported = sent(outcomes)
    assert reported == [p.customer_id for p in payloads[:len(reported)]]
    unreported = {job_id: job for job_id, job in announced.items() if job_id not in {o.batch_id for o in outcomes}}
    assert unreported
    monkeypatch.setattr(surface, "_get_import_jobs", listing)
    resolved = dict(make_sink(sim).resolve_jobs(unreported))
    assert {job_id: outcome.sent for job_id, outcome in resolved.items()} == unreported


def test_revoked_key_fails_without_logging_it(simulator, caplog):
    sim = simulator(customers=300, rate_limits=False, faults="revoked")
    with caplog.at_level(logging.DEBUG), pytest.raises(Exception, match="rejected the credentials") as raised:
        deliver(make_sink(sim), [make_payload(i) for i in range(10)])
    assert CONN in str(raised.value)
    assert TOKENS["klaviyo"] not in caplog.text and TOKENS["klaviyo"] not in str(raised.value)


def earliest_finish(requests: int, burst: int = 10, steady: int = 150) -> float:
    """Seconds from the first to the last of `requests` sent as fast as a burst window of 1 s and a steady window of
    60 s allow (the earliest schedule: request k waits for k-burst and k-steady to leave their windows)."""
    times: list[float] = []
    for k in range(requests):
        t = 0.0
        if k >= burst:
            t = max(t, times[k - burst] + 1.0)
        if k >= steady:
            t = max(t, times[k - steady] + 60.0)
        times.append(t)
    return times[-1] if times else 0.0


@pytest.mark.slow
def test_throughput_against_the_bulk_import_rate_limits(simulator, caplog):
    """Rate limits on, real waits. Every job needs one POST; the status of all jobs in flight comes from one listing a
    round, and the simulator's lifecycle takes two: the POSTs are the busiest endpoint, so the limits allow at best
    their schedule plus the last job's two rounds. The sink keeps jobs in flight so that the POSTs never idle: the
    delivery takes at most a little more than that."""
    sim = simulator(customers=300, rate_limits=True)
    payloads = [make_payload(i) for i in range(2000)]
    poll_interval = 0.25
    sink = make_sink(sim, max_profiles_per_job=20, poll_interval=poll_interval, policy=RetryPolicy(timeout=30.0),
                     sleep=time.sleep)
    with caplog.at_level(logging.INFO, logger="tailor.sources.http"):
        outcomes = deliver(sink, payloads)
    stats = sink.stats
    assert sent(outcomes) == [p.customer_id for p in payloads] and stats.jobs == 100
    assert stats.requests["submit"] == 100 and stats.requests["poll"] == 0 and stats.requests["errors"] == 0
    assert stats.requests["list"] <= 2 * stats.seconds / poll_interval + 2  # a round per poll_interval at most
    bound = earliest_finish(stats.requests["submit"]) + 2 * poll_interval
    share = bound / stats.seconds
    print(f"\nklaviyo sink: {stats.jobs} jobs, {stats.profiles} profiles in {stats.seconds:.2f} s: "
          f"{stats.profiles_per_second():.0f} profiles/s, {stats.jobs_per_minute():.0f} jobs/min; the limits allow "
          f"{bound:.2f} s at best ({share:.0%} of it); requests {stats.requests}, {stats.progress.throttled} throttled")
    assert stats.progress.throttled <= 1
    assert share >= 0.8  # ~0.9 on an idle machine; margin for a busy one
