"""Bulk query operations (https://shopify.dev/docs/api/usage/bulk-operations/queries), API version 2026-07.

`bulkOperationRunQuery` validates the query (one top-level connection, at most five connections, nesting
at most two levels deep), then runs it in a background thread over every record existing at the clock of
creation - `first`/`after` inside the query are ignored, as on Shopify - and writes JSONL: one line per
object, a nested connection's nodes as lines of their own carrying `__parentId`. With the default
`groupObjects: false` children follow all root objects (Shopify only groups them under their parent when
asked to). Since 2026-01 an app may run five bulk queries at a time per shop; a sixth gets LIMIT_REACHED.
Status moves CREATED -> RUNNING -> COMPLETED (or CANCELING -> CANCELED); an operation never completes
sooner than `min_seconds`, so clients have to poll as they do on Shopify.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np
from graphql import GraphQLSyntaxError, get_operation_ast, parse, validate

from simulator.shopify import errors, listing
from simulator.shopify.executor import Executor, Plan
from simulator.shopify.objects import Conn, FieldError
from simulator.shopify.schema import SCHEMA

MAX_RUNNING = 5
MAX_CONNECTIONS = 5
MAX_DEPTH = 2
ACTIVE = ("CREATED", "RUNNING", "CANCELING")
STATUSES = ("CANCELED", "CANCELING", "COMPLETED", "CREATED", "EXPIRED", "FAILED", "RUNNING")
BULK_ID_BASE = 5_180_000_000

log = logging.getLogger(__name__)


@dataclass
class BulkOperation:
    number: int
    query: str
    created_at: int
    group_objects: bool
    status: str = "CREATED"
    completed_at: int | None = None
    error_code: str | None = None
    object_count: int = 0
    root_object_count: int = 0
    file_size: int | None = None
    url: str | None = None
    partial_data_url: str | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    typename = "BulkOperation"

    @property
    def gid(self) -> str:
        return f"gid://shopify/BulkOperation/{BULK_ID_BASE + self.number}"


def _invalid(message: str) -> dict:
    return {"field": ["query"], "message": message, "code": "INVALID"}


class BulkOperations:
    """The bulk operations of one shop. `runtime` is its ShopifyRuntime (duck-typed: this module sits below
    runtime.py in the import graph): it provides state, context(t, bulk=True), lookup() and filtered()."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.min_seconds = 1.0
        self._ops: dict[int, BulkOperation] = {}
        self._lock = threading.Lock()

    def get(self, ident: int) -> BulkOperation | None:
        with self._lock:
            return self._ops.get(ident - BULK_ID_BASE)

    def current(self) -> BulkOperation | None:
        with self._lock:
            return self._ops[max(self._ops)] if self._ops else None

    # ---- mutations ------------------------------------------------------------------------------------
    def run_query(self, ctx, text: str, group_objects: bool) -> tuple[BulkOperation | None, list[dict]]:
        try:
            document = parse(text)
        except GraphQLSyntaxError as exc:
            return None, [_invalid(f"Invalid bulk query: {errors.shopify_errors([exc], None)[0]['message']}")]
        problems = validate(SCHEMA, document)
        if problems:
            return None, [_invalid(f"Invalid bulk query: {e['message']}")
                          for e in errors.shopify_errors(problems, document)]
        operation = get_operation_ast(document, None)
        if operation is None or operation.operation.value != "query":
            return None, [_invalid("Bulk queries must contain exactly one query operation.")]
        executor = Executor(SCHEMA, document, operation, {})
        plans = [p for p in executor.root_plans() if p.resolver is not None]
        if len(plans) != 1:
            return None, [_invalid("Bulk queries must contain exactly one top-level field.")]
        root = plans[0]
        if not root.is_connection or executor.node_plans(root) is None:
            return None, [_invalid("Bulk queries must contain at least one connection.")]
        depths = list(executor.connection_shape(root))
        if len(depths) > MAX_CONNECTIONS:
            return None, [_invalid(f"Bulk queries cannot contain more than {MAX_CONNECTIONS} connections.")]
        if max(depths) > MAX_DEPTH:
            return None, [_invalid(f"Bulk queries cannot contain connections with a nesting depth greater "
                                   f"than {MAX_DEPTH}.")]
        with self._lock:
            if sum(op.status in ACTIVE for op in self._ops.values()) >= MAX_RUNNING:
                return None, [{"field": None, "message": "Bulk operations limit reached. Please try again later.",
                               "code": "LIMIT_REACHED"}]
            number = len(self._ops) + 1
            op = self._ops[number] = BulkOperation(number, text, ctx.now, group_objects)
        thread = threading.Thread(target=self._run, args=(op, executor, root, ctx.t), daemon=True,
                                  name=f"shopify-bulk-{number}")
        ctx.after_response.append(thread.start)  # the mutation answers with status CREATED, as Shopify's does
        return op, []

    def cancel(self, ctx, gid: str) -> tuple[BulkOperation | None, list[dict]]:
        found = self.runtime.lookup(ctx, gid)
        if not isinstance(found, BulkOperation):
            return None, [{"field": ["id"], "message": "Bulk operation does not exist"}]
        # The answer shows the operation as the cancel left it (a copy): its thread may mark it CANCELED before the
        # answer is rendered, and Shopify answers CANCELING.
        with self._lock:
            if found.status not in ("CREATED", "RUNNING"):
                return replace(found), [{"field": None, "message": "A bulk operation cannot be canceled when it is "
                                                                  f"{found.status.lower()}"}]
            found.status = "CANCELING"
            found.cancel_requested.set()
            return replace(found), []

    # ---- the bulkOperations connection -----------------------------------------------------------------
    def connection(self, ctx, args: dict, path: list) -> Conn:
        with self._lock:
            ops = [self._ops[k] for k in sorted(self._ops)]
        never = np.iinfo(np.int64).max
        columns = {
            "created_at": np.array([op.created_at for op in ops], dtype=np.int64),
            "completed_at": np.array([op.completed_at if op.completed_at is not None else never for op in ops],
                                     dtype=np.int64),
            "status": np.array([op.status.lower() for op in ops], dtype=str),
            "status_rank": np.array([STATUSES.index(op.status) for op in ops], dtype=np.int64),
            "operation_type": np.array(["query"] * len(ops), dtype=str),
        }
        ids = np.array([BULK_ID_BASE + op.number for op in ops], dtype=np.int64)
        view = listing.make_listing(np.arange(len(ops)), ids, columns, args["sortKey"])
        view = self.runtime.filtered(ctx, view, args.get("query"), path)
        if ctx.bulk:
            raise FieldError("Bulk operations cannot be queried in bulk.")
        pg = ctx.page(view, args)
        return Conn([ops[int(view.rows[p])] for p in pg.positions], [view.cursor(int(p)) for p in pg.positions],
                    pg.has_next, pg.has_previous)

    # ---- the background run ---------------------------------------------------------------------------
    def _run(self, op: BulkOperation, executor: Executor, root: Plan, t: int) -> None:
        state = self.runtime.state
        started = time.monotonic()
        final = state.files_dir / f"shopify-bulk-{op.number}.jsonl"
        main_path = final.with_name(final.name + ".part")
        side_path = final.with_name(final.name + ".children")
        with self._lock:
            if op.status == "CREATED":
                op.status = "RUNNING"
        try:
            ctx = self.runtime.context(t, bulk=True)
            conn = root.resolver(None, root.args, ctx)
            writer = _LineWriter(executor, ctx, op)
            with open(main_path, "w", encoding="utf-8") as main, open(side_path, "w", encoding="utf-8") as side:
                lines: list[str] = []
                children = lines if op.group_objects else []
                render = writer.renderer(root)
                items = conn.items
                for k, item in enumerate(items):
                    if op.cancel_requested.is_set():
                        break
                    items[k] = None  # written records need not stay in memory
                    ctx.pending = []
                    lines.append(render(item) + "\n")
                    op.root_object_count += 1
                    op.object_count += 1
                    if ctx.pending:
                        writer.children(item.gid, ctx.pending, children)
                    if len(lines) >= 4096:
                        main.write("".join(lines))
                        lines.clear()
                    if len(children) >= 4096 and children is not lines:
                        side.write("".join(children))
                        children.clear()
                main.write("".join(lines))
                side.write("".join(children) if children is not lines else "")
            if not op.group_objects:
                with open(main_path, "a", encoding="utf-8") as main, open(side_path, encoding="utf-8") as side:
                    shutil.copyfileobj(side, main)
            side_path.unlink()
            while time.monotonic() - started < self.min_seconds and not op.cancel_requested.is_set():
                time.sleep(0.02)
            with self._lock:
                if op.cancel_requested.is_set():
                    op.status = "CANCELED"
                    main_path.unlink()
                    return
                main_path.replace(final)
                op.completed_at = state.now()
                if op.object_count:
                    op.file_size = final.stat().st_size
                    op.url = f"{state.public_url}/_simulator/files/{final.name}"
                else:
                    final.unlink()
                op.status = "COMPLETED"
        except Exception:
            log.exception("bulk operation %s failed", op.gid)
            partial = final.with_name(final.name.replace(".jsonl", ".partial.jsonl"))
            if main_path.exists():
                main_path.replace(partial)
            with self._lock:
                op.status = "FAILED"
                op.error_code = "INTERNAL_SERVER_ERROR"
                op.completed_at = state.now()
                if partial.exists():
                    op.partial_data_url = f"{state.public_url}/_simulator/files/{partial.name}"


class _LineWriter:
    """Renders the JSONL lines of one bulk run; nested connections become lines carrying __parentId."""

    def __init__(self, executor: Executor, ctx, op: BulkOperation):
        self.executor, self.ctx, self.op = executor, ctx, op
        self._renderers: dict[int, tuple] = {}

    def _entry(self, plan: Plan) -> tuple:
        """(plan, safe renderer, compiled renderer, whether nodes hold connections) of a connection plan."""
        hit = self._renderers.get(id(plan))
        if hit is None:
            found = self.executor.node_plans(plan)
            if found is None:
                hit = (plan, None, None, False)
            else:
                node_type, node_plans = found
                fn = self.executor.compiled(node_type, node_plans, as_json=True)
                executor, ctx = self.executor, self.ctx

                def render(item, fn=fn, node_type=node_type, node_plans=node_plans):
                    mark = len(ctx.pending)
                    try:
                        return fn(item, ctx)
                    except Exception:  # rerun generically: it reports the error at its path
                        del ctx.pending[mark:]
                        return json.dumps(executor.exec_object(ctx, node_type, node_plans, item, (None, "node")),
                                          separators=(",", ":"), ensure_ascii=False)
                nested = len(list(self.executor.connection_shape(plan))) > 1
                hit = (plan, render, fn, nested)
            self._renderers[id(plan)] = hit
        return hit

    def renderer(self, plan: Plan):
        """A function item -> JSON text for the nodes of a connection plan (None if it has no node object)."""
        return self._entry(plan)[1]

    def children(self, parent_gid: str, pending: list, out: list[str]) -> None:
        """Appends the lines of a record's nested connection nodes (and theirs) to `out`."""
        ctx, op = self.ctx, self.op
        parent = f',"__parentId":{json.dumps(parent_gid)}}}\n'
        for plan, conn in pending:
            _, render, fn, nested = self._entry(plan)
            if render is None:
                continue
            items = conn.items
            op.object_count += len(items)
            if not nested:
                try:  # the common case: leaf-only children, rendered in one comprehension
                    out.extend([line[:-1] + parent if line != "{}" else "{" + parent[1:]
                                for line in [fn(item, ctx) for item in items]])
                    continue
                except Exception:  # rerun item by item below, where failures are handled
                    pass
            for item in items:
                ctx.pending = []
                line = render(item)
                out.append(line[:-1] + parent if line != "{}" else "{" + parent[1:])
                if ctx.pending:
                    self.children(item.gid, ctx.pending, out)
