"""The loopback VAST server, driven by the real vastdb SDK: protocol fidelity and VAST's rules.

These pin what the backend tests rely on: the SDK must see the same answers (data, row ids,
pagination, error classes and codes) it would get from a cluster.
"""

from __future__ import annotations

import datetime as dt
import threading

import flatbuffers
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import requests
import vastdb
from ibis import _
from vastdb import _internal, errors
from vastdb.config import BackoffConfig, QueryConfig

from vastloop import MAX_REQUEST_BODY, loopback_vast
from vastloop.server import INVALID_ROW_ID, LoopbackVast

BUCKET = "exr-data"
VEC = pa.list_(pa.field("item", pa.float32(), nullable=False), 384)
RICH = pa.schema([
    pa.field("path", pa.string(), nullable=False),
    pa.field("size", pa.int64()),
    pa.field("parts", pa.int32()),
    pa.field("ratio", pa.float64()),
    pa.field("deep", pa.bool_()),
    pa.field("mtime", pa.timestamp("us")),
    pa.field("seen", pa.timestamp("ns", tz="UTC")),
    pa.field("window", pa.struct([pa.field("min_x", pa.int32()), pa.field("max_x", pa.int32())])),
    pa.field("roots", pa.list_(pa.string())),
    pa.field("embedding", VEC),
])
T0 = dt.datetime(2024, 5, 1, 12, 0, 0)
LATE = T0 + dt.timedelta(minutes=300)
SOME_PATHS = ["/show/seq001/shot_00105.exr", "/show/seq002/shot_00206.exr", "/show/seq003/shot_00301.exr"]


def rich_rows(n: int, start: int = 0) -> pa.Table:
    """Deterministic rows with nulls in every nullable column (every 7th row)."""
    idx = range(start, start + n)

    def nullable(f):
        return [None if i % 7 == 3 else f(i) for i in idx]

    vecs = np.arange(n * 384, dtype=np.float32).reshape(n, 384) + start
    emb = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), type=VEC)
    emb = pc.if_else(pa.array([i % 7 == 5 for i in idx]), pa.nulls(n, VEC), emb)
    return pa.table({
        "path": [f"/show/seq{i // 100:03d}/shot_{i:05d}.exr" for i in idx],
        "size": nullable(lambda i: i * 1000),
        "parts": nullable(lambda i: i % 4),
        "ratio": nullable(lambda i: i / 3),
        "deep": nullable(lambda i: i % 2 == 0),
        "mtime": nullable(lambda i: T0 + dt.timedelta(minutes=i)),
        "seen": nullable(lambda i: dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i)),
        "window": nullable(lambda i: {"min_x": -i, "max_x": i if i % 5 else None}),
        "roots": nullable(lambda i: [f"/r{i % 3}"] * (i % 3)),
        "embedding": emb,
    }, schema=RICH)


def fast_retries(max_tries: int = 5) -> BackoffConfig:
    """Backoff with 10 ms waits, so retry tests stay quick."""
    def wait_gen(max_value=None):
        while True:
            yield 0.01
    return BackoffConfig(wait_gen=wait_gen, max_tries=max_tries, max_time=10)


@pytest.fixture
def srv():
    with loopback_vast(buckets=[BUCKET], access_key="AK", secret_key="SK") as server:
        yield server


@pytest.fixture
def session(srv):
    return srv.connect(backoff_config=fast_retries())


def make_table(session, schema=RICH, name="files", rows=None):
    with session.transaction() as tx:
        t = tx.bucket(BUCKET).create_schema("meta", fail_if_exists=False).create_table(name, schema,
                                                                                        fail_if_exists=False)
        if rows is not None:
            t.insert(rows)


def open_table(tx, name="files"):
    return tx.bucket(BUCKET).schema("meta").table(name)


# ---------------------------------------------------------------- connect, catalog, round trip


def test_connect_reports_a_vast_version(srv):
    s = srv.connect()
    assert s.api.vast_version == (5, 4, 0, 0)
    assert srv.requests[0].command == "transaction" and srv.requests[0].method == "GET"


def test_get_or_create_schema_and_table(session):
    make_table(session)
    make_table(session)  # fail_if_exists=False returns the existing ones
    with session.transaction() as tx:
        b = tx.bucket(BUCKET)
        assert [s.name for s in b.schemas()] == ["meta"]
        sch = b.schema("meta")
        assert [t.name for t in sch.tables()] == ["files"]
        assert sch.table("files").arrow_schema == RICH
        with pytest.raises(errors.SchemaExists):
            b.create_schema("meta")
        with pytest.raises(errors.TableExists):
            sch.create_table("files", RICH)


def test_insert_and_read_back_exactly(srv, session):
    rows = rich_rows(50)
    make_table(session)
    with session.transaction() as tx:
        t = open_table(tx)
        assert t.insert(rows).to_pylist() == list(range(50))
        assert t.select().read_all() == rows  # own writes are visible before commit
    with session.transaction() as tx:
        t = open_table(tx)
        got = t.select().read_all()
        assert got.schema == RICH
        assert got.equals(rows)
        assert t.get_stats().num_rows == 50
    assert srv.table_rows(BUCKET, "meta", "files").equals(rows)
    assert srv.table_rows(BUCKET, "meta", "files", with_row_id=True)["$row_id"].to_pylist() == list(range(50))
    assert srv.snapshot_counts() == {f"{BUCKET}/meta/files": 50}


def test_duplicates_are_stored_twice(srv, session):
    rows = rich_rows(3)
    make_table(session, rows=rows)
    make_table(session, rows=rows)
    with session.transaction() as tx:
        got = open_table(tx).select(columns=["path"], internal_row_id=True).read_all()
    assert got["path"].to_pylist() == rows["path"].to_pylist() * 2
    assert got["$row_id"].to_pylist() == list(range(6))


def test_request_log(srv, session):
    make_table(session)
    srv.clear_requests()
    with session.transaction() as tx:
        open_table(tx).insert(rich_rows(2))
    recs = srv.requests
    begin, insert, commit = recs[0], next(r for r in recs if r.command == "rows"), recs[-1]
    assert (begin.method, begin.command) == ("POST", "transaction") and begin.txid is not None
    assert (insert.method, insert.path, insert.status) == ("POST", f"/{BUCKET}/meta/files", 200)
    assert insert.body_bytes > 0 and insert.txid == begin.txid
    assert (commit.method, commit.command, commit.txid) == ("PUT", "transaction", begin.txid)
    assert srv.open_txids == []


# ---------------------------------------------------------------- select


@pytest.fixture
def loaded(session):
    rows = rich_rows(400)
    make_table(session, rows=rows)
    return rows


@pytest.mark.parametrize(("predicate", "mask"), [
    (lambda t: t["size"] == 5000, lambda r: pc.equal(r["size"], 5000)),
    (lambda t: t["size"] != 5000, lambda r: pc.not_equal(r["size"], 5000)),
    (lambda t: t["ratio"] < 10.5, lambda r: pc.less(r["ratio"], 10.5)),
    (lambda t: t["parts"] >= 2, lambda r: pc.greater_equal(r["parts"], 2)),
    (lambda t: t["size"].between(1000, 9000), lambda r: pc.and_(pc.greater_equal(r["size"], 1000),
                                                               pc.less_equal(r["size"], 9000))),
    (lambda t: t["deep"] == True, lambda r: pc.equal(r["deep"], True)),  # noqa: E712 -- ibis needs ==
    (lambda t: t["size"].isnull(), lambda r: pc.is_null(r["size"])),
    (lambda t: ~t["size"].isnull(), lambda r: pc.is_valid(r["size"])),
    (lambda t: t["embedding"].isnull(), lambda r: pc.is_null(r["embedding"])),
    (lambda t: t["path"].startswith("/show/seq002/"), lambda r: pc.starts_with(r["path"], "/show/seq002/")),
    (lambda t: t["path"].contains("_0012"), lambda r: pc.match_substring(r["path"], "_0012")),
    (lambda t: t["mtime"] > LATE, lambda r: pc.greater(r["mtime"], pa.scalar(LATE, pa.timestamp("us")))),
    (lambda t: t["window"]["min_x"] < -390, lambda r: pc.less(pc.struct_field(r["window"], [0]), -390)),
    (lambda t: (t["parts"] == 1) | (t["parts"] == 3) | t["parts"].isnull(),
     lambda r: pc.or_kleene(pc.is_in(r["parts"], pa.array([1, 3], pa.int32())), pc.is_null(r["parts"]))),
    (lambda t: (t["size"] > 100_000) & (t["deep"] == False) & _.path.isin(SOME_PATHS),  # noqa: E712
     lambda r: pc.and_kleene(pc.and_kleene(pc.greater(r["size"], 100_000), pc.equal(r["deep"], False)),
                             pc.is_in(r["path"], pa.array(SOME_PATHS)))),
])
def test_select_predicates(session, loaded, predicate, mask):
    with session.transaction() as tx:
        t = open_table(tx)
        got = t.select(columns=["path", "size", "window"], predicate=predicate(t)).read_all()
    want = loaded.filter(pc.fill_null(mask(loaded), False)).select(["path", "size", "window"])
    assert got.equals(want)
    assert 0 < got.num_rows < loaded.num_rows


def test_isin_with_thousands_of_keys_and_row_ids(session, loaded):
    present = loaded["path"].to_pylist()[::2]
    keys = present + [f"/elsewhere/{i}.exr" for i in range(5000 - len(present))]
    with session.transaction() as tx:
        t = open_table(tx)
        got = t.select(columns=["path"], predicate=t["path"].isin(keys), internal_row_id=True).read_all()
    assert got.column_names == ["path", "$row_id"]
    assert got["path"].to_pylist() == present
    assert got["$row_id"].to_pylist() == list(range(0, 400, 2))


def test_limit_rows_and_empty_projection(session, loaded):
    with session.transaction() as tx:
        t = open_table(tx)
        assert t.select(columns=["path"], limit_rows=7).read_all()["path"].to_pylist() == \
            loaded["path"].to_pylist()[:7]
        assert t.select(columns=[], predicate=t["parts"] == 0).read_all().num_rows == \
            pc.sum(pc.equal(loaded["parts"], 0)).as_py()


def test_large_select_paginates(srv, session):
    n = 300_000
    schema = pa.schema([pa.field("k", pa.int64(), nullable=False), pa.field("s", pa.string())])
    rows = pa.table({"k": np.arange(n), "s": pa.array(np.arange(n).astype(str))}, schema=schema)
    make_table(session, schema, "big", rows)
    srv.clear_requests()
    with session.transaction() as tx:
        got = open_table(tx, "big").select().read_all()
    assert got.equals(rows)
    pages = [r for r in srv.requests if r.command == "data"]
    assert len(pages) == 3  # 128 Ki rows per sub-split page: 131072 + 131072 + 37856


def test_splits_and_sub_splits_partition_rows():
    with loopback_vast(buckets=[BUCKET], rows_per_row_group=1000) as small_groups:
        s = small_groups.connect()
        schema = pa.schema([pa.field("k", pa.int64())])
        make_table(s, schema, "t", pa.table({"k": np.arange(50_000)}, schema=schema))
        cfg = QueryConfig(num_splits=3, num_sub_splits=4, num_row_groups_per_sub_split=2,
                          limit_rows_per_sub_split=3000)
        with s.transaction() as tx:
            got = open_table(tx, "t").select(config=cfg).read_all()
        assert sorted(got["k"].to_pylist()) == list(range(50_000))
        assert sum(r.command == "data" for r in small_groups.requests) > 3


# ---------------------------------------------------------------- update, delete, add_column


def test_update_and_delete_by_row_id(srv, session, loaded):
    with session.transaction() as tx:
        t = open_table(tx)
        hits = t.select(columns=["path", "size"], predicate=t["parts"] == 2, internal_row_id=True).read_all()
        t.update(pa.table({"$row_id": hits["$row_id"], "size": pa.array([-1] * hits.num_rows, pa.int64())}))
        gone = t.select(columns=[], predicate=t["parts"] == 3, internal_row_id=True).read_all()
        t.delete(gone)
    committed = srv.table_rows(BUCKET, "meta", "files", with_row_id=True)
    assert committed.num_rows == loaded.num_rows - gone.num_rows
    assert set(committed["$row_id"].to_pylist()).isdisjoint(gone["$row_id"].to_pylist())
    updated = committed.filter(pc.equal(committed["parts"], 2))
    assert set(updated["size"].to_pylist()) == {-1}
    untouched = committed.filter(pc.equal(committed["parts"], 1))
    assert untouched["embedding"] == loaded.filter(pc.equal(loaded["parts"], 1))["embedding"]


def test_update_requires_row_id(session, loaded):
    with session.transaction() as tx:
        with pytest.raises(errors.MissingRowIdColumn):
            open_table(tx).update(pa.table({"size": pa.array([1], pa.int64())}))


def test_add_column_is_isolated_until_commit(srv, session, loaded):
    extra = pa.schema([pa.field("note", pa.string())])
    with session.transaction() as tx1, session.transaction() as tx2:
        t1 = open_table(tx1)
        t1.add_column(extra)
        assert "note" in t1.arrow_schema.names
        assert "note" not in open_table(tx2).arrow_schema.names
    with session.transaction() as tx:
        t = open_table(tx)
        t.insert(pa.table({"path": ["/new.exr"], "note": ["hi"]},
                          schema=pa.schema([RICH.field("path"), extra.field("note")])))
        got = t.select(columns=["path", "note"]).read_all()
    assert got["note"].to_pylist() == [None] * 400 + ["hi"]
    assert srv.table_rows(BUCKET, "meta", "files").schema == RICH.append(extra.field("note"))


def test_big_insert_is_sliced_by_the_sdk_and_lands_whole(srv, session):
    rows = rich_rows(6000)  # ~9 MB of vectors: one POST of the narrow columns, then PUTs of the vectors
    make_table(session)
    srv.clear_requests()
    with session.transaction() as tx:
        ids = open_table(tx).insert(rows)
    writes = [r for r in srv.requests if r.command == "rows"]
    assert {r.method for r in writes} == {"POST", "PUT"}
    assert max(r.body_bytes for r in writes) <= MAX_REQUEST_BODY
    assert ids.to_pylist() == list(range(6000))
    assert srv.table_rows(BUCKET, "meta", "files").equals(rows)


# ---------------------------------------------------------------- transactions


def test_rollback_discards_everything(srv, session):
    make_table(session)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), session.transaction() as tx:
        t = open_table(tx)
        t.insert(rich_rows(5))
        tx.bucket(BUCKET).schema("meta").create_table("scratch", RICH)
        raise Boom
    with session.transaction() as tx:
        assert open_table(tx).select().read_all().num_rows == 0
        assert tx.bucket(BUCKET).schema("meta").table("scratch", fail_if_missing=False) is None
    assert srv.open_txids == []


def test_open_transactions_are_isolated(srv, session):
    make_table(session)
    with session.transaction() as tx1, session.transaction() as tx2:
        open_table(tx1).insert(rich_rows(3))
        assert open_table(tx1).select().read_all().num_rows == 3
        assert open_table(tx2).select().read_all().num_rows == 0
        assert srv.snapshot_counts()[f"{BUCKET}/meta/files"] == 0
    assert srv.snapshot_counts()[f"{BUCKET}/meta/files"] == 3


def test_concurrent_transactions_both_land(srv, session):
    make_table(session, rows=rich_rows(10))
    with session.transaction() as tx1, session.transaction() as tx2:
        t1, t2 = open_table(tx1), open_table(tx2)
        ids1 = t1.insert(rich_rows(4, start=100))
        ids2 = t2.insert(rich_rows(6, start=200))
        t1.update(pa.table({"$row_id": pa.array([0], pa.uint64()), "size": pa.array([-7], pa.int64())}))
        t2.delete(pa.table({"$row_id": pa.array([1], pa.uint64())}))
    assert set(ids1.to_pylist()).isdisjoint(ids2.to_pylist())
    rows = srv.table_rows(BUCKET, "meta", "files", with_row_id=True)
    assert rows.num_rows == 10 + 4 + 6 - 1
    assert rows["$row_id"].to_pylist() == sorted(rows["$row_id"].to_pylist())
    assert rows["size"][0].as_py() == -7
    paths = set(rows["path"].to_pylist())
    assert paths >= set(rich_rows(4, start=100)["path"].to_pylist()) | set(rich_rows(6, start=200)["path"].to_pylist())


def test_conflicting_row_updates_fail_the_later_commit(srv, session):
    make_table(session, rows=rich_rows(3))
    upd = pa.table({"$row_id": pa.array([2], pa.uint64()), "size": pa.array([1], pa.int64())})
    with pytest.raises(errors.Conflict) as exc, session.transaction() as tx1, session.transaction() as tx2:
        open_table(tx1).update(upd)
        open_table(tx2).delete(upd.select(["$row_id"]))
    assert exc.value.code == "TabularTransactionConflict"
    assert srv.table_rows(BUCKET, "meta", "files").num_rows == 2  # tx2 (inner) committed first
    assert srv.open_txids == []


def test_threads_with_separate_sessions_all_land(srv):
    make_table(srv.connect())
    failures = []

    def worker(w):
        try:
            s = srv.connect()
            for k in range(4):
                with s.transaction() as tx:
                    open_table(tx).insert(rich_rows(25, start=10_000 * w + 100 * k))
        except Exception as e:  # surfaced below
            failures.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert failures == []
    rows = srv.table_rows(BUCKET, "meta", "files", with_row_id=True)
    assert rows.num_rows == 6 * 4 * 25
    assert len(set(rows["$row_id"].to_pylist())) == rows.num_rows
    assert len(set(rows["path"].to_pylist())) == rows.num_rows


# ---------------------------------------------------------------- VAST's type and size rules


@pytest.mark.parametrize("field", [
    pa.field("embedding", pa.list_(pa.field("item", pa.float32(), nullable=True), 384)),  # nullable child
    pa.field("embedding", pa.list_(pa.field("item", pa.float64(), nullable=False), 384)),
    pa.field("size", pa.int32()),
    pa.field("mtime", pa.timestamp("ns")),
    pa.field("path", pa.string(), nullable=True),  # the table's path is NOT NULL
])
def test_insert_type_mismatch_is_bad_request(session, field):
    make_table(session)
    col = pa.array([None] if field.nullable else ["x"], field.type)
    with session.transaction() as tx:
        with pytest.raises(errors.BadRequest) as exc:
            open_table(tx).insert(pa.table({field.name: col}, schema=pa.schema([field])))
    assert exc.value.code == "TabularMismatchColumnType"
    assert exc.value.status == 400


def test_unknown_column_is_bad_request(session):
    make_table(session)
    with session.transaction() as tx:
        with pytest.raises(errors.BadRequest) as exc:
            open_table(tx).insert(pa.table({"nope": [1]}))
    assert exc.value.code == "TabularMismatchColumnName"


@pytest.mark.parametrize(("arrow_type", "code"), [
    (pa.list_(pa.float32(), 8), "TabularUnsupportedColumnType"),  # vector child must be NOT NULL
    (pa.list_(pa.field("item", pa.string(), nullable=False), 8), "TabularUnsupportedColumnType"),
    (pa.null(), "TabularUnsupportedColumnType"),
    (pa.list_(pa.field("item", pa.int64(), nullable=False), 0), "TabularInvalidColumnTypeParam"),
])
def test_unsupported_column_types_are_refused(session, arrow_type, code):
    make_table(session)
    with pytest.raises((errors.NotSupportedSchema, errors.BadRequest)) as exc, session.transaction() as tx:
        tx._rpc.api.create_table(BUCKET, "meta", "bad", pa.schema([("c", arrow_type)]), txid=tx.txid)
    err = exc.value.cause if isinstance(exc.value, errors.NotSupportedSchema) else exc.value
    assert (err.status, err.code) == (400, code)


def test_nullable_vector_child_refused_through_create_table(session):
    make_table(session)
    with pytest.raises(errors.NotSupportedSchema) as exc, session.transaction() as tx:
        tx.bucket(BUCKET).schema("meta").create_table("v", pa.schema([("v", pa.list_(pa.float32(), 16))]))
    assert exc.value.cause.code == "TabularUnsupportedColumnType"


def test_request_body_over_5_mib_is_refused(srv, session):
    make_table(session)
    with session.transaction() as tx:
        with pytest.raises(errors.BadRequest) as exc:
            tx._rpc.api.insert_rows(BUCKET, "meta", "files", b"\0" * (MAX_REQUEST_BODY + 1), txid=tx.txid)
    assert exc.value.code == "MaxMessageLengthExceeded"
    assert srv.requests[-2].body_bytes == MAX_REQUEST_BODY + 1


def _offsets(b: flatbuffers.Builder, start, offsets: list[int]) -> int:
    """A flatbuffer vector of table offsets (built back to front, as flatbuffers are)."""
    start(b, len(offsets))
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _raw_query(schema: pa.Schema, make_filter) -> bytes:
    """A QueryData body with a hand-built filter (the SDK itself only emits CNF)."""
    b = flatbuffers.Builder(1024)
    p = _internal.Predicate(schema, None)
    p.builder = b
    filt = make_filter(p)
    name = b.CreateString("")
    vec = _offsets(b, _internal.fb_schema.StartFieldsVector, [_internal.build_field(b, f) for f in schema])
    _internal.fb_schema.Start(b)
    _internal.fb_schema.AddFields(b, vec)
    sch = _internal.fb_schema.End(b)
    idx = []
    for pos in range(len(schema)):
        _internal.fb_field_index.Start(b)
        _internal.fb_field_index.AddPosition(b, pos)
        idx.append(_internal.fb_field_index.End(b))
    proj = _offsets(b, _internal.fb_source.StartProjectionVector, idx)
    _internal.fb_source.Start(b)
    _internal.fb_source.AddName(b, name)
    _internal.fb_source.AddSchema(b, sch)
    _internal.fb_source.AddFilter(b, filt)
    _internal.fb_source.AddProjection(b, proj)
    src = _internal.fb_source.End(b)
    _internal.fb_relation.Start(b)
    _internal.fb_relation.AddImplType(b, _internal.rel_impl.RelationImpl.Source)
    _internal.fb_relation.AddImpl(b, src)
    b.Finish(_internal.fb_relation.End(b))
    return bytes(b.Output())


def test_non_cnf_predicate_is_refused(session, loaded):
    schema = pa.schema([RICH.field("size"), RICH.field("parts")])

    def cross_column_or(p):
        eq_size = p.build_equal(p.build_column(0), p.build_literal_expression(schema.field(0), 1000))
        eq_parts = p.build_equal(p.build_column(1), p.build_literal_expression(schema.field(1), 1))
        return p.build_and([p.build_or([eq_size, eq_parts])])

    def bare_or(p):
        return p.build_or([p.build_is_null(p.build_column(0))])

    with session.transaction() as tx:
        for make in (cross_column_or, bare_or):
            with pytest.raises(errors.BadRequest) as exc:
                tx._rpc.api.query_data(BUCKET, "meta", "files", _raw_query(schema, make), txid=tx.txid)
            assert exc.value.code == "TabularUnsupportedPredicate"
        ok = tx._rpc.api.query_data(BUCKET, "meta", "files", _raw_query(schema, lambda p: p.build_and([])),
                                    txid=tx.txid, num_sub_splits=1)
        got = list(_internal.parse_query_data_response(ok.raw, schema))
    assert got[-1][1] == INVALID_ROW_ID and sum(t.num_rows for _, _, t in got) == 400


# ---------------------------------------------------------------- errors, retries, timeouts


def test_missing_bucket_schema_table(session):
    make_table(session)
    with session.transaction() as tx:
        with pytest.raises(errors.MissingBucket):
            tx.bucket("no-such-bucket")
        with pytest.raises(errors.MissingSchema):
            tx.bucket(BUCKET).schema("nope")
        with pytest.raises(errors.MissingTable):
            tx.bucket(BUCKET).schema("meta").table("nope")
        with pytest.raises(errors.NotFound) as exc:
            tx._rpc.api.get_table_stats(BUCKET, "meta", "nope", txid=tx.txid)
        assert exc.value.code == "TabularNoSuchTable"


def test_drop_table_and_schema(session):
    make_table(session)
    with pytest.raises(errors.Conflict) as exc, session.transaction() as tx:
        tx.bucket(BUCKET).schema("meta").drop()  # still has a table
    assert exc.value.code == "TabularSchemaNotEmpty"
    with session.transaction() as tx:
        sch = tx.bucket(BUCKET).schema("meta")
        sch.table("files").drop()
        sch.drop()
    with session.transaction() as tx:
        assert tx.bucket(BUCKET).schemas() == []


def test_slowdown_is_retried_by_the_sdk(srv, session):
    make_table(session, rows=rich_rows(3))
    srv.fail_next(503, "SlowDown", count=2, command="schema")
    srv.fail_next(503, "SlowDown", count=1, command="data")
    srv.clear_requests()
    with session.transaction() as tx:
        assert open_table(tx).select(columns=["path"]).read_all().num_rows == 3
    statuses = [(r.command, r.status) for r in srv.requests if r.command in ("schema", "data")]
    assert statuses[:3] == [("schema", 503), ("schema", 503), ("schema", 200)]
    assert [s for c, s in statuses if c == "data"] == [503, 200]


def test_slowdown_gives_up_after_max_tries(srv):
    s = srv.connect(backoff_config=fast_retries(max_tries=3))
    srv.fail_next(503, "SlowDown", count=5, command="schema")
    with pytest.raises(errors.Slowdown), s.transaction() as tx:
        tx.bucket(BUCKET).schemas()
    assert sum(r.status == 503 for r in srv.requests) == 3


def test_head_errors_carry_no_code_so_503_is_not_retried(srv, session):
    srv.fail_next(503, "SlowDown", command="bucket")
    with pytest.raises(errors.ServiceUnavailable) as exc, session.transaction() as tx:
        tx.bucket(BUCKET)
    assert not isinstance(exc.value, errors.Slowdown) and exc.value.code is None


def test_injected_statuses_map_to_sdk_errors(srv, session):
    cases = [(403, "AccessDenied", errors.Forbidden), (404, "NoSuchBucket", errors.MissingBucket),
             (409, "Conflict", errors.Conflict), (500, "InternalError", errors.InternalServerError)]
    for status, code, exc_type in cases:
        srv.fail_next(status, code, command="bucket")
        with pytest.raises(exc_type), session.transaction() as tx:
            tx.bucket(BUCKET)
    srv.fail_next(401, "Unauthorized", method="POST", command="transaction")
    with pytest.raises(ValueError, match="401 is not a valid HttpStatus"), session.transaction():
        pass


def test_bad_credentials_are_forbidden(srv):
    with pytest.raises(errors.Forbidden) as exc:
        vastdb.connect(endpoint=srv.endpoint, access="WRONG", secret="SK")
    assert exc.value.code == "InvalidAccessKeyId"
    with pytest.raises(errors.Forbidden) as exc:
        vastdb.connect(endpoint=srv.endpoint, access="AK", secret="WRONG")
    assert exc.value.code == "SignatureDoesNotMatch"


def test_delayed_answer_times_out_client_side(srv):
    s = srv.connect(timeout=0.3)
    srv.delay_next(1.0, command="schema")
    with pytest.raises(requests.exceptions.ReadTimeout), s.transaction() as tx:
        tx.bucket(BUCKET).schemas()
    with s.transaction() as tx:  # the server keeps serving
        assert tx.bucket(BUCKET).schemas() == []


def test_stop_is_clean_and_context_managed():
    with LoopbackVast(buckets=[BUCKET]) as server:
        endpoint = server.endpoint
        server.connect()
    with pytest.raises(errors.ConnectionError):
        vastdb.connect(endpoint=endpoint, access="AK", secret="SK", backoff_config=fast_retries(2))
