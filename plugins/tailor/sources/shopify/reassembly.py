"""A bulk operation's JSONL result put back into the payloads the paged path yields.

Nested connection nodes come back as lines of their own carrying `__parentId`; they are put back under their
parent, last in the payload as in the selection, so both paths yield identical payloads. Real Shopify refuses a
connection inside a list field in a bulk query, so the bulk path selects refunds without their refundLineItems
and fills those in afterwards with `nodes(ids:)` (refunds are immutable once created, so reading them later than
the operation changes nothing).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tailor.sources import RecordVersion
from tailor.sources.http import SourceError
from tailor.sources.shopify.paging import all_connection_nodes
from tailor.sources.shopify.selection import EntitySpec, ListFieldWithConnection, connection_selection, record_version
from tailor.sources.shopify.transport import GraphqlTransport

log = logging.getLogger(__name__)

PARENTS_PER_FILL_IN = 50  # parents per nodes(ids:) request when filling in connections inside list fields
MAX_PARENTS_HELD = 2000  # parents held in memory before they are yielded


class BulkResultReader:
    """The records of a bulk result file, with what the bulk query could not carry filled in through `transport`."""

    def __init__(self, transport: GraphqlTransport):
        self.transport = transport

    def records(self, spec: EntitySpec, path: Path) -> Iterator[RecordVersion]:
        """Parents in file order, each with its nested connection nodes (lines carrying __parentId) put back.

        Two passes over the file on disk: the first notes where each line starts (children by parent id), the
        second reads each parent and its children; memory holds offsets, not records.
        """
        key_of_type = {connection.node_type: connection.key for connection in spec.connections}
        with open(path, "rb") as f:
            parents, children = _line_offsets(f)
            batch: list[dict] = []
            needing_fill_in = 0  # parents in the batch that need a follow-up request
            for start in parents:
                parent = self._with_children(f, start, children, spec, key_of_type)
                batch.append(parent)
                needing_fill_in += any(parent.get(item.key) for item in spec.list_fields)
                if needing_fill_in >= PARENTS_PER_FILL_IN or len(batch) >= MAX_PARENTS_HELD:
                    yield from self._filled_in(spec, batch)
                    batch, needing_fill_in = [], 0
            yield from self._filled_in(spec, batch)
        if children:
            log.warning("%s: bulk result had children of %d parents not in the file; ignored", self.transport.conn_id,
                        len(children))

    def _with_children(self, f: BinaryIO, start: int, children: dict[str, list[int]], spec: EntitySpec,
                       key_of_type: dict[str, str]) -> dict:
        """The parent whose line starts at `start`, with its children's lines (taken out of `children`) put back
        under the nested connection their GID's type belongs to."""
        f.seek(start)
        parent = json.loads(f.readline())
        nested: dict[str, list[dict]] = {connection.key: [] for connection in spec.connections}
        for child_at in children.pop(parent["id"], ()):
            f.seek(child_at)
            child = json.loads(f.readline())
            child.pop("__parentId", None)
            kind = str(child.get("id", "")).split("/")[-2:-1]
            key = key_of_type.get(kind[0]) if kind else None
            if key is None:
                raise SourceError(f"Shopify ({self.transport.conn_id}) bulk result holds an unexpected child "
                                  f"{child.get('id')!r} of {parent['id']}")
            nested[key].append(child)
        parent.update(nested)  # nested connections are last in the selection: same key order as paged
        return parent

    def _filled_in(self, spec: EntitySpec, batch: list[dict]) -> Iterator[RecordVersion]:
        """Fill in what a bulk query cannot carry (connections inside list fields), then yield."""
        conn_id = self.transport.conn_id
        for item in spec.list_fields:
            wanted = [p["id"] for p in batch if p.get(item.key)]
            if not wanted:
                continue
            found = self._list_field_connections(spec, item, wanted)
            keep = []
            for parent in batch:
                entries = parent.get(item.key) or []
                if entries and parent["id"] not in found:
                    log.warning("%s: %s vanished before its %s could be read; skipped", conn_id, parent["id"],
                                item.connection.key)
                    continue
                for entry in entries:
                    nodes = found.get(parent["id"], {}).get(entry["id"])
                    if nodes is None:
                        raise SourceError(f"Shopify ({conn_id}) did not return {item.key} {entry['id']} of "
                                          f"{parent['id']}")
                    entry[item.connection.key] = nodes
                keep.append(parent)
            batch = keep
        for parent in batch:
            yield record_version(parent)

    def _list_field_connections(self, spec: EntitySpec, item: ListFieldWithConnection,
                                parent_ids: list[str]) -> dict[str, dict[str, list[dict]]]:
        """{parent id: {list entry id: its connection's nodes}} through nodes(ids:)."""
        query = (f"query TailorInner($ids: [ID!]!) {{ nodes(ids: $ids) {{ ... on {spec.type_name} {{ id {item.key} {{ "
                 f"id {connection_selection(item.connection, bulk=False)} }} }} }} }}")
        out: dict[str, dict[str, list[dict]]] = {}
        data = self.transport.request(f"inner:{item.key}", query, {"ids": parent_ids})
        for node in data.get("nodes") or ():
            if not node or "id" not in node:
                continue
            entries = {}
            for entry in node.get(item.key) or ():
                nodes = all_connection_nodes(self.transport, item.connection, entry["id"],
                                             entry.get(item.connection.key) or {}, None)
                if nodes is None:
                    raise SourceError(f"Shopify ({self.transport.conn_id}) could not page {item.connection.key} "
                                      f"of {entry['id']}")
                entries[entry["id"]] = nodes
            out[node["id"]] = entries
        return out


def _line_offsets(f: BinaryIO) -> tuple[list[int], dict[str, list[int]]]:
    """Where each parent line starts, and where each child line starts by its __parentId."""
    parents: list[int] = []
    children: dict[str, list[int]] = {}
    offset = 0
    for line in f:
        if b'"__parentId"' in line:
            children.setdefault(json.loads(line)["__parentId"], []).append(offset)
        elif line.strip():
            parents.append(offset)
        offset += len(line)
    return parents, children
