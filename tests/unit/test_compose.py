"""The production topology as files (docker-compose.yaml, Dockerfile, .dockerignore), checked without Docker.

No Docker engine runs these files in CI, so this module reads them the way `docker compose` would (PyYAML resolves
the x-airflow-common anchor and its merges; ${VAR:-default} takes its default, never the caller's environment) and
checks what a broken `docker compose up` would otherwise reveal late: images that are not pinned, volumes or files
that do not exist, services that depend on services that do not exist, Airflow components that disagree on their
database or broker, settings names that Airflow or Tailor would silently ignore. Every failure names the service
(or Dockerfile line) and the key.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

import pytest
import yaml

from tailor import connections, settings
from tailor.airflow.callbacks import DUCKDB_POOL

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

INIT = "airflow-init"
AIRFLOW_SERVICES = (INIT, "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker")
# The components that run Tailor's code: task instances (worker), triggers (triggerer), DAG callbacks (dag-processor).
TASK_SERVICES = ("airflow-worker", "airflow-triggerer", "airflow-dag-processor")
# Where Tailor's code is: a TAILOR_* variable nobody reads is a setting that silently does nothing. dbt reads its
# own variables in profiles.yml.
CODE_DIRS = ("plugins", "ml", "simulator")
CODE_FILES = ("dbt_project/profiles.yml",)
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# The Compose Specification's keys (schema/compose-spec.json of compose-spec/compose-spec): Compose refuses a file
# with any other, so a typo (`depend_on`) fails here instead of at `docker compose up`.
TOP_LEVEL_KEYS = {"version", "name", "include", "services", "models", "networks", "volumes", "secrets", "configs"}
SERVICE_KEYS = {
    "develop", "deploy", "annotations", "attach", "build", "blkio_config", "cap_add", "cap_drop", "cgroup",
    "cgroup_parent", "command", "configs", "container_name", "cpu_count", "cpu_percent", "cpu_shares", "cpu_quota",
    "cpu_period", "cpu_rt_period", "cpu_rt_runtime", "cpus", "cpuset", "credential_spec", "depends_on",
    "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "domainname", "entrypoint", "env_file",
    "label_file", "environment", "expose", "extends", "provider", "external_links", "extra_hosts", "gpus",
    "group_add", "healthcheck", "hostname", "image", "init", "ipc", "isolation", "labels", "links", "logging",
    "mac_address", "mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit", "network_mode", "models",
    "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit", "platform", "ports", "post_start",
    "pre_stop", "privileged", "profiles", "pull_policy", "pull_refresh_after", "read_only", "restart", "runtime",
    "scale", "security_opt", "shm_size", "secrets", "sysctls", "stdin_open", "stop_grace_period", "stop_signal",
    "storage_opt", "tmpfs", "tty", "ulimits", "use_api_socket", "user", "userns_mode", "uts", "volumes",
    "volumes_from", "working_dir",
}
HEALTHCHECK_KEYS = {"disable", "interval", "retries", "test", "timeout", "start_period", "start_interval"}
# What the Dockerfile must copy for the project to install and run (tailor finds dbt_project/ and expectations/
# beside itself; pyproject's readme is part of the project's metadata).
PROJECT_PATHS = ("pyproject.toml", "uv.lock", "README.md", "dags", "plugins", "ml", "simulator", "dbt_project",
                 "expectations")


# --- reading the files ------------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                       r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: object) -> str:
    """A compose value with every ${VAR:-default} replaced by its default (a required ${VAR:?} by <VAR>) and $$ by $:
    what `docker compose up` uses on a machine with no .env."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op = match.group("op") or ""
        if op.endswith("-"):
            return match.group("arg")
        if op.endswith("?"):
            return f"<{name}>"
        return ""

    return _VARIABLE.sub(replace, str(value))


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def environment(service: dict) -> dict[str, str]:
    """A service's environment as written (uninterpolated), from either of compose's forms."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def resolved(service: dict) -> dict[str, str]:
    return {key: interpolate(value) for key, value in environment(service).items()}


def mounts(service: dict) -> list[tuple[str, str, str]]:
    """(type, source, target) of each of a service's volumes: type "volume" (named) or "bind"."""
    found = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            kind, source, target = entry.get("type", "volume"), str(entry.get("source", "")), str(entry["target"])
        else:
            parts = interpolate(entry).split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
            kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
        found.append((kind, interpolate(source), target))
    return found


def depends_on(service: dict) -> dict:
    return service.get("depends_on") or {}


def command_text(service: dict) -> str:
    command = service.get("command") or ""
    return command if isinstance(command, str) else "\n".join(str(part) for part in command)


def container_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or {"http": 80, "https": 443, "redis": 6379}.get(parts.scheme.split("+")[0], 5432)


@cache
def dockerfile() -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments) of each instruction, continuation lines joined."""
    instructions, pending, start = [], "", 0
    for number, line in enumerate(DOCKERFILE.read_text().splitlines(), 1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        start = start or number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        keyword, _, arguments = text.partition(" ")
        instructions.append((start, keyword.upper(), arguments.strip()))
        pending, start = "", 0
    return instructions


def dockerfile_env() -> dict[str, str]:
    env = {}
    for _, keyword, arguments in dockerfile():
        if keyword == "ENV":
            for word in shlex.split(arguments):
                key, _, value = word.partition("=")
                env[key] = value
    return env


def image_pin_problem(reference: str) -> str | None:
    """Why an image reference is not pinned (None if it is): a digest, or a tag that is not `latest`."""
    if "@sha256:" in reference:
        return None
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:
        return f"image {reference!r} has no tag: pin one"
    if tag == "latest":
        return f"image {reference!r} is :latest: pin a version"
    return None


def _dockerignore_pattern(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (relative to the context) out of the build context: the last pattern that
    matches the path or one of its parent folders decides, as in Docker."""
    if not DOCKERIGNORE.exists():
        return False
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = _dockerignore_pattern(line.lstrip("!").strip().strip("/"))
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


@cache
def code_text() -> str:
    files = [path for folder in CODE_DIRS for path in sorted((ROOT / folder).rglob("*.py"))]
    files += [ROOT / name for name in CODE_FILES]
    return "\n".join(path.read_text(errors="replace") for path in files if path.is_file())


def fail_on(problems: list[str]) -> None:
    assert not problems, "\n".join(problems)


# --- the compose file -------------------------------------------------------------------------------------------


def test_the_topology_has_every_service():
    missing = (set(AIRFLOW_SERVICES) | {"postgres", "redis", "simulator"}) - set(services())
    assert not missing, f"docker-compose.yaml: services missing: {', '.join(sorted(missing))}"
    s3 = [name for name, service in services().items()
          if "minio" in interpolate(service.get("image", "")) or "moto" in command_text(service)]
    assert s3, "docker-compose.yaml: no local S3 server (a minio image or moto server)"


def test_every_key_is_one_compose_knows():
    problems = [f"docker-compose.yaml: top-level key {key!r} is not in the Compose Specification"
                for key in compose() if key not in TOP_LEVEL_KEYS and not key.startswith("x-")]
    for name, service in services().items():
        problems += [f"{name}: {key!r} is not a Compose service key" for key in service
                     if key not in SERVICE_KEYS and not key.startswith("x-")]
        problems += [f"{name}: healthcheck.{key} is not a Compose healthcheck key"
                     for key in service.get("healthcheck") or {} if key not in HEALTHCHECK_KEYS]
    fail_on(problems)


def test_every_service_has_a_pinned_image_or_a_build_in_the_repo():
    problems = []
    for name, service in services().items():
        build, image = service.get("build"), service.get("image")
        if not build and not image:
            problems.append(f"{name}: neither image nor build")
        if build:
            build = {"context": build} if isinstance(build, str) else build
            context = (ROOT / interpolate(build.get("context", "."))).resolve()
            dockerfile_path = context / interpolate(build.get("dockerfile", "Dockerfile"))
            if not context.is_dir():
                problems.append(f"{name}: build.context {context} does not exist")
            elif not dockerfile_path.is_file():
                problems.append(f"{name}: build.dockerfile {dockerfile_path} does not exist")
        if image and (problem := image_pin_problem(interpolate(image))):
            problems.append(f"{name}: {problem}")
    fail_on(problems)


def test_bind_mounts_exist_and_named_volumes_are_declared():
    declared = set(compose().get("volumes") or {})
    problems = []
    for name, service in services().items():
        for kind, source, target in mounts(service):
            if kind == "bind" and not (ROOT / Path(source).expanduser()).exists():
                problems.append(f"{name}: bind mount {source} -> {target}: {source} does not exist in the repo")
            if kind == "volume" and source and source not in declared:
                problems.append(f"{name}: volume {source!r} (-> {target}) is not declared under the top-level volumes")
        for entry in service.get("env_file") or []:
            entry = {"path": entry} if isinstance(entry, str) else entry
            if entry.get("required", True) and not (ROOT / interpolate(entry["path"])).exists():
                problems.append(f"{name}: env_file {entry['path']} is required but does not exist")
    fail_on(problems)


def test_dependencies_name_defined_services_and_wait_for_their_state():
    defined = services()
    problems = []
    for name, service in defined.items():
        needs = depends_on(service)
        if isinstance(needs, list):
            problems.append(f"{name}: depends_on is a list; give each dependency a condition (service_healthy, ...)")
            continue
        for other, spec in needs.items():
            condition = (spec or {}).get("condition", "service_started")
            if other not in defined:
                problems.append(f"{name}: depends_on {other!r}, which is not a service of this file")
            elif condition not in CONDITIONS:
                problems.append(f"{name}: depends_on {other}: unknown condition {condition!r}")
            elif condition == "service_healthy" and "healthcheck" not in defined[other]:
                problems.append(f"{name}: depends_on {other} being healthy, but {other} has no healthcheck")
            elif condition == "service_completed_successfully" and defined[other].get("restart", "no") != "no":
                problems.append(f"{name}: waits for {other} to complete, but {other} restarts "
                                f"(restart: {defined[other].get('restart')})")
        if name != INIT and "healthcheck" not in service:
            problems.append(f"{name}: no healthcheck (a long-running service; depends_on conditions need one)")
    for name in AIRFLOW_SERVICES:
        if name != INIT and depends_on(defined.get(name, {})).get(INIT, {}).get(
                "condition") != "service_completed_successfully":
            problems.append(f"{name}: must depend on {INIT} with condition service_completed_successfully "
                            "(the database is migrated and the duckdb pool exists before it starts)")
    fail_on(problems)


def test_the_airflow_services_share_one_config():
    common = compose().get("x-airflow-common")
    assert isinstance(common, dict), "docker-compose.yaml: no x-airflow-common anchor for the shared Airflow config"
    common_env = environment(common)
    problems = []
    for name in AIRFLOW_SERVICES:
        service = services()[name]
        env = environment(service)
        for key, value in common_env.items():
            if env.get(key) != value:
                problems.append(f"{name}: {key} is {env.get(key)!r}, not x-airflow-common's {value!r}")
        for key in ("image", "build"):
            if service.get(key) != common.get(key):
                problems.append(f"{name}: {key} differs from x-airflow-common's (one image for every component)")
        for mount in mounts(common):
            if mount not in mounts(service):
                problems.append(f"{name}: lacks x-airflow-common's volume {mount[1]} -> {mount[2]}")
    fail_on(problems)


def test_airflow_runs_celery_on_this_files_postgres_and_redis():
    defined = services()
    problems = []
    postgres = resolved(defined["postgres"])
    for name in AIRFLOW_SERVICES:
        env = resolved(defined[name])

        def check(key: str, schemes: tuple[str, ...], host: str, env=env, name=name) -> SplitResult | None:
            value = env.get(key)
            if not value:
                problems.append(f"{name}: {key} is not set")
                return None
            url = urlsplit(value)
            if not url.scheme.startswith(schemes):
                problems.append(f"{name}: {key}={value!r} is not a {'/'.join(schemes)} URL")
            if url.hostname != host:
                problems.append(f"{name}: {key} points at host {url.hostname!r}, not the {host!r} service")
            return url

        if env.get("AIRFLOW__CORE__EXECUTOR") != "CeleryExecutor":
            problems.append(f"{name}: AIRFLOW__CORE__EXECUTOR is {env.get('AIRFLOW__CORE__EXECUTOR')!r}, "
                            "not CeleryExecutor")
        for key, schemes in (("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", ("postgresql",)),
                             ("AIRFLOW__CELERY__RESULT_BACKEND", ("db+postgresql",))):
            url = check(key, schemes, "postgres")
            if url is None:
                continue
            if url.path.lstrip("/") != postgres.get("POSTGRES_DB"):
                problems.append(f"{name}: {key} names database {url.path.lstrip('/')!r}; the postgres service "
                                f"creates {postgres.get('POSTGRES_DB')!r}")
            if (url.username, url.password) != (postgres.get("POSTGRES_USER"), postgres.get("POSTGRES_PASSWORD")):
                problems.append(f"{name}: {key} logs in as another user or password than the postgres service's "
                                "POSTGRES_USER / POSTGRES_PASSWORD")
        check("AIRFLOW__CELERY__BROKER_URL", ("redis",), "redis")
        url = check("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", ("http",), "airflow-apiserver")
        if url is not None:
            published = [str(port).rsplit(":", 1)[-1] for port in defined["airflow-apiserver"].get("ports", [])]
            if url.path != "/execution/":
                problems.append(f"{name}: AIRFLOW__CORE__EXECUTION_API_SERVER_URL must end in /execution/, "
                                f"not {url.path!r}")
            if str(container_port(url.geturl())) not in published:
                problems.append(f"{name}: AIRFLOW__CORE__EXECUTION_API_SERVER_URL port {url.port} is not the "
                                f"api-server's port ({', '.join(published) or 'none'})")
        if not env.get("AIRFLOW__API_AUTH__JWT_SECRET"):
            problems.append(f"{name}: AIRFLOW__API_AUTH__JWT_SECRET is not set: each component would make its own "
                            "and the tasks' tokens would not verify")
    for name, needle in (("postgres", "postgres"), ("redis", "redis")):
        if needle not in interpolate(defined[name].get("image", "")):
            problems.append(f"{name}: image {defined[name].get('image')!r} is not a {needle} image")
    fail_on(problems)


def test_every_tailor_variable_is_read_by_the_code():
    problems = []
    sources = [(name, environment(service)) for name, service in services().items()]
    sources.append(("Dockerfile ENV", dockerfile_env()))
    for name, env in sources:
        for key in env:
            if key.startswith("TAILOR_") and not re.search(rf"\b{key}\b", code_text()):
                problems.append(f"{name}: {key} is set, but no code in {', '.join(CODE_DIRS)} reads it")
    fail_on(problems)


def test_the_task_services_get_what_the_code_needs(monkeypatch):
    defined = services()
    simulator_url = resolved(defined["simulator"]).get("TAILOR_SIMULATOR_URL", "")
    simulator_port = urlsplit(simulator_url).port if simulator_url else None
    data_volumes = {}
    problems = []
    for name in TASK_SERVICES:
        env = resolved(defined[name])
        data_dir = env.get("TAILOR_DATA_DIR")
        if not data_dir:
            problems.append(f"{name}: TAILOR_DATA_DIR is not set (it would default to ./data inside the container)")
        else:
            volume = [source for kind, source, target in mounts(defined[name])
                      if kind == "volume" and target.rstrip("/") == data_dir.rstrip("/")]
            if not volume:
                problems.append(f"{name}: TAILOR_DATA_DIR={data_dir} is not a named volume's mount point")
            data_volumes[name] = volume[0] if volume else None
        url = env.get("TAILOR_SIMULATOR_URL")
        if not url:
            problems.append(f"{name}: TAILOR_SIMULATOR_URL is not set (it would default to 127.0.0.1, itself)")
        else:
            parts = urlsplit(url)
            if parts.hostname != "simulator":
                problems.append(f"{name}: TAILOR_SIMULATOR_URL={url} does not point at the simulator service")
            if simulator_port and parts.port != simulator_port:
                problems.append(f"{name}: TAILOR_SIMULATOR_URL port {parts.port} is not the one the simulator "
                                f"service listens on ({simulator_port})")
        for key in ("TAILOR_S3_ENDPOINT_URL", "TAILOR_PG_HOST"):
            if key in env:
                host = urlsplit(env[key]).hostname if "://" in env[key] else env[key]
                if host not in defined:
                    problems.append(f"{name}: {key}={env[key]} does not name a service of this file")
        # The values themselves, through the code that reads them: a memory size, a sink name, a port that the
        # settings module refuses fails here rather than in the first task.
        for key in [key for key in os.environ if key.startswith("TAILOR_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if key.startswith("TAILOR_"):
                monkeypatch.setenv(key, value)
        for function_name, function in inspect.getmembers(settings, inspect.isfunction):
            if function.__module__ != settings.__name__ or function_name.startswith("_"):
                continue
            if any(p.default is p.empty for p in inspect.signature(function).parameters.values()):
                continue
            try:
                function()
            except ValueError as exc:
                problems.append(f"{name}: settings.{function_name}() refuses the compose value: {exc}")
    if len(set(data_volumes.values())) > 1:
        problems.append(f"the task services mount different volumes at TAILOR_DATA_DIR: {data_volumes} "
                        "(the DuckDB file, lake and outbox must be one)")
    fail_on(problems)


def test_connections_set_in_compose_are_ones_the_code_reads():
    known = set(connections.conn_ids().values()) | {connections.AWS_CONN_ID}
    problems = []
    for name, service in services().items():
        for key, value in resolved(service).items():
            if not key.startswith("AIRFLOW_CONN_"):
                continue
            conn_id = key[len("AIRFLOW_CONN_"):].lower()
            if conn_id not in known:
                problems.append(f"{name}: {key}: no code reads Connection {conn_id!r} (known: {sorted(known)})")
            try:
                fields = json.loads(value)
            except json.JSONDecodeError as exc:
                problems.append(f"{name}: {key} is not valid JSON once interpolated: {exc}")
                continue
            endpoint = (fields.get("extra") or {}).get("endpoint_url")
            if endpoint and urlsplit(endpoint).hostname not in services():
                problems.append(f"{name}: {key} extra.endpoint_url {endpoint} does not name a service of this file")
    fail_on(problems)


def test_no_secret_is_written_into_the_file():
    secret = re.compile(r"PASSWORD|SECRET|FERNET|_KEY$")
    problems = []
    for name, service in [*services().items(), ("x-airflow-common", compose()["x-airflow-common"])]:
        for key, value in environment(service).items():
            # a path to a secret (a passwords file, a key file) is not one
            if secret.search(key) and not key.endswith(("_FILE", "_PATH", "_CMD")) and value and "${" not in value:
                problems.append(f"{name}: {key} is written into the file: take it from ${{VAR:-local-dev default}}")
            masked = re.sub(r"\$\{[^}]*\}", "\0", value)  # each ${...} one character, so that ':' inside is not read
            for match in re.finditer(r"://[^/@\s]*:([^/@\s]*)@", masked):
                if match.group(1) != "\0":
                    problems.append(f"{name}: {key} has a password written into its URL: use ${{VAR:-...}}")
            if key.startswith("AIRFLOW_CONN_") and re.search(r'"password":\s*"(?!\$\{)', value):
                problems.append(f"{name}: {key} has a password written into it: use ${{VAR:-...}}")
    fail_on(problems)


def airflow_settings_names() -> dict[tuple[str, str], list[str]]:
    """(section, option) -> where each AIRFLOW__SECTION__KEY is set ("service: KEY")."""
    names: dict[tuple[str, str], list[str]] = {}
    for name, service in [*services().items(), ("Dockerfile ENV", {"environment": dockerfile_env()})]:
        for key in environment(service):
            if key.startswith("AIRFLOW__"):
                section, _, option = key[len("AIRFLOW__"):].lower().partition("__")
                names.setdefault((section, option), []).append(f"{name}: {key}")
    return names


def worker_app() -> str:
    """The Celery app the worker's healthcheck pings (`celery --app <module>.<attribute> inspect ping`)."""
    test = services()["airflow-worker"].get("healthcheck", {}).get("test", [])
    match = re.search(r"--app[ =](\S+)", " ".join(test) if isinstance(test, list) else str(test))
    assert match, "airflow-worker: the healthcheck does not ping the worker with `celery --app ... inspect ping`"
    return match.group(1)


# Run in a subprocess with a throwaway AIRFLOW_HOME (Airflow reads, and may write, its home when imported) and the
# compose file's Airflow settings instead of the caller's.
_PROBE = """
import importlib, json, sys
import airflow
from airflow.configuration import conf

described = conf.configuration_description

def known(section, option):
    options = described.get(section, {}).get("options", {})
    base = option.removesuffix("_cmd").removesuffix("_secret")
    return option in options or (base != option and options.get(base, {}).get("sensitive", False))

pairs, app = json.loads(sys.argv[1]), sys.argv[2]
answer = {"version": airflow.__version__, "unknown": [pair for pair in pairs if not known(*pair)]}
try:
    from airflow.executors.executor_loader import ExecutorLoader
    answer["executor"] = ExecutorLoader.import_default_executor_cls()[0].__name__
except Exception as exc:
    answer["executor_error"] = f"{type(exc).__name__}: {exc}"
module, _, attribute = app.rpartition(".")
try:
    getattr(importlib.import_module(module), attribute)
except Exception as exc:
    answer["app_error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(answer))
"""


@pytest.fixture(scope="module")
def airflow_answer(tmp_path_factory) -> dict:
    """What the installed Airflow says about this file's settings: unknown options, and whether the executor class
    and the worker's Celery app load (`airflow scheduler` and `airflow celery worker` import them first thing)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path_factory.mktemp("airflow-home"))
    common = resolved(compose()["x-airflow-common"])
    env.update({key: value for key, value in common.items() if key.startswith("AIRFLOW__")})
    result = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(sorted(airflow_settings_names())), worker_app()],
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"could not ask Airflow about its options:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_airflow_setting_is_a_real_option(airflow_answer):
    """AIRFLOW__SECTION__KEY for an option that does not exist is ignored without a word. The list is Airflow's own
    description of its options, core and installed providers ([celery] comes from the Celery provider);
    conf.has_option would not do: it says False for real options whose default is unset (execution_api_server_url)."""
    names = airflow_settings_names()
    problems = [f"{where}: not an Airflow {airflow_answer['version']} option ([{section}] {option})"
                for section, option in airflow_answer["unknown"] for where in names[(section, option)]]
    fail_on(problems)


def test_the_executor_and_the_worker_app_load(airflow_answer):
    errors = []
    if "executor_error" in airflow_answer:
        errors.append(f"airflow-scheduler: AIRFLOW__CORE__EXECUTOR cannot be loaded: {airflow_answer['executor_error']}")
    if "app_error" in airflow_answer:
        errors.append(f"airflow-worker: the healthcheck's Celery app {worker_app()} cannot be loaded: "
                      f"{airflow_answer['app_error']}")
    fail_on(errors)
    assert airflow_answer.get("executor") == "CeleryExecutor", (
        f"x-airflow-common: AIRFLOW__CORE__EXECUTOR loads {airflow_answer.get('executor')}, not CeleryExecutor")


def test_the_init_service_migrates_and_creates_the_duckdb_pool():
    init = services()[INIT]
    script = interpolate(command_text(init))
    assert "airflow db migrate" in script, f"{INIT}: command does not run `airflow db migrate`"
    pools = re.findall(r"airflow pools set (\S+) (\d+)", script)
    assert (DUCKDB_POOL, "1") in pools, (f"{INIT}: command does not create the {DUCKDB_POOL!r} pool with 1 slot "
                                         f"(`airflow pools set {DUCKDB_POOL} 1 ...`; found {pools})")
    assert init.get("restart", "no") == "no", f"{INIT}: restart must be \"no\" (it runs once and exits)"
    if shutil.which("bash"):
        check = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True, check=False)
        assert check.returncode == 0, f"{INIT}: the command is not valid bash: {check.stderr}"
    for body in re.findall(r"<<'?(\w+)'?\n(.*?)\n\1\n", script, flags=re.DOTALL):
        try:
            compile(body[1], f"{INIT} command ({body[0]} here-document)", "exec")
        except SyntaxError as exc:
            pytest.fail(f"{INIT}: the Python in its command does not compile: {exc}")


# --- the Dockerfile ---------------------------------------------------------------------------------------------


def test_the_dockerfile_base_and_copied_images_are_pinned():
    problems = []
    froms = [(line, args.split()[0]) for line, keyword, args in dockerfile() if keyword == "FROM"]
    assert froms, "Dockerfile: no FROM"
    line, base = froms[0]
    if not base.startswith(("python:3.11", "docker.io/library/python:3.11")) or "slim" not in base:
        problems.append(f"Dockerfile line {line}: FROM {base}: use an official python:3.11-slim image")
    for line, image in froms:
        if problem := image_pin_problem(image):
            problems.append(f"Dockerfile line {line}: FROM {problem}")
    for line, keyword, args in dockerfile():
        from_image = re.search(r"--from=(\S+)", args) if keyword == "COPY" else None
        if from_image and ":" in from_image.group(1) and (problem := image_pin_problem(from_image.group(1))):
            problems.append(f"Dockerfile line {line}: COPY --from {problem}")
    fail_on(problems)


def test_the_dockerfile_copies_sources_that_exist_and_reach_the_build():
    problems, copied = [], set()
    for line, keyword, args in dockerfile():
        if keyword not in ("COPY", "ADD") or "--from=" in args:
            continue
        words = [word for word in shlex.split(args) if not word.startswith("--")]
        for source in words[:-1]:
            copied.add(source.rstrip("/"))
            if not (ROOT / source).exists():
                problems.append(f"Dockerfile line {line}: {keyword} {source}: no such file or folder in the repo")
            elif dockerignored(source):
                problems.append(f"Dockerfile line {line}: {keyword} {source}: .dockerignore keeps it out of the "
                                "build context")
    problems += [f"Dockerfile: does not copy {path}" for path in PROJECT_PATHS if path not in copied]
    if shutil.which("git") and (ROOT / ".git").exists():
        tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--", *sorted(copied)], capture_output=True,
                                 text=True, check=False).stdout.split()
        problems += [f".dockerignore: keeps out {path}, a committed file the image needs"
                     for path in tracked if dockerignored(path)]
    for secret in (".env", ".venv", "data", ".git"):
        if not dockerignored(secret):
            problems.append(f".dockerignore: lets {secret} into the build context")
    fail_on(problems)


def test_the_dockerfile_installs_the_locked_dependencies_as_a_non_root_user():
    instructions = dockerfile()
    runs = [(line, args) for line, keyword, args in instructions if keyword == "RUN" and "uv sync" in args]
    assert runs, "Dockerfile: no RUN uv sync (the dependencies must come from uv.lock)"
    problems = [f"Dockerfile line {line}: uv sync without --frozen (or --locked): it would re-resolve, not install "
                "uv.lock" for line, args in runs if not re.search(r"--(frozen|locked)\b", args)]
    problems += [f"Dockerfile line {line}: uv sync without --no-dev: the image would carry the test tools"
                 for line, args in runs if "--no-dev" not in args]
    lock_copied = [line for line, keyword, args in instructions if keyword == "COPY" and "uv.lock" in args.split()]
    if not lock_copied or lock_copied[0] > runs[0][0]:
        problems.append("Dockerfile: uv.lock is not copied before the first uv sync")
    users = [args.split(":")[0] for _, keyword, args in instructions if keyword == "USER"]
    if not users or users[-1] in ("root", "0"):
        problems.append("Dockerfile: the image runs as root: add a USER")
    env = dockerfile_env()
    for key in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER", "TAILOR_DATA_DIR"):
        if not env.get(key):
            problems.append(f"Dockerfile: ENV {key} is not set")
    volumes = " ".join(args for _, keyword, args in instructions if keyword == "VOLUME")
    if env.get("TAILOR_DATA_DIR") and env["TAILOR_DATA_DIR"] not in volumes:
        problems.append(f"Dockerfile: TAILOR_DATA_DIR={env['TAILOR_DATA_DIR']} is not a VOLUME")
    for key in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER"):
        folder = env.get(key, "")
        copied_to = [args.split()[-1].rstrip("/") for _, keyword, args in instructions if keyword == "COPY"]
        workdir = [args for _, keyword, args in instructions if keyword == "WORKDIR"]
        targets = {str(Path(workdir[-1] if workdir else "/") / target) for target in copied_to}
        if folder and folder.rstrip("/") not in targets:
            problems.append(f"Dockerfile: {key}={folder} is not where the Dockerfile copies that folder")
    fail_on(problems)
