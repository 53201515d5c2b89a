"""Where a simulator keeps its bulk-operation result files: a folder per owning process under the system temp dir.

The owner removes its folder when it closes or exits, but a process killed with SIGKILL runs no finalizer. The
folder's name carries the owner's pid (tailor-sim-<pid>-<random>), so each new folder first removes those of
processes that are gone: the temp dir does not fill up with killed simulators' files.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

PREFIX = "tailor-sim-"
_OWNED = re.compile(rf"^{PREFIX}(\d+)-[A-Za-z0-9_]+$")


def make_files_dir() -> Path:
    """A new folder owned by this process (remove it when done), after removing those of dead processes."""
    remove_orphans()
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))


def remove_orphans(root: Path | None = None) -> list[Path]:
    """Remove the simulator folders under `root` (default: the temp dir) whose owning process is gone."""
    removed = []
    for entry in Path(root or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        match = _OWNED.match(entry.name)
        if match and entry.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
