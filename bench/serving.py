"""The simulator served to a stage from its own process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from simulator.world import World


@contextmanager
def served(world: World, rate_limits: bool) -> Iterator[str]:
    """The simulator over `world` in its own forked process (sharing the world copy-on-write, so the client does
    not compete with it for the GIL); yields its URL."""
    import multiprocessing
    import shutil

    from simulator.files import make_files_dir
    from simulator.server import port_free, start_in_thread
    from simulator.state import SimState

    fork = multiprocessing.get_context("fork")
    port = next(p for p in range(18_765, 18_865) if port_free("127.0.0.1", p))
    ready = fork.Event()
    # The bulk-operation files live here, owned by this process: the server is terminated, so it cannot clean up.
    files_dir = make_files_dir()

    def run_server() -> None:
        start_in_thread(SimState(world=world, rate_limits=rate_limits, files_dir=files_dir), port=port)
        ready.set()
        fork.Event().wait()  # serve until terminated

    server = fork.Process(target=run_server, daemon=True)
    server.start()
    try:
        if not ready.wait(120):
            raise RuntimeError("the simulator did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.join(10)
        shutil.rmtree(files_dir, ignore_errors=True)
