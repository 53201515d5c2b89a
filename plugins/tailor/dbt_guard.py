"""A dbt-duckdb plugin (profiles.yml: `plugins: [{module: tailor.dbt_guard, config: {role: ...}}]`) that turns the
two ways a hand-run `dbt build` meets another process into one clear line instead of a Python traceback:

- the target's DuckDB file is held by another process (a load, a gate, another build): DuckDB allows one writing
  process per file. dbt-duckdb opens the file itself and lets duckdb's IOException escape, which dbt prints with
  its stack. Here the file is opened first, just before dbt-duckdb's own connect and with its config, and a lock
  conflict is raised as a dbt error naming the file, the process holding it (its PID and command line) and what to
  do; the connection opened here keeps the database loaded in this process until dbt-duckdb's connection has
  joined it, so no other process can take the file in between. On the warehouse (role: warehouse) the advice is
  to wait or to build on the raw snapshot with `--target dev`.
- a read-only attachment (the dev target's raw snapshot) does not exist yet: the line says how to publish one.

It also holds dbt's connection to Tailor's DuckDB memory budget (TAILOR_DUCKDB_MEMORY_LIMIT), as every connection
tailor.warehouse opens is.

dbt prints either as "Encountered an error:", "Database Error" and the line, and exits 2. `python -m tailor
build` (tailor.transform) recognizes the lock line and waits the other process out, as before. Only tailor.warehouse
opens DuckDB; this module only decides what to say.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

from tailor.snapshot import MISSING_SNAPSHOT
from tailor.warehouse import WarehouseBusy, apply_memory_budget, connect_for_dbt

_ADVICE = {
    "warehouse": "DuckDB allows one writing process per file: wait for it to finish and run dbt again, or build on "
                 "the raw snapshot without touching the warehouse: dbt build --target dev",
    "dev": "another dev build? Wait for it to finish, or give this one its own file: "
           "TAILOR_DEV_DUCKDB_PATH=<path> dbt build --target dev",
}


class _ConnectError(RuntimeError):
    """dbt-duckdb turns a RuntimeError raised while it connects into dbt's FailedToConnectError: printed as
    "Database Error" and the message, without a stack (a DbtRuntimeError would add a second "Runtime Error" header)."""


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.role = str(plugin_config.get("role", "warehouse"))
        self._held = None

    def update_connection_config(self, creds, config: dict[str, Any]) -> None:
        """Called by dbt-duckdb right before it connects to creds.path with `config`."""
        for attachment in creds.attach or []:
            if attachment.read_only and "://" not in attachment.path and attachment.path != ":memory:" \
                    and not Path(attachment.path).exists():
                raise _ConnectError(MISSING_SNAPSHOT.format(path=Path(attachment.path).resolve()))
        if creds.path == ":memory:" or "://" in creds.path or creds.is_motherduck or creds.remote:
            return  # no local file to lock
        self.release()
        try:
            self._held = connect_for_dbt(creds.path, config)
        except WarehouseBusy as exc:
            advice = _ADVICE.get(self.role, "wait for it to finish and run dbt again")
            raise _ConnectError(f"{exc}; {advice}") from None

    def configure_connection(self, conn) -> None:
        """dbt-duckdb's connection is open (it joined the database opened above): hold it to Tailor's memory budget
        and let go of ours."""
        apply_memory_budget(conn)
        self.release()

    def release(self) -> None:
        held, self._held = getattr(self, "_held", None), None
        if held is not None:
            held.close()

    def __del__(self) -> None:
        self.release()
