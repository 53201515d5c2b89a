"""A simulator's bulk-operation folder: named after its owner, and removed by the next simulator once the owner is
gone (a simulator killed with SIGKILL runs no finalizer)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from simulator.files import PREFIX, make_files_dir, remove_orphans
from simulator.state import SimState
from simulator.world import World, WorldConfig


def test_a_killed_owners_folder_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    orphan = tmp_path / f"{PREFIX}{gone.stdout.strip()}-abc123"
    (orphan / "bulk").mkdir(parents=True)
    (orphan / "bulk" / "result.jsonl").write_text("{}\n")
    mine = tmp_path / f"{PREFIX}{os.getpid()}-def456"
    mine.mkdir()
    unnamed = tmp_path / f"{PREFIX}xyz"  # an older simulator's folder, whose owner cannot be known: left alone
    unnamed.mkdir()
    assert remove_orphans(tmp_path) == [orphan]
    assert not orphan.exists() and mine.exists() and unnamed.exists()


def test_a_states_folder_is_its_own_and_goes_with_close() -> None:
    state = SimState(world=World.build(WorldConfig(customers=20, seed=1)))
    folder = state.files_dir
    try:
        assert folder.name.startswith(f"{PREFIX}{os.getpid()}-") and folder.is_dir()
    finally:
        state.close()
    assert not folder.exists()


def test_make_files_dir_names_the_owner() -> None:
    folder = make_files_dir()
    try:
        assert folder.parent == Path(tempfile.gettempdir())
        assert folder.name.startswith(f"{PREFIX}{os.getpid()}-")
    finally:
        shutil.rmtree(folder)
