"""Run the dbt project (dbt_project/) in process, as of a given time.

    result = build(as_of=datetime(2026, 11, 1, tzinfo=UTC))            # dbt build, every model and test
    build(as_of=..., select=["marts"], full_refresh=True, target="postgres")
    build(as_of=..., target="dev")      # on the raw snapshot, into TAILOR_DEV_DUCKDB_PATH: never waits for the loads

The as-of time reaches every model as the `as_of` var (ISO 8601, UTC): staging keeps, per record, the latest
version at or before it, so a build for a past time reproduces what Tailor would have built then. Without one, dbt
uses its own run start (an ad-hoc build "now").

dbt's target/ and logs/ go under the data dir (<TAILOR_DATA_DIR>/dbt/target, .../dbt/logs), so the source tree stays
clean and the project folder can be read-only. On the DuckDB target, the warehouse file is the one Tailor uses
everywhere (tailor.settings.duckdb_path()); another process holding its lock (a load, another build) is waited for
with backoff up to TAILOR_DUCKDB_LOCK_TIMEOUT, as tailor.warehouse does, never reported as a failure. A build that
fails for any other reason raises BuildFailed naming each failed node and dbt's message for it.

The dev target reads the raw snapshot (tailor.snapshot; TAILOR_RAW_SNAPSHOT_PATH), attached read-only, and writes
its own file (TAILOR_DEV_DUCKDB_PATH), so it neither waits for the warehouse nor holds it; without a snapshot it
raises BuildFailed saying how to publish one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import pickle
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from tailor import settings
from tailor.times import iso
from tailor.warehouse import Warehouse, has_table, lock_conflict_line

log = logging.getLogger(__name__)

TARGETS = ("duckdb", "postgres", "dev")
_LOCAL_TARGETS = ("duckdb", "dev")  # a DuckDB file of this machine, which one process at a time may write
_FAILED = {"error", "fail", "runtime error"}
_IN_PROCESS = threading.Lock()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def dbt_state_dir() -> Path:
    """Where dbt writes target/ and logs/: <data dir>/dbt."""
    return settings.data_dir() / "dbt"


@dataclass(frozen=True)
class NodeResult:
    """One model, seed, test or unit test of a build, as dbt reported it."""

    unique_id: str
    status: str  # success, pass, error, fail, warn, skipped, ...
    message: str
    seconds: float
    path: str = ""

    @property
    def failed(self) -> bool:
        return self.status in _FAILED


@dataclass(frozen=True)
class BuildResult:
    """What a successful build did."""

    target: str
    as_of: datetime | None
    full_refresh: bool
    seconds: float  # the dbt invocation that succeeded (parse, models, tests)
    nodes: list[NodeResult] = field(default_factory=list)
    attempts: int = 1
    waited_seconds: float = 0.0  # before it: waiting for another process's DuckDB lock, earlier attempts

    def counts(self) -> dict[str, int]:
        """Nodes per status, e.g. {"success": 30, "pass": 120}."""
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[node.status] = counts.get(node.status, 0) + 1
        return dict(sorted(counts.items()))

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for node in self.nodes:
            kind = node.unique_id.split(".", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        parts = ", ".join(f"{count} {kind}s" for kind, count in sorted(kinds.items()))
        statuses = ", ".join(f"{count} {status}" for status, count in self.counts().items())
        as_of = iso(self.as_of) if self.as_of else "the run start"
        return (f"dbt build on {self.target} as of {as_of}{' (full refresh)' if self.full_refresh else ''}: "
                f"{len(self.nodes)} nodes ({parts}; {statuses}) in {self.seconds:.1f} s")


class BuildFailed(RuntimeError):
    """The build failed: the message names every failed node and dbt's message for it (or dbt's own error)."""

    def __init__(self, message: str, failures: Sequence[NodeResult] = ()):
        super().__init__(message)
        self.failures = list(failures)


# The feed's nodes (dbt_project.yml): built only when selected (selectors.yml "feed"), after the models scored.
FEED_TAG = "tag:feed"
# Vars whose values are read only when the models run, never in a config or a ref: a project parsed for one as-of serves
# builds as of any other. Whether one is set does count (with known_at, staging reads source loads.batches), so a
# parse is kept per set of them (tests/integration/test_dbt_build.py checks both).
RUNTIME_VARS = ("as_of", "known_at")
# Parsing the project takes about 5 s of a build; a process that builds again (training's snapshot builds, the tests)
# reuses its manifest: dbt recompiles every node of a build from it. At most this many parses are kept per process.
# A new process (each Airflow task) reads the manifest back from the state dir instead (_parsed).
_PARSED: dict[tuple, object] = {}
_PARSED_KEPT = 4
# The runtime vars' value in a parse: dbt's partial parse is reused only for the same vars, and no parse reads them
_PARSE_VALUE = "2000-01-01T00:00:00Z"
_NOT_PROJECT_FILES = {"target", "logs", "dbt_packages", "__pycache__"}
# `exclude` for a build that only makes tables: dbt's data and unit tests skipped (for rebuilds of data gated before).
WITHOUT_TESTS = ("resource_type:test", "resource_type:unit_test")
# per model, the as-of its latest successful build was for (dbt_project/macros/model_builds.sql; DuckDB only)
MODEL_BUILDS = "meta.model_builds"
NO_BUILD_RECORDED = "(no build recorded)"


def build(as_of: datetime | str | None = None, *, known_at: datetime | str | None = None,
          select: Sequence[str] | str | None = None, selector: str | None = None,
          exclude: Sequence[str] | str | None = None, full_refresh: bool = False, target: str | None = None,
          vars: Mapping[str, object] | None = None, duckdb_path: str | Path | None = None,
          env: Mapping[str, str] | None = None, state_dir: str | Path | None = None, quiet: bool = False,
          lock_timeout: float | None = None, write_artifacts: bool = True) -> BuildResult:
    """`dbt build` the project as of `as_of` (aware datetime or ISO 8601; naive means UTC; None: dbt's run start).

    known_at: use only the record versions loaded by then (raw._batches.loaded_at), to reproduce a past run exactly as
    it was, including what had not arrived yet (default: everything loaded).

    target: a profile target ("duckdb", "postgres" or "dev"; default TAILOR_DBT_TARGET, else duckdb). duckdb_path:
    the warehouse file (default tailor.settings.duckdb_path()); on the dev target, the dev file (default
    tailor.settings.dev_duckdb_path()), which reads the raw snapshot tailor.settings.raw_snapshot_path() (override it
    with env={"TAILOR_RAW_SNAPSHOT_PATH": ...}). env: extra environment variables the profile reads for
    this build only (e.g. TAILOR_PG_DBNAME). selector: a selector of dbt_project/selectors.yml (without one, and
    without select, everything but the feed, which needs the models' scores: FEED_TAG). vars: more dbt
    vars (as_of is set from `as_of`). state_dir: where dbt
    writes target/ and logs/ (default <data dir>/dbt). write_artifacts=False: no target/manifest.json and
    run_results.json (writing them costs a new process about 0.7 s: for a build another one's artifacts follow).
    Raises BuildFailed when a node fails, WarehouseLockTimeout when the DuckDB file stayed locked too long.
    """
    moment = parse_as_of(as_of) if as_of is not None else None
    chosen = target or settings.dbt_target()
    if chosen not in TARGETS:
        raise ValueError(f"target {chosen!r} is not one of {', '.join(TARGETS)}")
    dev = chosen == "dev"
    warehouse = Warehouse(duckdb_path or (settings.dev_duckdb_path() if dev else None), lock_timeout=lock_timeout)
    run_vars = dict(vars or {})
    if moment is not None:
        run_vars["as_of"] = iso(moment)
    if known_at is not None:
        run_vars["known_at"] = iso(parse_as_of(known_at, "known-at"))
    state = _state(state_dir)
    common = _common_args(chosen, state, run_vars, quiet)
    args = ["build", *common]
    if select:
        args += ["--select", *_words(select)]
    if selector:
        args += ["--selector", selector]
    # the feed is built only when selected (it needs the models' scores, written after the marts)
    feed = [] if select or selector else [FEED_TAG]
    if exclude or feed:
        args += ["--exclude", *_words(exclude or ()), *feed]
    if full_refresh:
        args.append("--full-refresh")
    if not write_artifacts:
        args.append("--no-write-json")
    if dev:
        snapshot = Path((env or {}).get("TAILOR_RAW_SNAPSHOT_PATH") or settings.raw_snapshot_path()).resolve()
        run_env = {**(env or {}), "TAILOR_DEV_DUCKDB_PATH": str(warehouse.path),
                   "TAILOR_RAW_SNAPSHOT_PATH": str(snapshot), "TAILOR_DBT_TARGET": chosen}
    else:
        run_env = {**(env or {}), "TAILOR_DUCKDB_PATH": str(warehouse.path), "TAILOR_DBT_TARGET": chosen}

    from dbt.cli.main import dbtRunner  # heavy: imported only when a build runs, before the lock is looked at

    started = time.monotonic()
    # dbt opens the file itself: a lock conflict comes back as its error, retried with a slower backoff than a
    # connect's because each try costs a dbt invocation
    wait = warehouse.lock_wait(first_delay=0.5, max_delay=30.0, min_sleep=0.1)
    while True:
        if chosen == "duckdb" and not warehouse.exists():
            raise BuildFailed(f"no warehouse at {warehouse.path}: load raw.* first (python -m tailor load)")
        if dev and not snapshot.exists():
            from tailor.snapshot import MISSING_SNAPSHOT

            raise BuildFailed(MISSING_SNAPSHOT.format(path=snapshot))
        if chosen in _LOCAL_TARGETS:
            with warehouse.writer():  # waits, with backoff, while another process writes the file
                pass
        with _IN_PROCESS, _environment(run_env):  # dbt keeps global state: one invocation at a time per process
            invoked = time.monotonic()
            try:
                parsed = _parsed(dbtRunner, chosen, state, run_vars, _parse_key(chosen, warehouse.path, run_vars))
                nodes, error = _invoke(dbtRunner, parsed, args, state / "logs")
            finally:
                _release_duckdb()
            ran = time.monotonic() - invoked
        lock_error = _lock_conflict(error, nodes) if chosen in _LOCAL_TARGETS else None
        if lock_error is None:
            break
        delay = wait.next_delay(lock_error)  # WarehouseLockTimeout once TAILOR_DUCKDB_LOCK_TIMEOUT is spent
        log.warning("dbt build attempt %d met another process's lock on %s; retrying in %.1f s: %s", wait.attempts,
                    warehouse.path, delay, lock_error)
        time.sleep(delay)
    failures = [node for node in nodes if node.failed]
    if error is not None or failures:
        raise BuildFailed(_failure_message(chosen, moment, error, nodes, failures), failures)
    return BuildResult(target=chosen, as_of=moment, full_refresh=full_refresh, seconds=ran, nodes=nodes,
                       attempts=wait.attempts + 1, waited_seconds=time.monotonic() - started - ran)


def models_not_as_of(warehouse: Warehouse, as_of: datetime) -> list[str]:
    """The models whose latest build (meta.model_builds, recorded by every dbt build on DuckDB) was for another as-of
    than `as_of`; ["(no build recorded)"] when none was recorded."""
    with warehouse.reader() as con:
        if not has_table(con, MODEL_BUILDS):
            return [NO_BUILD_RECORDED]
        return [model for (model,) in con.execute(
            f"select model from {MODEL_BUILDS} where as_of_at <> ? order by model", [as_of]).fetchall()]  # noqa: S608 constant


def rebuild_moved(as_of: datetime, *, select: Sequence[str] | None = None, exclude: Sequence[str] = (),
                  duckdb_path: str | Path | None = None, state_dir: str | Path | None = None,
                  quiet: bool = True) -> BuildResult | None:
    """Build the models of a selection (default: every model but the feed's) again as of `as_of`, without tests, when
    another build left any of them as of another time since (meta.model_builds); None when none was moved.

    Why: each step after a build reads the marts as they were last built, and in between another build may run (an
    hourly run, another day of a backfill, each taking the warehouse in turn). The data was tested when it was built
    as of `as_of`, so the rebuild runs no tests. DuckDB only, where builds are recorded: on Postgres, None."""
    if settings.dbt_target() != "duckdb":
        return None
    warehouse = Warehouse(duckdb_path)
    moved = models_not_as_of(warehouse, as_of)
    if moved and select is not None and moved != [NO_BUILD_RECORDED]:
        moved = sorted(set(moved) & set(selected_models(select, exclude, as_of=as_of, duckdb_path=warehouse.path,
                                                        state_dir=state_dir)))
    if not moved:
        return None
    log.info("%s built as of another time than %s (another build came between): building %s as of it again first, "
             "without tests", ", ".join(moved[:5]) + (f" and {len(moved) - 5} more" if len(moved) > 5 else ""),
             iso(as_of), " ".join(select) if select is not None else "every model but the feed")
    return build(as_of, select=select, exclude=[*exclude, *WITHOUT_TESTS], duckdb_path=warehouse.path,
                 state_dir=state_dir, quiet=quiet, write_artifacts=False)


def selected_models(select: Sequence[str], exclude: Sequence[str] = (), *, as_of: datetime | None = None,
                    duckdb_path: str | Path | None = None, state_dir: str | Path | None = None) -> list[str]:
    """The names of the models a selection picks on the DuckDB target (`dbt ls`), on the parse a build as of `as_of`
    uses (kept per process: no second parse)."""
    from dbt.cli.main import dbtRunner

    warehouse = Warehouse(duckdb_path)
    run_vars = {"as_of": iso(parse_as_of(as_of))} if as_of is not None else {}
    state = _state(state_dir)
    common = _common_args("duckdb", state, run_vars, quiet=True)
    args = ["ls", *common, "--resource-type", "model", "--output", "name", "--select", *select]
    if exclude:
        args += ["--exclude", *exclude]
    with _IN_PROCESS, _environment({"TAILOR_DUCKDB_PATH": str(warehouse.path), "TAILOR_DBT_TARGET": "duckdb"}):
        try:
            parsed = _parsed(dbtRunner, "duckdb", state, run_vars, _parse_key("duckdb", warehouse.path, run_vars))
            outcome = dbtRunner(manifest=parsed).invoke(args)
        finally:
            _release_duckdb()
    if not outcome.success or outcome.result is None:
        error = outcome.exception
        why = f"{type(error).__name__}: {error}" if error is not None else f"see the dbt log in {state / 'logs'}"
        raise BuildFailed(f"dbt ls --select {' '.join(select)} failed: {why}")
    return sorted(str(name) for name in outcome.result)


def parse_as_of(value: datetime | str, name: str = "as-of") -> datetime:
    """An as-of (or known-at) time as an aware UTC datetime: ISO 8601 text or a datetime; without a zone it is UTC."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{name} {text!r} is not an ISO 8601 date or time (e.g. 2026-11-01T00:00:00Z)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _state(state_dir: str | Path | None) -> Path:
    # absolute: dbt reads a relative target or log path from the project folder, not from the caller's
    return Path(state_dir).resolve() if state_dir is not None else dbt_state_dir()


def _common_args(target: str, state: Path, run_vars: Mapping[str, object], quiet: bool,
                 target_path: Path | None = None) -> list[str]:
    """The arguments every dbt command of a build shares (a parse is kept per these)."""
    common = ["--project-dir", str(settings.dbt_project_dir()), "--profiles-dir", str(settings.dbt_project_dir()),
              "--target", target, "--target-path", str(target_path or state / "target"),
              "--log-path", str(state / "logs")]
    if run_vars:
        common += ["--vars", json.dumps(run_vars)]
    if quiet:
        common.append("--quiet")
    return common


def _words(value: Sequence[str] | str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    return [word for item in items for word in item.split()]


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the profile's env_var() calls during one invocation, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _parse_key(target: str, database_file: Path, run_vars: Mapping[str, object]) -> tuple:
    """What a parsed project depends on: its files, the target (configs read target.name), the database the nodes
    live in (a DuckDB file's name; on Postgres, the database name) and the vars (of RUNTIME_VARS, only which are
    set). Called with the build's environment set. No model or macro reads env_var() (only the profile does): one
    that does must add that variable here, as dbt's own partial parse would."""
    database = database_file.stem if target in _LOCAL_TARGETS else settings.postgres_server().dbname
    return target, database, json.dumps(_parse_vars(run_vars), sort_keys=True, default=str), _project_fingerprint()


def _parse_vars(run_vars: Mapping[str, object]) -> dict[str, object]:
    """The vars a parse is made with: each runtime var that is set, at one fixed value (no parse reads it)."""
    return {name: _PARSE_VALUE if name in RUNTIME_VARS else value for name, value in run_vars.items()
            if value is not None}


def _project_fingerprint() -> tuple:
    """Every project file's path, size and modification time: an edit between two builds makes a new parse."""
    root = settings.dbt_project_dir()
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if name not in _NOT_PROJECT_FILES)
        for name in sorted(names):
            stat = os.stat(os.path.join(folder, name))
            files.append((os.path.relpath(os.path.join(folder, name), root), stat.st_size, stat.st_mtime_ns))
    return str(root), tuple(files)


def _parsed(runner: type, target: str, state: Path, run_vars: Mapping[str, object], key: tuple) -> object | None:
    """The project's manifest for `key`, parsed once per process; None when the parse failed (the build then parses
    again and reports dbt's error as usual).

    A new process (each Airflow task) reads back the manifest that the first process to parse these very files (the
    key: target, database, vars and every file's size and modification time) saved in the state dir, in about 0.1 s
    at 43 models. Only without one does it parse: dbt's own partial parse, which reads what the last parse of the
    same target, database and vars left in target/parse-<key>/ and parses again only the files that changed since
    (dbt compares every file's checksum; about 0.7 s, where a full parse takes 4-6 s). The runtime vars are parsed
    with one fixed value, so both files serve every as-of. A saved manifest is written aside, then renamed, so no
    process reads part of one; dbt's file, read while another process writes it, fails dbt's own check and costs a
    full parse."""
    if key in _PARSED:
        return _PARSED[key]
    # one folder per key but its files' fingerprint: dbt checks every file itself
    folder = state / "target" / f"parse-{_digest(key[:-1])}"
    saved = folder / f"manifest-{_digest((key, _DBT_VERSIONS))}.pickle"
    manifest = _read_manifest(saved)
    if manifest is None:
        common = _common_args(target, state, _parse_vars(run_vars), quiet=True, target_path=folder)
        outcome = runner().invoke(["parse", "--no-write-json", *common])
        if not outcome.success or outcome.result is None:
            return None
        manifest = outcome.result
        _save_manifest(saved, manifest)
    while len(_PARSED) >= _PARSED_KEPT:
        del _PARSED[next(iter(_PARSED))]
    _PARSED[key] = manifest
    return manifest


def _installed(package: str) -> str:
    try:
        return f"{package} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{package} absent"


# a saved manifest holds dbt's objects: it is read back only by the same dbt, adapters and Python
_DBT_VERSIONS = (*(_installed(package) for package in ("dbt-core", "dbt-duckdb", "dbt-postgres")), sys.version)


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, default=str).encode()).hexdigest()[:16]


def _read_manifest(path: Path) -> object | None:
    """The manifest saved at `path` (only Tailor's parses write there), or None when there is none or it does not
    load (another dbt's classes: the versions are in the name, but a package may be swapped in place)."""
    try:
        with path.open("rb") as file:
            manifest_class, state = pickle.load(file)  # the state dir's own file, written by _save_manifest
        manifest = manifest_class.__new__(manifest_class)
        manifest.__dict__.update(state)
        for name, default in _manifest_caches(manifest_class).items():
            setattr(manifest, name, default())
        return manifest
    except FileNotFoundError:
        return None
    except Exception as error:  # parsed again, and written anew
        log.warning("could not read the parsed dbt project back from %s (parsing it again): %s: %s", path,
                    type(error).__name__, error)
        return None


def _manifest_caches(manifest_class: type) -> dict[str, object]:
    """The manifest's private fields (lookups, a lock, macro indexes), which dbt rebuilds when empty, each with a
    function making its empty value. They are not saved: dbt's own serialization leaves them out too (and its
    __reduce_ex__ misplaces them in dbt 1.11)."""
    return {spec.name: spec.default_factory if spec.default_factory is not MISSING else lambda value=spec.default: value
            for spec in fields(manifest_class) if spec.name.startswith("_")}


def _save_manifest(path: Path, manifest: object) -> None:
    """Pickle `manifest` to `path` (written aside, then renamed: a reader never sees part of it), and remove the
    manifests of older project files beside it. A failure to write costs the next process a parse, nothing more."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        caches = _manifest_caches(type(manifest))
        state = {name: value for name, value in vars(manifest).items() if name not in caches}
        aside.write_bytes(pickle.dumps((type(manifest), state), protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(aside, path)
        for older in path.parent.glob("manifest-*.pickle"):
            if older != path:
                older.unlink(missing_ok=True)
    except Exception as error:  # OSError, or an object that does not pickle: the manifest still serves this process
        aside.unlink(missing_ok=True)
        log.warning("could not keep the parsed dbt project in %s (the next process parses it again): %s", path, error)


def _invoke(runner: type, manifest: object | None, args: list[str],
            logs: Path) -> tuple[list[NodeResult], BaseException | None]:
    """One in-process dbt invocation (on `manifest`, when there is one: no parse): its node results, and dbt's own
    error when it stopped before any node ran."""
    log.info("dbt %s", " ".join(args))
    outcome = runner(manifest=manifest).invoke(args)
    nodes = []
    for result in getattr(outcome.result, "results", None) or []:
        node = result.node
        if node.unique_id.startswith("operation.") and str(result.status) == "success":
            continue  # the project's on-run-end hook (meta.model_builds), not one of its nodes; shown if it fails
        nodes.append(NodeResult(unique_id=node.unique_id, status=str(result.status),
                                message=_ANSI.sub("", str(result.message or "")),
                                seconds=float(result.execution_time or 0.0),
                                path=str(getattr(node, "original_file_path", "") or "")))
    error = outcome.exception
    if error is None and not outcome.success and not nodes:
        error = RuntimeError(f"dbt reported a failure without any node result (see the dbt log in {logs})")
    return nodes, error


def _release_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in this process after an invocation.

    dbt-duckdb holds its connection in a class attribute for the life of the process. Left open, it would keep the
    file's lock (no other process could load or build) and make any later connection in this process with other
    settings (a read-only reader) fail.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # dbt-duckdb not installed: nothing to release
        return
    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        if env is not None:
            env.close()
            for plugin in (getattr(env, "_plugins", None) or {}).values():
                release = getattr(plugin, "release", None)  # tailor.dbt_guard's connection, if a connect failed
                if release is not None:
                    release()
        DuckDBConnectionManager.close_all_connections()


def _lock_conflict(error: BaseException | None, nodes: list[NodeResult]) -> str | None:
    """The message of a DuckDB lock conflict that stopped the build, if one did."""
    messages = [str(error)] if error is not None else []
    messages += [node.message for node in nodes if node.failed]
    for message in messages:
        if (line := lock_conflict_line(message)) is not None:
            return line
    return None


def _failure_message(target: str, as_of: datetime | None, error: BaseException | None, nodes: list[NodeResult],
                     failures: list[NodeResult]) -> str:
    when = iso(as_of) if as_of else "the run start"
    if error is not None:
        return f"dbt build on {target} as of {when} failed: {type(error).__name__}: {str(error).strip()}"
    skipped = sum(node.status == "skipped" for node in nodes)
    lines = [f"dbt build on {target} as of {when} failed: {len(failures)} node(s) failed"
             f"{f', {skipped} skipped because of them' if skipped else ''}:"]
    for node in failures:
        message = " ".join(node.message.split())
        where = f" ({node.path})" if node.path else ""
        lines.append(f"  {node.unique_id}{where}: {node.status}: {message}")
    return "\n".join(lines)
