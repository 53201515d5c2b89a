"""One ASGI app serving the three vendor APIs over the world, plus a small control API under /_simulator.

Vendor surfaces (simulator.shopify, simulator.hubspot, simulator.klaviyo) each provide:
  PATH_PREFIX                                 the URL prefix they own
  router(state) -> fastapi.APIRouter          their endpoints (auth, limits, paging, data-level faults)
  fault_response(status, retry_after) -> Response   a 429/5xx shaped as that vendor shapes it
  unauthorized_response() -> Response         that vendor's 401
The transport-level faults (429, 5xx, slow, truncated, revoked token) are injected here, once for all; a
`silent` vendor is one whose reads see the world before its first record (SimState.read_time).

Control API (never faulted, no token):
  GET  /_simulator/health    seed, size, clock_mode (live | pinned), world_now (the anchor), clock, start, end,
                             rate limits, faults (fields and spec)
  GET  /_simulator/summary   records existing at the clock, per entity
  POST /_simulator/clock     {"now": ISO} or {"advance_seconds": N}; a live clock keeps advancing from there
  POST /_simulator/faults    {"faults": SPEC}, SPEC as for --faults; 400 with the reason on a bad one
"""

from __future__ import annotations

import asyncio
import importlib
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from types import ModuleType

import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel

from simulator.faults import FaultSpecError, parse_faults
from simulator.paging import request_key
from simulator.state import SimState
from simulator.world import ENTITIES, iso, parse_time

VENDOR_MODULES = ("simulator.shopify", "simulator.hubspot", "simulator.klaviyo")


def load_vendors() -> list[ModuleType]:
    return [importlib.import_module(name) for name in VENDOR_MODULES]


class FaultMiddleware:
    """Transport faults, decided by the seeded dice per request identity (method, path, query, body)."""

    def __init__(self, app, state: SimState, vendors: list[ModuleType]):
        self.app = app
        self.state = state
        self.vendors = vendors

    def _vendor(self, path: str) -> ModuleType | None:
        for vendor in self.vendors:
            if path.startswith(vendor.PATH_PREFIX):
                return vendor
        return None

    async def __call__(self, scope, receive, send):
        faults = self.state.faults
        vendor = self._vendor(scope.get("path", "")) if scope["type"] == "http" else None
        if vendor is None or not faults.any_http:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        key = request_key(scope["method"], scope["path"], scope.get("query_string", b"").decode(), body)
        dice = self.state.dice
        if faults.revoked_token:
            await vendor.unauthorized_response()(scope, replay, send)
            return
        if dice.hits("429", key, faults.rate_429):
            retry_after = 1 + int(dice.draw("retry-after", key) * 2)
            await vendor.fault_response(429, retry_after)(scope, replay, send)
            return
        if dice.hits("5xx", key, faults.rate_5xx):
            status = (500, 502, 503)[int(dice.draw("5xx-status", key) * 3)]
            await vendor.fault_response(status, None)(scope, replay, send)
            return
        if dice.hits("slow", key, faults.rate_slow):
            await asyncio.sleep(faults.slow_seconds)
        if dice.hits("truncated", key, faults.rate_truncated):
            await self._truncated(scope, replay, send)
            return
        await self.app(scope, replay, send)

    async def _truncated(self, scope, receive, send):
        """Run the request, then send only the first half of its body (with a matching Content-Length)."""
        start: dict = {}
        parts: list[bytes] = []

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(parts)
        cut = body[: max(1, len(body) // 2)]
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(cut)).encode()))
        await send({"type": "http.response.start", "status": start.get("status", 200), "headers": headers})
        await send({"type": "http.response.body", "body": cut})


class ClockChange(BaseModel):
    now: str | None = None
    advance_seconds: int | None = None


class FaultsChange(BaseModel):
    faults: str


def create_app(state: SimState) -> FastAPI:
    vendors = load_vendors()
    state.files_dir.mkdir(parents=True, exist_ok=True)
    app = FastAPI(title="Tailor vendor simulator", docs_url="/_simulator/docs", openapi_url="/_simulator/openapi.json")
    for vendor in vendors:
        app.include_router(vendor.router(state))

    @app.get("/_simulator/health")
    def health() -> dict:
        cfg = state.world.config
        faults = state.faults
        return {"status": "ok", "seed": cfg.seed, "customers": cfg.customers, "clock_mode": state.clock_mode,
                "world_now": iso(state.world.now), "clock": iso(state.now()), "start": iso(state.world.start),
                "end": iso(state.world.end), "rate_limits": state.rate_limits, "faults": faults.as_json(),
                "faults_spec": faults.spec()}

    @app.post("/_simulator/clock")
    def set_clock(change: ClockChange) -> dict:
        if (change.now is None) == (change.advance_seconds is None):
            raise HTTPException(400, "give exactly one of 'now' (ISO-8601) or 'advance_seconds'")
        try:
            target = parse_time(change.now) if change.now is not None else state.now() + int(change.advance_seconds)
        except ValueError as exc:
            raise HTTPException(400, f"'now' is not an ISO-8601 time: {exc}") from None
        state.set_now(target)
        return {"clock": iso(target), "clock_mode": state.clock_mode}

    @app.post("/_simulator/faults")
    def set_faults(change: FaultsChange) -> dict:
        try:
            faults = parse_faults(change.faults)
        except FaultSpecError as exc:
            raise HTTPException(400, f"faults: {exc}") from None
        body: dict = {}
        built = state.world.config.tie_burst_size
        if faults.tie_burst_size not in (0, built):
            body["note"] = (f"ties={faults.tie_burst_size} not applied: ties are made when the world is built "
                            f"(this world has ties={built})")
        faults = replace(faults, tie_burst_size=built)  # the world's, whatever the spec says
        state.faults = faults
        return {"faults": faults.as_json(), "faults_spec": faults.spec(), **body}

    @app.get("/_simulator/summary")
    def summary() -> dict:
        t = state.now()
        return {"clock": iso(t), "records": {e: state.world.truth_count(e, t) for e in ENTITIES}}

    @app.get("/_simulator/files/{name}")
    def files(name: str):
        path = (state.files_dir / name).resolve()
        if path.parent != state.files_dir.resolve() or not path.is_file():
            raise HTTPException(404, "no such file")
        return FileResponse(path)

    return FaultMiddleware(app, state, vendors)


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class RunningServer:
    def __init__(self, server: uvicorn.Server, thread: threading.Thread, url: str, state: SimState):
        self.server, self.thread, self.url, self.state = server, thread, url, state

    def stop(self) -> None:
        """Stop serving and remove the state's temporary files (bulk results)."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.state.close()


def start_in_thread(state: SimState, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve in a background thread (tests, benchmarks); port 0 picks a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    actual = sock.getsockname()[1]
    state.public_url = f"http://{host}:{actual}"
    config = uvicorn.Config(create_app(state), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the simulator did not start")
        time.sleep(0.01)
    return RunningServer(server, thread, state.public_url, state)


@contextmanager
def running(state: SimState):
    handle = start_in_thread(state)
    try:
        yield handle
    finally:
        handle.stop()
