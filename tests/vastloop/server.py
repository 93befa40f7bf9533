"""A loopback VAST DataBase server that the real ``vastdb`` 2.1.0 SDK can talk to.

Why: the VAST backend must be tested without a cluster, through the real SDK, so that
request slicing, error mapping and transaction handling are exercised as in production.
The wire format is private to vastdb 2.1.0 (pinned in pyproject.toml).

Public API (kept stable for the backend tests)::

    srv = LoopbackVast(buckets=["exr-data"], access_key="AK", secret_key="SK",
                       host="127.0.0.1", port=0,              # port 0: a free port
                       verify_signature=True,                 # False: check only the access key
                       rows_per_row_group=65536)              # smaller values exercise many sub-splits
    srv.start(); srv.endpoint                # "http://127.0.0.1:PORT"; also `with LoopbackVast(...) as srv:`
    srv.connect(**session_kwargs)            # vastdb.Session bound to this server and its keys
    srv.requests                             # copy of the RequestRecord list (thread-safe)
    srv.clear_requests()
    srv.fail_next(status=503, code="SlowDown", count=1, method=None, command=None, message=None, skip=0)
    srv.clear_faults()
    srv.delay_next(seconds, count=1, command=None, method=None)   # sleep, then serve normally
    srv.table_rows(bucket, schema, table, with_row_id=False)      # committed rows (pyarrow.Table)
    srv.snapshot_counts()                    # {"bucket/schema/table": committed row count}
    srv.open_txids                           # transactions begun but not yet committed/rolled back
    srv.stop()

``RequestRecord(method, path, command, body_bytes, txid, status)``: ``command`` is the first
query key (``transaction``, ``schema``, ``table``, ``column``, ``stats``, ``sorted-columns``,
``rows``, ``data``) or ``bucket`` for ``HEAD /bucket``; ``txid`` is the ``tabular-txid`` header
(the new id for a begin), None when absent or 0.

It reports ``vast 5.4.0.0``, so the SDK lists sorted columns with a separate request (answered
400, as for any non-Elysium table; the SDK swallows it but logs an "RPC failed" warning) and needs
no per-column metadata. Table stats report one VIP (the server's host), so each Session probes it
once with a begin/rollback pair. Injected failures and delays apply before authentication.

Enforced like VAST (status, S3 error code). The codes TabularMismatchColumnType,
TabularUnsupportedColumnType, TabularInvalidColumnTypeParam and SlowDown are the ones VAST's own SDK
tests expect; the others are plausible names, not verified against a cluster:
- SigV4: unknown access key 403 InvalidAccessKeyId, bad signature 403 SignatureDoesNotMatch,
  no/garbled Authorization 403 AccessDenied, body hash mismatch 400 XAmzContentSHA256Mismatch.
- Request body over 5 MiB: 400 MaxMessageLengthExceeded (S3's code for oversized requests).
- Missing bucket 404 NoSuchBucket; schema 404 TabularNoSuchSchema; table 404 TabularNoSuchTable;
  column 404 TabularNoSuchColumn; unknown txid 404 TabularNoSuchTransaction.
- Already exists 409 TabularSchemaAlreadyExists / TabularTableAlreadyExists / TabularColumnAlreadyExists;
  dropping a schema with tables or sub-schemas 409 TabularSchemaNotEmpty.
- Column types at create/add_column: null, dictionary, union types and fixed-size lists whose child is
  nullable or not a number/decimal/date/time/timestamp 400 TabularUnsupportedColumnType (the SDK turns
  this code into NotSupportedSchema); a zero-length fixed-size list 400 TabularInvalidColumnTypeParam.
- Insert/update columns must match the table exactly (type, nested nullability, top-level nullability):
  400 TabularMismatchColumnType; unknown column 400 TabularMismatchColumnName. No uniqueness.
- Predicates must be an AND of OR-groups, each OR-group on one column: 400 TabularUnsupportedPredicate.
- Transactions: snapshot isolation, own writes visible, rollback discards. Commit replays the
  transaction's redo log onto the current committed state, so concurrent inserts both land.
  Updating/deleting a row that a transaction committed meanwhile also changed, or a replay that no
  longer applies (table dropped, column gone), fails the commit with 409 TabularTransactionConflict
  and discards the transaction. Requests with txid 0 run in their own auto-committed transaction.
- Row ids come from a per-table monotonic counter; rows are kept sorted by row id.

Select: decodes the computeir Relation, evaluates with pyarrow.compute (== != < <= > >=, isin, isnull,
~isnull, between, startswith, contains, on flat columns and struct sub-fields), projects columns and
``$row_id``, and pages per sub-split (``tabular-limit-rows`` rows per page, the last page's
next_row_id is (1<<48)-1). Rows are dealt to splits/sub-splits in blocks of
``rows_per_row_group * num_row_groups_per_sub_split`` row ids, like VAST's row groups.

Known gaps: no rename (schema/table/column), projections, imports, snapshots, Elysium/partitioned/
vector-indexed tables, external row ids or blob expansion (501 NotImplemented); predicates on
vector (fixed-size list) values other than isnull are refused (400); select cannot return
maps or lists of structs; updates of row ids that do not exist are ignored.
"""

from __future__ import annotations

import decimal
import hashlib
import hmac
import itertools
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import reduce
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote
from xml.sax.saxutils import escape

import flatbuffers
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import vastdb.vast_flatbuf.tabular.CreateSchemaRequest as fb_create_schema
import vastdb.vast_flatbuf.tabular.GetTableStatsResponse as fb_stats
import vastdb.vast_flatbuf.tabular.ListSchemasResponse as fb_list_schemas
import vastdb.vast_flatbuf.tabular.ListTablesResponse as fb_list_tables
import vastdb.vast_flatbuf.tabular.ObjectDetails as fb_object
import vastdb.vast_flatbuf.tabular.VipRange as fb_vip_range
from vastdb.vast_flatbuf.org.apache.arrow.computeir.flatbuf.Deref import Deref
from vastdb.vast_flatbuf.org.apache.arrow.computeir.flatbuf.ExpressionImpl import ExpressionImpl
from vastdb.vast_flatbuf.org.apache.arrow.computeir.flatbuf.LiteralImpl import LiteralImpl
from vastdb.vast_flatbuf.org.apache.arrow.computeir.flatbuf.RelationImpl import RelationImpl
from vastdb.vast_flatbuf.org.apache.arrow.flatbuf.Type import Type

if TYPE_CHECKING:
    import vastdb

VAST_VERSION = "5.4.0.0"
MAX_REQUEST_BODY = 5 * 1024 * 1024
ROW_ID = "$row_id"
INVALID_ROW_ID = (1 << 48) - 1
_COMPLETED_STREAM_ID = 0xFFFFFFFE
_IPC_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"
_TABLE_COMMANDS = {"table", "column", "stats", "sorted-columns", "rows", "data"}


@dataclass(frozen=True)
class RequestRecord:
    """One served request, as the backend tests assert on it."""

    method: str
    path: str
    command: str
    body_bytes: int
    txid: int | None
    status: int


class _Fail(Exception):
    """An HTTP error answer with an S3-style XML body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def _bad(code: str, message: str) -> _Fail:
    return _Fail(400, code, message)


# ---------------------------------------------------------------- catalog state (immutable values)


@dataclass(frozen=True)
class _Table:
    """A table version. ``segments`` hold ``$row_id`` first, ascending within and across segments;
    a segment may lack columns (partial inserts, later add_column): they read as nulls."""

    handle: int
    schema: pa.Schema
    segments: tuple[pa.Table, ...] = ()

    @property
    def num_rows(self) -> int:
        return sum(s.num_rows for s in self.segments)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.segments)

    def aligned(self, seg: pa.Table, names: Iterable[str]) -> pa.Table:
        """``seg`` with exactly ``names`` (``$row_id`` allowed), missing columns as nulls."""
        fields, cols = [], []
        for name in names:
            f = _ROW_ID_FIELD if name == ROW_ID else self.schema.field(name)
            fields.append(f)
            cols.append(seg.column(name) if name in seg.column_names else pa.nulls(seg.num_rows, f.type))
        return pa.Table.from_arrays(cols, schema=pa.schema(fields))


_ROW_ID_FIELD = pa.field(ROW_ID, pa.uint64())


@dataclass(frozen=True)
class _Schema:
    props: str = ""
    tables: Mapping[str, _Table] = field(default_factory=dict)


# (bucket, schema path) -> schema; never mutated in place, every change builds a new dict.
_Catalog = dict[tuple[str, str], _Schema]


def _rids(seg: pa.Table) -> np.ndarray:
    return seg.column(0).chunk(0).to_numpy()


def _set_schema(cat: _Catalog, key: tuple[str, str], sch: _Schema | None) -> _Catalog:
    new = dict(cat)
    if sch is None:
        del new[key]
    else:
        new[key] = sch
    return new


def _get_schema(cat: _Catalog, bucket: str, path: str) -> _Schema:
    try:
        return cat[(bucket, path)]
    except KeyError:
        raise _Fail(404, "TabularNoSuchSchema", f"schema {bucket}/{path} does not exist") from None


def _get_table(cat: _Catalog, bucket: str, schema: str, name: str, handle: int | None = None) -> _Table:
    t = _get_schema(cat, bucket, schema).tables.get(name)
    if t is None:
        raise _Fail(404, "TabularNoSuchTable", f"table {bucket}/{schema}/{name} does not exist")
    if handle is not None and t.handle != handle:
        raise _Fail(409, "TabularTransactionConflict", f"table {bucket}/{schema}/{name} was replaced")
    return t


def _set_table(cat: _Catalog, bucket: str, schema: str, name: str, table: _Table | None) -> _Catalog:
    sch = _get_schema(cat, bucket, schema)
    tables = dict(sch.tables)
    if table is None:
        tables.pop(name)
    else:
        tables[name] = table
    return _set_schema(cat, (bucket, schema), replace(sch, tables=tables))


def _children(cat: _Catalog, bucket: str, parent: str) -> list[str]:
    prefix = f"{parent}/" if parent else ""
    return sorted(p[len(prefix):] for b, p in cat
                  if b == bucket and p.startswith(prefix) and p and "/" not in p[len(prefix):])


# ---------------------------------------------------------------- type rules


_VECTOR_ELEMENT = (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal, pa.types.is_date32,
                   pa.types.is_timestamp, pa.types.is_time)


def _check_column_type(name: str, t: pa.DataType) -> None:
    if pa.types.is_null(t) or pa.types.is_dictionary(t) or pa.types.is_union(t):
        raise _bad("TabularUnsupportedColumnType", f"column {name!r}: type {t} is not supported")
    if pa.types.is_fixed_size_list(t):
        if t.list_size == 0:
            raise _bad("TabularInvalidColumnTypeParam", f"column {name!r}: fixed-size list of 0 elements")
        child = t.value_field
        if child.nullable or not any(ok(child.type) for ok in _VECTOR_ELEMENT):
            raise _bad("TabularUnsupportedColumnType",
                       f"column {name!r}: fixed-size list child must be a non-nullable number/date/time, not {child}")
    for i in range(t.num_fields):
        _check_column_type(name, t.field(i).type)


def _check_new_columns(schema: pa.Schema) -> None:
    if len(set(schema.names)) != len(schema.names):
        raise _bad("TabularInvalidArgument", f"duplicate column names in {schema.names}")
    for f in schema:
        if not f.name or f.name.startswith("$"):
            raise _bad("TabularInvalidArgument", f"invalid column name {f.name!r}")
        _check_column_type(f.name, f.type)


def _check_written_columns(table: _Table, schema: pa.Schema, *, row_id_first: bool) -> None:
    """Inserted/updated columns must exist and match the table's fields exactly."""
    names = schema.names
    if row_id_first:
        if not names or names[0] != ROW_ID or not schema.field(0).type.equals(pa.uint64()):
            raise _bad("TabularMissingRowIdColumn", "the first column must be $row_id (uint64)")
        names = names[1:]
    if len(set(names)) != len(names):
        raise _bad("TabularInvalidArgument", f"duplicate columns {names}")
    for name in names:
        if name not in table.schema.names:
            raise _bad("TabularMismatchColumnName", f"column {name!r} is not in the table")
        want, got = table.schema.field(name), schema.field(name)
        if not (got.type.equals(want.type) and got.nullable == want.nullable):
            raise _bad("TabularMismatchColumnType", f"column {name!r}: got {got}, table has {want}")


# ---------------------------------------------------------------- row storage (pure functions)


_SEALED_ROWS = 1 << 17  # segments this big are no longer merged: bounded copying, few segments


def _insert_segment(segments: tuple[pa.Table, ...], new: pa.Table) -> tuple[pa.Table, ...]:
    """Add rows keeping row-id order; merge small tail segments so reads see few segments."""
    segs = list(segments)
    lo = int(_rids(new)[0])
    later: list[pa.Table] = []  # rows with higher ids, committed meanwhile by a concurrent transaction
    while segs and int(_rids(segs[-1])[-1]) > lo:
        seg = segs.pop()
        cut = int(np.searchsorted(_rids(seg), lo))
        later.insert(0, seg.slice(cut))
        if cut:
            segs.append(seg.slice(0, cut))
            break
    segs.append(_concat([*later, new]).sort_by(ROW_ID).combine_chunks() if later else new)
    while len(segs) > 1 and segs[-2].num_rows <= 2 * segs[-1].num_rows and segs[-2].num_rows < _SEALED_ROWS:
        segs[-2:] = [_concat(segs[-2:])]
    return tuple(segs)


def _concat(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables, promote_options="default").combine_chunks()


def _overlapping(seg: pa.Table, lo: int, hi: int) -> bool:
    r = _rids(seg)
    return not (int(r[-1]) < lo or int(r[0]) > hi)


def _update_segments(table: _Table, upd: pa.Table) -> tuple[pa.Table, ...]:
    rid_set = upd.column(0).combine_chunks()
    lo, hi = pc.min(rid_set).as_py(), pc.max(rid_set).as_py()
    out = []
    for seg in table.segments:
        if not _overlapping(seg, lo, hi):
            out.append(seg)
            continue
        idx = pc.index_in(seg.column(0), value_set=rid_set)
        if idx.null_count == len(idx):
            out.append(seg)
            continue
        n = seg.num_rows
        # take() over concat([current values, update values]) picks the new value where a row matched
        take = pc.if_else(pc.is_valid(idx), pc.add(idx.cast(pa.int64()), n), pa.array(np.arange(n)))
        for name in upd.column_names[1:]:
            f = table.schema.field(name)
            old = seg.column(name).chunks if name in seg.column_names else [pa.nulls(n, f.type)]
            col = pa.chunked_array([*old, *upd.column(name).chunks], f.type).take(take)
            if name in seg.column_names:
                seg = seg.set_column(seg.column_names.index(name), f, col)
            else:
                seg = seg.append_column(f, col)
        out.append(seg.combine_chunks())
    return tuple(out)


def _delete_segments(segments: tuple[pa.Table, ...], rids: pa.Array) -> tuple[pa.Table, ...]:
    lo, hi = pc.min(rids).as_py(), pc.max(rids).as_py()
    out = []
    for seg in segments:
        if _overlapping(seg, lo, hi):
            hit = pc.is_in(seg.column(0), value_set=rids)
            if pc.any(hit).as_py():
                seg = seg.filter(pc.invert(hit)).combine_chunks()
        if seg.num_rows:
            out.append(seg)
    return tuple(out)


# ---------------------------------------------------------------- transactions


@dataclass(frozen=True)
class _Op:
    """One redo-log entry: ``apply`` maps a catalog to the next one; ``rids`` are the rows it
    updated or deleted in table ``handle`` (for write-write conflict detection)."""

    apply: Callable[[_Catalog], _Catalog]
    handle: int | None = None
    rids: np.ndarray | None = None


@dataclass
class _Tx:
    txid: int
    begin_seq: int
    view: _Catalog
    log: list[_Op] = field(default_factory=list)


# ---------------------------------------------------------------- flatbuffer answers


def _object_details(b: flatbuffers.Builder, name: str, props: str, handle: int, table: _Table | None) -> int:
    n, p, h = b.CreateString(name), b.CreateString(props), b.CreateString(str(handle))
    fb_object.Start(b)
    fb_object.AddName(b, n)
    fb_object.AddProperties(b, p)
    fb_object.AddHandle(b, h)
    if table is not None:
        fb_object.AddNumRows(b, table.num_rows)
        fb_object.AddSizeInBytes(b, table.nbytes)
    return fb_object.End(b)


def _vector(b: flatbuffers.Builder, start: Callable[[Any, int], Any], offsets: list[int]) -> int:
    start(b, len(offsets))
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _list_schemas_fb(bucket: str, entries: list[tuple[str, _Schema]]) -> bytes:
    b = flatbuffers.Builder(256)
    objs = [_object_details(b, name, sch.props, 0, None) for name, sch in entries]
    vec = _vector(b, fb_list_schemas.StartSchemasVector, objs)
    bn = b.CreateString(bucket)
    fb_list_schemas.Start(b)
    fb_list_schemas.AddBucketName(b, bn)
    fb_list_schemas.AddSchemas(b, vec)
    b.Finish(fb_list_schemas.End(b))
    return bytes(b.Output())


def _list_tables_fb(bucket: str, schema: str, entries: list[tuple[str, _Table]]) -> bytes:
    b = flatbuffers.Builder(256)
    objs = [_object_details(b, name, "", t.handle, t) for name, t in entries]
    vec = _vector(b, fb_list_tables.StartTablesVector, objs)
    bn, sn = b.CreateString(bucket), b.CreateString(schema)
    fb_list_tables.Start(b)
    fb_list_tables.AddBucketName(b, bn)
    fb_list_tables.AddSchemaName(b, sn)
    fb_list_tables.AddTables(b, vec)
    b.Finish(fb_list_tables.End(b))
    return bytes(b.Output())


def _stats_fb(table: _Table, vip: str) -> bytes:
    b = flatbuffers.Builder(128)
    addr = b.CreateString(vip)
    fb_vip_range.Start(b)
    fb_vip_range.AddStartAddress(b, addr)
    fb_vip_range.AddAddressCount(b, 1)
    vips = _vector(b, fb_stats.StartVipsVector, [fb_vip_range.End(b)])
    fb_stats.Start(b)
    fb_stats.AddNumRows(b, table.num_rows)
    fb_stats.AddSizeInBytes(b, table.nbytes)
    fb_stats.AddVips(b, vips)
    b.Finish(fb_stats.End(b))
    return bytes(b.Output())


def _ipc_schema(schema: pa.Schema) -> bytes:
    return schema.serialize().to_pybytes() + _IPC_EOS


def _ipc_table(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _read_ipc(body: bytes) -> pa.Table:
    try:
        return pa.ipc.open_stream(body).read_all()
    except (pa.ArrowInvalid, OSError) as e:
        raise _bad("TabularInvalidArgument", f"body is not an Arrow IPC stream: {e}") from None


def _read_schema(body: bytes) -> pa.Schema:
    try:
        return pa.ipc.read_schema(pa.py_buffer(body))
    except (pa.ArrowInvalid, OSError) as e:
        raise _bad("TabularInvalidArgument", f"body is not an Arrow schema: {e}") from None


# ---------------------------------------------------------------- select: request decoding

_U8, _U16, _U32, _I32 = (struct.Struct(f) for f in ("<B", "<H", "<I", "<i"))


class _Fb:
    """A flatbuffer table, read directly: the generated Python classes cost ~0.3 ms per predicate
    term, far too slow for isin() with thousands of keys."""

    __slots__ = ("buf", "pos", "vt", "vlen")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos
        self.vt = pos - _I32.unpack_from(buf, pos)[0]
        self.vlen = _U16.unpack_from(buf, self.vt)[0]

    @classmethod
    def root(cls, buf: bytes) -> _Fb:
        return cls(buf, _U32.unpack_from(buf, 0)[0])

    def _at(self, slot: int) -> int:
        o = 4 + 2 * slot
        rel = _U16.unpack_from(self.buf, self.vt + o)[0] if o < self.vlen else 0
        return self.pos + rel if rel else 0

    def scalar(self, slot: int, fmt: struct.Struct = _U8) -> Any:
        p = self._at(slot)
        return fmt.unpack_from(self.buf, p)[0] if p else 0  # absent means the default, 0

    def table(self, slot: int) -> _Fb | None:
        p = self._at(slot)
        return _Fb(self.buf, p + _U32.unpack_from(self.buf, p)[0]) if p else None

    def bytes(self, slot: int) -> bytes:
        """A string or [ubyte] field."""
        p = self._at(slot)
        if not p:
            return b""
        p += _U32.unpack_from(self.buf, p)[0]
        return self.buf[p + 4:p + 4 + _U32.unpack_from(self.buf, p)[0]]

    def tables(self, slot: int) -> list[_Fb]:
        p = self._at(slot)
        if not p:
            return []
        p += _U32.unpack_from(self.buf, p)[0]
        n = _U32.unpack_from(self.buf, p)[0]
        return [_Fb(self.buf, q + _U32.unpack_from(self.buf, q)[0]) for q in range(p + 4, p + 4 + 4 * n, 4)]


# Slots of the computeir / Arrow schema tables used below.
_REL_IMPL_TYPE, _REL_IMPL = 0, 1                      # Relation, Expression and Literal unions
_SRC_FILTER, _SRC_SCHEMA, _SRC_PROJECTION = 2, 3, 4   # Source
_SCHEMA_FIELDS = 1                                    # Schema
_FIELD_NAME, _FIELD_TYPE_TYPE, _FIELD_CHILDREN = 0, 2, 5
_CALL_NAME, _CALL_ARGS = 0, 1


@dataclass(frozen=True)
class _Node:
    name: str
    parent: int | None
    type_type: int


def _request_nodes(schema: _Fb) -> list[_Node]:
    """DFS enumeration of the request schema, the numbering the SDK uses for column positions."""
    nodes: list[_Node] = []

    def walk(f: _Fb, parent: int | None) -> None:
        idx = len(nodes)
        nodes.append(_Node(f.bytes(_FIELD_NAME).decode(), parent, f.scalar(_FIELD_TYPE_TYPE)))
        for child in f.tables(_FIELD_CHILDREN):
            walk(child, idx)

    for f in schema.tables(_SCHEMA_FIELDS):
        walk(f, None)
    return nodes


def _top(nodes: list[_Node], pos: int) -> str:
    while nodes[pos].parent is not None:
        pos = nodes[pos].parent
    return nodes[pos].name


def _call(expr: _Fb) -> _Fb:
    if expr.scalar(_REL_IMPL_TYPE) != ExpressionImpl.Call:
        raise _bad("TabularUnsupportedPredicate", "expected a function call")
    return expr.table(_REL_IMPL)


def _position(expr: _Fb) -> int:
    if expr.scalar(_REL_IMPL_TYPE) != ExpressionImpl.FieldRef:
        raise _bad("TabularUnsupportedPredicate", "expected a column reference")
    ref = expr.table(_REL_IMPL)
    if ref.scalar(0) != Deref.FieldIndex:
        raise _bad("TabularUnsupportedPredicate", "only field-index references are supported")
    return ref.table(1).scalar(0, _U32)


_SCALAR_LITERALS = {
    LiteralImpl.BooleanLiteral: struct.Struct("<?"),
    LiteralImpl.Int8Literal: struct.Struct("<b"),
    LiteralImpl.Int16Literal: struct.Struct("<h"),
    LiteralImpl.Int32Literal: struct.Struct("<i"),
    LiteralImpl.Int64Literal: struct.Struct("<q"),
    LiteralImpl.UInt8Literal: struct.Struct("<B"),
    LiteralImpl.UInt16Literal: struct.Struct("<H"),
    LiteralImpl.UInt32Literal: struct.Struct("<I"),
    LiteralImpl.UInt64Literal: struct.Struct("<Q"),
    LiteralImpl.Float32Literal: struct.Struct("<f"),
    LiteralImpl.Float64Literal: struct.Struct("<d"),
    LiteralImpl.DateLiteral: struct.Struct("<q"),
    LiteralImpl.TimeLiteral: struct.Struct("<q"),
    LiteralImpl.TimestampLiteral: struct.Struct("<q"),
}
_BYTES_LITERALS = {LiteralImpl.StringLiteral, LiteralImpl.BinaryLiteral, LiteralImpl.DecimalLiteral}


def _literal(expr: _Fb) -> Any:
    """The raw literal: bool/int/float/bytes (temporal values as their integer storage)."""
    if expr.scalar(_REL_IMPL_TYPE) != ExpressionImpl.Literal:
        raise _bad("TabularUnsupportedPredicate", "expected a literal")
    lit = expr.table(_REL_IMPL)
    kind = lit.scalar(_REL_IMPL_TYPE)
    if kind in _SCALAR_LITERALS:
        value = lit.table(_REL_IMPL).scalar(0, _SCALAR_LITERALS[kind])
        return bool(value) if kind == LiteralImpl.BooleanLiteral else value  # absent default is int 0
    if kind in _BYTES_LITERALS:
        return lit.table(_REL_IMPL).bytes(0)
    raise _bad("TabularUnsupportedPredicate", f"literal kind {kind} is not supported by the loopback server")


def _storage(t: pa.DataType) -> pa.DataType:
    return pa.int32() if t.bit_width == 32 else pa.int64()


def _scalar(t: pa.DataType, raw: Any) -> pa.Scalar:
    """A literal as a scalar comparable with the column view ``_view`` gives for type ``t``."""
    try:
        if pa.types.is_string(t) or pa.types.is_binary(t):
            return pa.scalar(raw, pa.binary())
        if pa.types.is_decimal(t):
            return pa.scalar(decimal.Decimal(int.from_bytes(raw, "little", signed=True)).scaleb(-t.scale), t)
        if pa.types.is_temporal(t):
            return pa.scalar(raw, _storage(t)).cast(t)
        return pa.scalar(raw, t)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
        raise _bad("TabularUnsupportedPredicate", f"literal {raw!r} does not fit {t}: {e}") from None


def _view(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return col.cast(pa.binary()) if pa.types.is_string(col.type) else col


_COMPARISONS = {"equal": pc.equal, "not_equal": pc.not_equal, "greater": pc.greater,
                "greater_equal": pc.greater_equal, "less": pc.less, "less_equal": pc.less_equal}
_Mask = Callable[[pa.Table], Any]


class _PredicateCompiler:
    """Turns the SDK's CNF filter into a mask function over an aligned page table."""

    def __init__(self, nodes: list[_Node], schema: pa.Schema) -> None:
        self.nodes, self.schema = nodes, schema.append(_ROW_ID_FIELD)
        self.columns: set[str] = set()

    def compile(self, expr: _Fb) -> _Mask | None:
        top = _call(expr)
        if top.bytes(_CALL_NAME) != b"and":
            raise _bad("TabularUnsupportedPredicate", "the filter must be an AND of OR-groups")
        groups = [self._group(_call(arg)) for arg in top.tables(_CALL_ARGS)]
        if not groups:
            return None
        return lambda tbl: reduce(pc.and_kleene, (g(tbl) for g in groups))

    def _group(self, call: _Fb) -> _Mask:
        calls = [_call(a) for a in call.tables(_CALL_ARGS)]
        if call.bytes(_CALL_NAME) != b"or" or not calls:
            raise _bad("TabularUnsupportedPredicate", "each AND argument must be a non-empty OR-group")
        terms = [(c.bytes(_CALL_NAME), c.tables(_CALL_ARGS)) for c in calls]
        positions = {p for name, args in terms for p in self._positions(name, args)}
        if len(positions) != 1:
            raise _bad("TabularUnsupportedPredicate", "an OR-group may reference a single column only")
        path, t = self._resolve(positions.pop())
        equal = [_literal(args[1]) for name, args in terms if name == b"equal"]
        others = [self._term(name, args, t) for name, args in terms if name != b"equal"]
        if equal:
            if pa.types.is_decimal(t) or pa.types.is_temporal(t):
                values = pa.array([_scalar(t, v) for v in equal], t)
            else:
                values = pa.array(equal, pa.binary() if pa.types.is_string(t) else t)
            others.append(lambda col: pc.is_in(_view(col), value_set=values))

        def mask(tbl: pa.Table) -> Any:
            col = tbl.column(path[0])
            for idx in path[1:]:
                col = pc.struct_field(col, [idx])
            return reduce(pc.or_kleene, (f(col) for f in others))
        return mask

    def _positions(self, name: bytes, args: list[_Fb]) -> list[int]:
        if name == b"and":  # between / startswith: a range on one column
            calls = [_call(a) for a in args]
            return [p for c in calls for p in self._positions(c.bytes(_CALL_NAME), c.tables(_CALL_ARGS))]
        if not args:
            raise _bad("TabularUnsupportedPredicate", f"{name.decode()}() without arguments")
        return [_position(args[0])]

    def _resolve(self, pos: int) -> tuple[list[Any], pa.DataType]:
        """Column path (top name, then struct child indices) and type for a request position."""
        node = self.nodes[pos]
        if node.parent is not None and self.nodes[node.parent].type_type in (Type.List, Type.FixedSizeList):
            pos, node = node.parent, self.nodes[node.parent]  # the SDK points list predicates at the child
        chain = [node.name]
        while node.parent is not None:
            node = self.nodes[node.parent]
            if node.type_type != Type.Struct_:
                raise _bad("TabularUnsupportedPredicate", "predicates on nested list members are not supported")
            chain.append(node.name)
        chain.reverse()
        if chain[0] not in self.schema.names:
            raise _bad("TabularMismatchColumnName", f"column {chain[0]!r} is not in the table")
        self.columns.add(chain[0])
        path: list[Any] = [chain[0]]
        t = self.schema.field(chain[0]).type
        for name in chain[1:]:
            idx = t.get_field_index(name)
            path.append(idx)
            t = t.field(idx).type
        return path, t

    def _term(self, fname: bytes, args: list[_Fb], t: pa.DataType) -> Callable[[pa.ChunkedArray], Any]:
        name = fname.decode()
        if name == "and":
            calls = [_call(a) for a in args]
            parts = [self._term(c.bytes(_CALL_NAME), c.tables(_CALL_ARGS), t) for c in calls]
            return lambda col: reduce(pc.and_kleene, (p(col) for p in parts))
        if name == "is_null":
            return pc.is_null
        if name == "is_valid":
            return pc.is_valid
        if pa.types.is_fixed_size_list(t) or pa.types.is_list(t):
            raise _bad("TabularUnsupportedPredicate", "the loopback server only supports isnull on list columns")
        if name == "match_substring":
            pattern = _literal(args[1]).decode()
            return lambda col: pc.match_substring(col, pattern)
        if name in _COMPARISONS:
            fn, value = _COMPARISONS[name], _scalar(t, _literal(args[1]))
            return lambda col: fn(_view(col), value)
        raise _bad("TabularUnsupportedPredicate", f"function {name!r} is not supported")


def _leaves(arr: pa.Array) -> list[pa.Array]:
    """A column as VAST sends it: one array per leaf, structs split into single-field structs."""
    t = arr.type
    if pa.types.is_struct(t):
        mask = pc.is_null(arr) if arr.null_count else None
        out = []
        for f, child in zip(t, arr.flatten(), strict=True):
            out.extend(pa.StructArray.from_arrays([leaf], fields=[f.with_type(leaf.type)], mask=mask)
                       for leaf in _leaves(child))
        return out
    if _has_struct(t):
        raise _bad("TabularUnsupportedColumnType", f"the loopback server cannot return {t}")
    return [arr]


def _has_struct(t: pa.DataType) -> bool:
    return pa.types.is_struct(t) or any(_has_struct(t.field(i).type) for i in range(t.num_fields))


def _stream(stream_id: int, next_row_id: int, page: pa.Table) -> bytes:
    """One sub-split's answer: schema, one batch, end-of-stream, each framed with its id and cursor."""
    head = struct.pack("<IQ", stream_id, next_row_id)
    arrays = [leaf for col in page.columns for leaf in _leaves(col.combine_chunks())]
    schema = pa.schema([pa.field(f"c{i}", a.type) for i, a in enumerate(arrays)])
    parts = [head + schema.serialize().to_pybytes()]
    if page.num_rows:
        batch = (pa.record_batch(arrays, schema=schema) if arrays
                 else page.select([]).combine_chunks().to_batches()[0])
        parts.append(head + batch.serialize().to_pybytes())
    parts.append(head + _IPC_EOS)
    return b"".join(parts)


# ---------------------------------------------------------------- HTTP plumbing


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def version_string(self) -> str:
        return f"vast {VAST_VERSION}"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: requests are in LoopbackVast.requests."""

    def _serve(self) -> None:
        self.server.vast._serve(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    vast: LoopbackVast

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # headers and body are separate writes
        with self.vast._lock:
            self.vast._conns.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self.vast._lock:
            self.vast._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that timed out hang up mid-answer; that is expected, not worth a traceback."""


_AUTH_RE = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]*)/([^/]+)/aws4_request,\s*"
                      r"SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})")


@dataclass
class _Rule:
    count: int
    method: str | None
    command: str | None
    skip: int = field(default=0, kw_only=True)  # let this many matching requests through first

    def take(self, method: str, command: str) -> bool:
        if self.count <= 0 or self.method not in (None, method) or self.command not in (None, command):
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        self.count -= 1
        return True


@dataclass
class _FailRule(_Rule):
    status: int = 503
    code: str = "SlowDown"
    message: str = "injected failure"


@dataclass
class _DelayRule(_Rule):
    seconds: float = 0.0


class LoopbackVast:
    """The server. All state is in memory; buckets are fixed at construction, like a VAST admin would."""

    def __init__(self, buckets: Iterable[str] = ("exr-data",), access_key: str = "AK", secret_key: str = "SK",
                 *, host: str = "127.0.0.1", port: int = 0, verify_signature: bool = True,
                 rows_per_row_group: int = 1 << 16) -> None:
        self.access_key, self.secret_key = access_key, secret_key
        self.verify_signature = verify_signature
        self.rows_per_row_group = rows_per_row_group
        self._host, self._port = host, port
        self._buckets = frozenset(buckets)
        self._lock = threading.RLock()
        self._committed: _Catalog = {}
        self._seq = 0  # bumped by every commit that changed something
        self._txs: dict[int, _Tx] = {}
        self._txids = itertools.count(0x1000)
        self._handles = itertools.count(1)
        self._next_rid: dict[int, int] = {}
        self._row_writes: list[tuple[int, int, np.ndarray]] = []  # (commit seq, handle, rows changed)
        self._records: list[RequestRecord] = []
        self._fail_rules: list[_FailRule] = []
        self._delay_rules: list[_DelayRule] = []
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> LoopbackVast:
        """Bind and serve in a daemon thread."""
        self._httpd = _HTTPServer((self._host, self._port), _Handler)
        self._httpd.vast = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="loopback-vast", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and hang up on kept-alive connections (and on delayed answers)."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd = None

    def __enter__(self) -> LoopbackVast:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """``http://host:port`` of the running server."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def connect(self, **kwargs: Any) -> vastdb.Session:
        """A real SDK Session on this server; ``kwargs`` go to ``vastdb.connect`` (timeout, backoff_config...)."""
        import vastdb

        kwargs.setdefault("access", self.access_key)
        kwargs.setdefault("secret", self.secret_key)
        return vastdb.connect(endpoint=self.endpoint, **kwargs)

    # ------------------------------------------------------------ test controls

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear_requests(self) -> None:
        with self._lock:
            self._records.clear()

    def fail_next(self, status: int = 503, code: str = "SlowDown", count: int = 1, method: str | None = None,
                  command: str | None = None, message: str | None = None, skip: int = 0) -> None:
        """Answer the next ``count`` matching requests (after ``skip`` of them) with ``status``/``code``."""
        with self._lock:
            self._fail_rules.append(_FailRule(count, method, command, status, code, message or "injected failure",
                                              skip=skip))

    def clear_faults(self) -> None:
        """Drop every pending ``fail_next`` and ``delay_next`` rule."""
        with self._lock:
            self._fail_rules.clear()
            self._delay_rules.clear()

    def delay_next(self, seconds: float, count: int = 1, command: str | None = None,
                   method: str | None = None) -> None:
        """Sleep ``seconds`` before serving the next ``count`` matching requests (they still take effect)."""
        with self._lock:
            self._delay_rules.append(_DelayRule(count, method, command, seconds))

    def table_rows(self, bucket: str, schema: str, table: str, with_row_id: bool = False) -> pa.Table:
        """Committed rows in row-id order, with the table's exact schema."""
        with self._lock:
            t = _get_table(self._committed, bucket, schema, table)
        names = ([ROW_ID] if with_row_id else []) + t.schema.names
        parts = [t.aligned(seg, names) for seg in t.segments]
        return pa.concat_tables(parts) if parts else t.aligned(pa.table({ROW_ID: pa.array([], pa.uint64())}), names)

    def snapshot_counts(self) -> dict[str, int]:
        """Committed row count of every table, keyed ``bucket/schema/table``."""
        with self._lock:
            cat = self._committed
        return {f"{b}/{s}/{name}": t.num_rows for (b, s), sch in sorted(cat.items())
                for name, t in sorted(sch.tables.items())}

    @property
    def open_txids(self) -> list[int]:
        with self._lock:
            return sorted(self._txs)

    # ------------------------------------------------------------ request handling

    def _serve(self, h: _Handler) -> None:
        method = h.command
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        raw_path, _, query = h.path.partition("?")
        params = parse_qsl(query, keep_blank_values=True)
        command = params[0][0] if params else ("bucket" if method == "HEAD" else "")
        txid, headers = 0, {}
        try:
            txid = int(h.headers.get("tabular-txid") or 0)
            self._injected(method, command)
            self._authenticate(h, method, raw_path, query, body)
            if len(body) > MAX_REQUEST_BODY:
                raise _bad("MaxMessageLengthExceeded", f"request body of {len(body)} bytes exceeds {MAX_REQUEST_BODY}")
            status, payload, headers = 200, *self._dispatch(method, raw_path, dict(params), command, h, body, txid)
        except _Fail as f:
            status = f.status
            payload = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(f.code)}</Code>'
                       f"<Message>{escape(f.message)}</Message><Resource>{escape(raw_path)}</Resource></Error>"
                       ).encode()
        except Exception as e:  # a server bug: surface it to the SDK as VAST would (500)
            status = 500
            payload = (f"<Error><Code>InternalError</Code><Message>{escape(repr(e))}</Message></Error>").encode()
        record_txid = int(headers.get("tabular-txid", txid))
        with self._lock:
            self._records.append(RequestRecord(method, unquote(raw_path), command, len(body), record_txid or None,
                                               status))
        try:
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            if status != 200:
                h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", "0" if method == "HEAD" else str(len(payload)))
            h.end_headers()
            if method != "HEAD":
                h.wfile.write(payload)
        except OSError:
            h.close_connection = True

    def _injected(self, method: str, command: str) -> None:
        with self._lock:
            delay = next((r for r in self._delay_rules if r.take(method, command)), None)
            fail = next((r for r in self._fail_rules if r.take(method, command)), None)
        if delay is not None:
            self._stopping.wait(delay.seconds)
        if fail is not None:
            raise _Fail(fail.status, fail.code, fail.message)

    def _authenticate(self, h: _Handler, method: str, raw_path: str, query: str, body: bytes) -> None:
        m = _AUTH_RE.fullmatch((h.headers.get("Authorization") or "").strip())
        if m is None:
            raise _Fail(403, "AccessDenied", "missing or malformed SigV4 Authorization header")
        access, date, region, service, signed, signature = m.groups()
        if access != self.access_key:
            raise _Fail(403, "InvalidAccessKeyId", "the access key does not exist")
        if not self.verify_signature:
            return
        payload_hash = h.headers.get("x-amz-content-sha256", "")
        if payload_hash != hashlib.sha256(body).hexdigest():
            raise _bad("XAmzContentSHA256Mismatch", "x-amz-content-sha256 does not match the body")
        # canonical request exactly as aws-requests-auth builds it
        pairs = [p.split("=", 1) for p in sorted(query.split("&"))]
        canonical_query = "&".join(f"{p[0]}={p[1] if len(p) > 1 else ''}" for p in pairs if p[0])
        canonical_headers = "".join(f"{n}:{(h.headers.get(n) or '').strip()}\n" for n in signed.split(";"))
        canonical = "\n".join([method, quote(raw_path or "/", safe="/-_.~"), canonical_query, canonical_headers,
                               signed, payload_hash])
        scope = f"{date}/{region}/{service}/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", h.headers.get("x-amz-date", ""), scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + self.secret_key).encode()
        for part in (date, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise _Fail(403, "SignatureDoesNotMatch", "the request signature does not match")

    def _dispatch(self, method: str, raw_path: str, params: dict[str, str], command: str, h: _Handler,
                  body: bytes, txid: int) -> tuple[bytes, dict[str, str]]:
        parts = [unquote(p) for p in raw_path.strip("/").split("/") if p]
        if not parts:
            if command == "transaction":
                return self._transaction(method, txid, h)
            raise _Fail(501, "NotImplemented", f"{method} / ?{command}")
        bucket, rest = parts[0], parts[1:]
        if bucket not in self._buckets:
            raise _Fail(404, "NoSuchBucket", f"bucket {bucket} does not exist")
        if "sub-table" in params or "name" in params:
            raise _Fail(501, "NotImplemented", "imports tables and projections are not supported")
        if command == "bucket" and not rest:
            return b"", {}
        if command == "schema":
            return self._schema_cmd(method, bucket, "/".join(rest), h, body, txid)
        if command == "table" and method == "GET":
            return self._list_tables(bucket, "/".join(rest), h, txid)
        if command in _TABLE_COMMANDS and rest:
            return self._table_cmd(method, command, bucket, "/".join(rest[:-1]), rest[-1], params, h, body, txid)
        raise _Fail(501, "NotImplemented", f"{method} {raw_path}?{command} is not supported by the loopback server")

    # ------------------------------------------------------------ transactions

    def _transaction(self, method: str, txid: int, h: _Handler) -> tuple[bytes, dict[str, str]]:
        with self._lock:
            if method == "POST":
                new = next(self._txids)
                self._txs[new] = _Tx(new, self._seq, self._committed)
                return b"", {"tabular-txid": str(new), "x-vast-rcf-id": "E1:loopback"}
            if method == "GET" and h.headers.get("tabular-get-vast-version"):
                return b"", {}
            if method not in ("GET", "PUT", "DELETE"):
                raise _Fail(501, "NotImplemented", f"{method} /?transaction")
            if txid not in self._txs:
                raise _Fail(404, "TabularNoSuchTransaction", f"transaction {txid:#x} is not open")
            if method == "PUT":
                self._commit(self._txs.pop(txid))  # a failed commit discards the transaction too
            elif method == "DELETE":
                del self._txs[txid]
                self._prune_row_writes()
            return b"", {}

    def _tx(self, txid: int) -> _Tx:
        """The open transaction, or a fresh one auto-committed by ``_write`` for txid 0 (caller holds lock)."""
        if txid == 0:
            return _Tx(0, self._seq, self._committed)
        try:
            return self._txs[txid]
        except KeyError:
            raise _Fail(404, "TabularNoSuchTransaction", f"transaction {txid:#x} is not open") from None

    def _view(self, txid: int) -> _Catalog:
        with self._lock:
            return self._tx(txid).view

    def _write(self, txid: int, make: Callable[[_Catalog], tuple[_Op, Any]]) -> Any:
        """Validate against the transaction's view, apply there and log the op for commit-time replay."""
        with self._lock:
            tx = self._tx(txid)
            op, result = make(tx.view)
            tx.view = op.apply(tx.view)
            tx.log.append(op)
            if txid == 0:
                self._commit(tx)
            return result

    def _commit(self, tx: _Tx) -> None:
        """Replay the redo log onto the committed state (caller holds the lock). Atomic: all or nothing."""
        if not tx.log:
            self._prune_row_writes()
            return
        if tx.begin_seq == self._seq:
            new = tx.view  # nothing committed since begin: the view is exactly the replay result
        else:
            later = [(h, r) for seq, h, r in self._row_writes if seq > tx.begin_seq]
            for op in tx.log:
                if op.rids is not None and any(h == op.handle and np.intersect1d(r, op.rids).size for h, r in later):
                    raise _Fail(409, "TabularTransactionConflict", "rows changed by a concurrent transaction")
            new = self._committed
            for op in tx.log:
                try:
                    new = op.apply(new)
                except _Fail as f:
                    raise _Fail(409, "TabularTransactionConflict", f"cannot apply after concurrent commit: "
                                f"{f.message}") from None
        self._committed = new
        self._seq += 1
        self._row_writes.extend((self._seq, op.handle, op.rids) for op in tx.log if op.rids is not None)
        self._prune_row_writes()

    def _prune_row_writes(self) -> None:
        oldest = min((t.begin_seq for t in self._txs.values()), default=self._seq)
        self._row_writes = [w for w in self._row_writes if w[0] > oldest]

    # ------------------------------------------------------------ schemas

    def _schema_cmd(self, method: str, bucket: str, path: str, h: _Handler, body: bytes,
                    txid: int) -> tuple[bytes, dict[str, str]]:
        if method == "GET":
            cat = self._view(txid)
            if path:
                _get_schema(cat, bucket, path)
            names = _children(cat, bucket, path)
            page, headers = _page(names, h)
            child = (lambda n: f"{path}/{n}") if path else (lambda n: n)
            return _list_schemas_fb(bucket, [(n, cat[(bucket, child(n))]) for n in page]), headers
        if not path:
            raise _bad("TabularInvalidArgument", "schema name is empty")
        if method == "POST":
            props = fb_create_schema.CreateSchemaRequest.GetRootAs(body, 0).Properties() if body else None
            self._write(txid, lambda cat: (_Op(lambda c: _create_schema(c, bucket, path, (props or b"").decode())),
                                           None))
            return b"", {}
        if method == "DELETE":
            self._write(txid, lambda cat: (_Op(lambda c: _drop_schema(c, bucket, path)), None))
            return b"", {}
        raise _Fail(501, "NotImplemented", "schema rename/alter is not supported by the loopback server")

    def _list_tables(self, bucket: str, schema: str, h: _Handler, txid: int) -> tuple[bytes, dict[str, str]]:
        sch = _get_schema(self._view(txid), bucket, schema)
        page, headers = _page(sorted(sch.tables), h)
        return _list_tables_fb(bucket, schema, [(n, sch.tables[n]) for n in page]), headers

    # ------------------------------------------------------------ tables

    def _table_cmd(self, method: str, command: str, bucket: str, schema: str, name: str, params: dict[str, str],
                   h: _Handler, body: bytes, txid: int) -> tuple[bytes, dict[str, str]]:
        key = (method, command)
        if key == ("POST", "table"):
            cols = _read_schema(body) if body else pa.schema([])
            _check_new_columns(cols)

            def make(cat: _Catalog) -> tuple[_Op, None]:
                handle = next(self._handles)
                self._next_rid[handle] = 0
                return _Op(lambda c: _create_table(c, bucket, schema, name, handle, cols)), None
            self._write(txid, make)
            return b"", {}

        if key == ("DELETE", "table"):
            self._write(txid, lambda cat: (_Op(_drop_table(bucket, schema, name, _get_table(cat, bucket, schema, name)
                                                            .handle)), None))
            return b"", {}

        if key == ("GET", "column"):
            t = _get_table(self._view(txid), bucket, schema, name)
            page, headers = _page(t.schema.names, h)
            return _ipc_schema(pa.schema([t.schema.field(n) for n in page], metadata=t.schema.metadata)), headers

        if key == ("POST", "column"):
            cols = _read_schema(body)
            _check_new_columns(cols)
            self._write(txid, lambda cat: (_Op(_table_op(bucket, schema, name, _get_table(cat, bucket, schema, name)
                                                         .handle, lambda t: _add_columns(t, cols))), None))
            return b"", {}

        if key == ("DELETE", "column"):
            drop = _read_schema(body).names
            self._write(txid, lambda cat: (_Op(_table_op(bucket, schema, name, _get_table(cat, bucket, schema, name)
                                                         .handle, lambda t: _drop_columns(t, drop))), None))
            return b"", {}

        if key == ("GET", "stats"):
            return _stats_fb(_get_table(self._view(txid), bucket, schema, name), self._host), {}

        if key == ("GET", "sorted-columns"):
            _get_table(self._view(txid), bucket, schema, name)
            raise _bad("TabularInvalidArgument", "Listing sorted columns of a table without elysium enabled")

        if key == ("POST", "rows"):
            return self._insert(bucket, schema, name, _read_ipc(body), txid), {}

        if key == ("PUT", "rows"):
            upd = _read_ipc(body).combine_chunks()
            if upd.num_rows:
                self._write(txid, lambda cat: self._make_update(cat, bucket, schema, name, upd))
            return b"", {}

        if key == ("DELETE", "rows"):
            rids = _read_ipc(body)
            if rids.column_names != [ROW_ID] or not rids.schema.field(0).type.equals(pa.uint64()):
                raise _bad("TabularMissingRowIdColumn", "delete takes a single $row_id (uint64) column")
            if rids.num_rows:
                self._write(txid, lambda cat: self._make_delete(cat, bucket, schema, name,
                                                                rids.column(0).combine_chunks()))
            return b"", {}

        if key == ("GET", "data"):
            return self._select(_get_table(self._view(txid), bucket, schema, name), body, h), {}

        raise _Fail(501, "NotImplemented", f"{method} ?{command} is not supported by the loopback server")

    def _insert(self, bucket: str, schema: str, name: str, rows: pa.Table, txid: int) -> bytes:
        def make(cat: _Catalog) -> tuple[_Op, pa.Array]:
            t = _get_table(cat, bucket, schema, name)
            _check_written_columns(t, rows.schema, row_id_first=False)
            first = self._next_rid[t.handle]
            self._next_rid[t.handle] = first + rows.num_rows
            rids = pa.array(np.arange(first, first + rows.num_rows, dtype=np.uint64))
            seg = pa.Table.from_arrays([rids, *rows.combine_chunks().columns],
                                       schema=pa.schema([_ROW_ID_FIELD, *(t.schema.field(n) for n in rows.column_names)]))

            def apply(t2: _Table) -> _Table:
                _check_written_columns(t2, rows.schema, row_id_first=False)
                return replace(t2, segments=_insert_segment(t2.segments, seg))
            return _Op(_table_op(bucket, schema, name, t.handle, apply)), rids

        if rows.num_rows:
            rids = self._write(txid, make)
        else:
            _check_written_columns(_get_table(self._view(txid), bucket, schema, name), rows.schema, row_id_first=False)
            rids = pa.array([], pa.uint64())
        return _ipc_table(pa.table({ROW_ID: rids}))

    def _make_update(self, cat: _Catalog, bucket: str, schema: str, name: str, upd: pa.Table) -> tuple[_Op, None]:
        t = _get_table(cat, bucket, schema, name)
        _check_written_columns(t, upd.schema, row_id_first=True)

        def apply(t2: _Table) -> _Table:
            _check_written_columns(t2, upd.schema, row_id_first=True)
            return replace(t2, segments=_update_segments(t2, upd))
        return _Op(_table_op(bucket, schema, name, t.handle, apply), t.handle, upd.column(0).to_numpy()), None

    def _make_delete(self, cat: _Catalog, bucket: str, schema: str, name: str, rids: pa.Array) -> tuple[_Op, None]:
        t = _get_table(cat, bucket, schema, name)
        return _Op(_table_op(bucket, schema, name, t.handle,
                             lambda t2: replace(t2, segments=_delete_segments(t2.segments, rids))),
                   t.handle, rids.to_numpy()), None

    # ------------------------------------------------------------ select

    def _select(self, table: _Table, body: bytes, h: _Handler) -> bytes:
        try:
            rel = _Fb.root(body)
            if rel.scalar(_REL_IMPL_TYPE) != RelationImpl.Source:
                raise _bad("TabularInvalidArgument", "query must be a Source relation")
            src = rel.table(_REL_IMPL)
            nodes = _request_nodes(src.table(_SRC_SCHEMA))
            out_cols = list(dict.fromkeys(_top(nodes, p.scalar(0, _U32)) for p in src.tables(_SRC_PROJECTION)))
        except (IndexError, struct.error, AttributeError) as e:
            raise _bad("TabularInvalidArgument", f"cannot decode query: {e}") from None
        unknown = [c for c in out_cols if c != ROW_ID and c not in table.schema.names]
        if unknown:
            raise _bad("TabularMismatchColumnName", f"columns {unknown} are not in the table")
        compiler = _PredicateCompiler(nodes, table.schema)
        filter_expr = src.table(_SRC_FILTER)
        pred = compiler.compile(filter_expr) if filter_expr is not None else None
        needed = list(dict.fromkeys([*out_cols, *sorted(compiler.columns)]))

        split_id, num_splits, row_groups = (int(x) for x in h.headers.get("tabular-split", "0,1,8").split(","))
        sub_splits = int(h.headers.get("tabular-num-of-subsplits", "1"))
        limit = int(h.headers.get("tabular-limit-rows") or 0) or None
        starts = {}
        for k, v in h.headers.items():
            if k.lower().startswith("tabular-start-row-id-"):
                sid, start = v.split(",")
                starts[int(sid)] = int(start)
        slots, block = num_splits * sub_splits, self.rows_per_row_group * max(row_groups, 1)
        out = []
        for sid in range(sub_splits):
            start = starts.get(sid, 0)
            if start == INVALID_ROW_ID:
                continue
            page, nxt = _page_rows(table, start, split_id + num_splits * sid, slots, block, pred, needed, limit)
            out.append(_stream(sid, nxt, page.select(out_cols)))
        out.append(struct.pack("<I", _COMPLETED_STREAM_ID))
        return b"".join(out)


def _page(names: list[str], h: _Handler) -> tuple[list[str], dict[str, str]]:
    """One page of a name listing, honouring exact-match/prefix, next-key and max-keys headers."""
    if "tabular-name-exact-match" in h.headers:
        exact = h.headers["tabular-name-exact-match"]
        names = [n for n in names if n == exact]
    else:
        prefix = h.headers.get("tabular-name-prefix", "")
        names = [n for n in names if n.startswith(prefix)]
    start = int(h.headers.get("tabular-next-key") or 0)
    end = start + int(h.headers.get("tabular-max-keys") or 1000)
    headers = {"tabular-next-key": str(min(end, len(names))),
               "tabular-is-truncated": "true" if end < len(names) else "false",
               "tabular-list-count": str(len(names))}
    if h.headers.get("tabular-list-count-only", "False").lower() == "true":
        return [], headers
    return names[start:end], headers


def _page_rows(table: _Table, start: int, slot: int, slots: int, block: int, pred: _Mask | None,
               names: list[str], limit: int | None) -> tuple[pa.Table, int]:
    """Matching rows of one sub-split from row id ``start`` on, at most ``limit``; and the next cursor."""
    pieces, need = [], limit
    names = [ROW_ID, *(n for n in names if n != ROW_ID)]
    for seg in table.segments:
        rid = _rids(seg)
        if int(rid[-1]) < start:
            continue
        first = int(np.searchsorted(rid, start))
        part = table.aligned(seg.slice(first), names)
        keep = ((rid[first:] // block) % slots == slot) if slots > 1 else None
        if pred is not None:
            m = pc.fill_null(pred(part), False).to_numpy(zero_copy_only=False)
            keep = m if keep is None else keep & m
        if keep is not None:
            part = part.filter(pa.array(keep))
        if need is not None and part.num_rows >= need:
            part = part.slice(0, need)
            pieces.append(part)
            return pa.concat_tables(pieces), int(part.column(0)[-1].as_py()) + 1
        pieces.append(part)
        need = None if need is None else need - part.num_rows
    empty = table.aligned(pa.table({ROW_ID: pa.array([], pa.uint64())}), names)
    return pa.concat_tables([empty, *pieces]), INVALID_ROW_ID


# ---------------------------------------------------------------- catalog operations (apply functions)


def _create_schema(cat: _Catalog, bucket: str, path: str, props: str) -> _Catalog:
    if (bucket, path) in cat:
        raise _Fail(409, "TabularSchemaAlreadyExists", f"schema {bucket}/{path} already exists")
    parent = path.rpartition("/")[0]
    if parent:
        _get_schema(cat, bucket, parent)
    return _set_schema(cat, (bucket, path), _Schema(props))


def _drop_schema(cat: _Catalog, bucket: str, path: str) -> _Catalog:
    if _get_schema(cat, bucket, path).tables or _children(cat, bucket, path):
        raise _Fail(409, "TabularSchemaNotEmpty", f"schema {bucket}/{path} still has tables or schemas")
    return _set_schema(cat, (bucket, path), None)


def _create_table(cat: _Catalog, bucket: str, schema: str, name: str, handle: int, cols: pa.Schema) -> _Catalog:
    if name in _get_schema(cat, bucket, schema).tables:
        raise _Fail(409, "TabularTableAlreadyExists", f"table {bucket}/{schema}/{name} already exists")
    return _set_table(cat, bucket, schema, name, _Table(handle, cols))


def _drop_table(bucket: str, schema: str, name: str, handle: int) -> Callable[[_Catalog], _Catalog]:
    def apply(cat: _Catalog) -> _Catalog:
        _get_table(cat, bucket, schema, name, handle)
        return _set_table(cat, bucket, schema, name, None)
    return apply


def _table_op(bucket: str, schema: str, name: str, handle: int,
              change: Callable[[_Table], _Table]) -> Callable[[_Catalog], _Catalog]:
    """An apply function changing one table, refusing if it is no longer the same table."""
    return lambda cat: _set_table(cat, bucket, schema, name, change(_get_table(cat, bucket, schema, name, handle)))


def _add_columns(t: _Table, cols: pa.Schema) -> _Table:
    clash = [n for n in cols.names if n in t.schema.names]
    if clash:
        raise _Fail(409, "TabularColumnAlreadyExists", f"columns {clash} already exist")
    return replace(t, schema=pa.schema([*t.schema, *cols], metadata=t.schema.metadata))


def _drop_columns(t: _Table, names: list[str]) -> _Table:
    missing = [n for n in names if n not in t.schema.names]
    if missing:
        raise _Fail(404, "TabularNoSuchColumn", f"columns {missing} do not exist")
    keep = [f for f in t.schema if f.name not in names]
    segs = tuple(s.drop_columns([n for n in names if n in s.column_names]) for s in t.segments)
    return replace(t, schema=pa.schema(keep, metadata=t.schema.metadata), segments=segs)
