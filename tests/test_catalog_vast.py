"""The VAST catalog: the shared contract and the SDK boundary, through the real ``vastdb``
SDK against the loopback server in ``vastloop`` (no cluster needed)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from catalog_contract import ROW_KEYS, T0, CatalogContract, make_batch, paths_of
from exr_inspector.catalog.base import CatalogError, open_catalog
from exr_inspector.catalog.schema import TABLES
from exr_inspector.catalog.vast import INSERT_SLICE, MAX_REQUEST, VastCatalog, insert_slices, key_chunks
from exr_inspector.catalog.vast_config import VastConfig, mask
from vastloop.server import LoopbackVast

from conftest import VAST_ACCESS as ACCESS
from conftest import VAST_BUCKET as BUCKET
from conftest import VAST_SECRET as SECRET


@pytest.fixture
def server(vast_server):
    yield vast_server
    vast_server.clear_faults()


def open_vast(server: LoopbackVast, schema: str | None = None, **kw) -> VastCatalog:
    settings = dict(endpoint=server.endpoint, access_key=ACCESS, secret_key=SECRET, allow_insecure=True,
                    timeout=5, max_tries=3)
    settings.update(kw)
    return VastCatalog(f"vast://{BUCKET}/{schema or 't_' + uuid.uuid4().hex[:12]}", **settings)


def vast_env(server: LoopbackVast, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAST_DB_", "S3_"))}
    env.update(VAST_DB_ENDPOINT=server.endpoint, VAST_DB_ACCESS_KEY=ACCESS, VAST_DB_SECRET_KEY=SECRET)
    env.update(extra)
    return env


class TestVast(CatalogContract):
    @pytest.fixture
    def catalog(self, server):
        with open_vast(server) as cat:
            yield cat

    def read_table(self, catalog, table: str) -> pa.Table:
        t = catalog.scan(table)
        return t.sort_by([(k, "ascending") for k in ROW_KEYS[table]]) if table in ROW_KEYS else t


# -- configuration ---------------------------------------------------------------------


def test_config_priority_explicit_env_fallback():
    env = {"VAST_DB_ENDPOINT": "https://env.vast", "S3_ENDPOINT": "https://s3.vast", "S3_ACCESS_KEY": "ak-s3",
           "S3_SECRET_KEY": "sk-s3-secret", "VAST_DB_SECRET_KEY": "sk-vast-secret", "VAST_DB_BUCKET": "envbucket"}
    c = VastConfig.resolve("vast://", env=env)
    assert (c.endpoint, c.access_key, c.secret_key, c.bucket, c.schema) == (
        "https://env.vast", "ak-s3", "sk-vast-secret", "envbucket", "exr_metadata")
    c = VastConfig.resolve("vast://b1/s1", env=env, endpoint="https://given.vast/", access_key="ak-given")
    assert (c.endpoint, c.access_key, c.bucket, c.schema) == ("https://given.vast", "ak-given", "b1", "s1")
    assert VastConfig.resolve("vast://", env={**env, "VAST_DB_SCHEMA": "sch"}).schema == "sch"
    assert VastConfig.resolve("vast://b", env=env, endpoint="https://e").url == "vast://b/exr_metadata"


@pytest.mark.parametrize("env, match", [
    ({}, "VAST_DB_ENDPOINT not configured"),
    ({"VAST_DB_ENDPOINT": "https://x"}, "VAST_DB_ACCESS_KEY not configured"),
    ({"VAST_DB_ENDPOINT": "https://x", "VAST_DB_ACCESS_KEY": "a"}, "VAST_DB_SECRET_KEY not configured"),
    ({"VAST_DB_ENDPOINT": "vast.example.com", "VAST_DB_ACCESS_KEY": "a", "VAST_DB_SECRET_KEY": "b"},
     "https://vast.example.com"),
    ({"VAST_DB_ENDPOINT": "http://vast.example.com", "VAST_DB_ACCESS_KEY": "a", "VAST_DB_SECRET_KEY": "b"},
     "--allow-insecure"),
])
def test_config_errors(env, match):
    with pytest.raises(CatalogError, match=match):
        VastConfig.resolve("vast://bucket/schema", env=env)


def test_config_refuses_bad_urls_and_masks_secrets():
    env = {"VAST_DB_ENDPOINT": "https://x", "VAST_DB_ACCESS_KEY": ACCESS, "VAST_DB_SECRET_KEY": SECRET}
    for url, match in (("vast://AK:SK@bucket/s", "credentials"), ("vast://b/s/extra", "too many"),
                       ("vast:///s", "no VAST bucket")):
        with pytest.raises(CatalogError, match=match) as e:
            VastConfig.resolve(url, env=env)
        assert "SK" not in str(e.value).replace("SK@", "")
    c = VastConfig.resolve("vast://b/s", env=env)
    assert SECRET not in repr(c) and ACCESS not in repr(c)
    assert mask(SECRET) == "s3****" and mask("short") == "****" and mask(None) == "<unset>"
    assert c.scrub(f"bad {SECRET} and {ACCESS}") == "bad s3**** and AK****"
    assert VastConfig.resolve("vast://b/s", env={**env, "VAST_DB_ENDPOINT": "http://h"}, allow_insecure=True)


# -- request shaping -----------------------------------------------------------------


def test_key_chunks_cover_keys_under_the_cap():
    keys = pa.array([f"/shows/very/long/path/{'x' * (i % 200)}/{i:07d}.exr" for i in range(60_000)])
    chunks = list(key_chunks(keys))
    assert len(chunks) > 1
    assert pa.concat_arrays(chunks).equals(keys)
    for c in chunks:
        assert pc.sum(pc.binary_length(c)).as_py() + 128 * len(c) <= MAX_REQUEST // 2 + 200 + 128


def test_insert_slices_fill_requests():
    batch = make_batch(paths_of(3000), n_parts=3, n_channels=8, n_attrs=10)
    for table in (batch.channels, batch.attributes, batch.files):
        slices = list(insert_slices(table))
        assert sum(s.num_rows for s in slices) == table.num_rows
        sizes = [len(_ipc(s)) for s in slices]
        assert max(sizes) <= INSERT_SLICE
        minimum = math.ceil(sum(sizes) / INSERT_SLICE)
        assert len(slices) <= max(1, math.ceil(1.2 * minimum)), (len(slices), minimum)


def _ipc(rb: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rb.schema) as w:
        w.write_batch(rb)
    return sink.getvalue().to_pybytes()


# -- the boundary: requests, transactions, errors ------------------------------------------


def test_batch_is_one_transaction_and_requests_stay_under_the_cap(server):
    with open_vast(server) as cat:
        batch = make_batch(paths_of(4000), n_parts=3, n_channels=10, n_attrs=12)
        server.clear_requests()
        stats = cat.upsert(batch)
        reqs = list(server.requests)
        assert stats.inserted == 4000
        begins = [r for r in reqs if r.command == "transaction" and r.method == "POST"]
        commits = [r for r in reqs if r.command == "transaction" and r.method == "PUT"]
        assert (len(begins), len(commits)) == (1, 1)
        assert max(r.body_bytes for r in reqs) <= MAX_REQUEST
        inserts = [r for r in reqs if r.command == "rows" and r.method == "POST"]
        assert all(r.txid == begins[0].txid for r in inserts if r.txid is not None)
        # Inserts per table are within 1.2x of the minimum the data needs (sum of bytes / 4.5 MiB).
        by_table: dict[str, list[int]] = {}
        for r in inserts:
            by_table.setdefault(r.path.rstrip("/").rsplit("/", 1)[-1], []).append(r.body_bytes)
        for name, sizes in by_table.items():
            assert len(sizes) <= max(1, math.ceil(1.2 * math.ceil(sum(sizes) / INSERT_SLICE))), name
        assert set(by_table) == {"files", "parts", "channels", "attributes"}
        assert sum(len(s) for s in by_table.values()) < 4000 / 100  # requests per batch, never per file
        # The second run of the same files: lookups + audit updates, no inserts, still one transaction.
        server.clear_requests()
        assert cat.upsert(make_batch(paths_of(4000), n_parts=3, n_channels=10, n_attrs=12)).unchanged == 4000
        again = list(server.requests)
        assert not [r for r in again if r.command == "rows" and r.method == "POST"]
        assert len([r for r in again if r.command == "transaction" and r.method == "POST"]) == 1
        assert max(r.body_bytes for r in again) <= MAX_REQUEST


def test_rollback_when_an_insert_fails_midway(server):
    with open_vast(server) as cat:
        a, b, c = paths_of(3)
        cat.upsert(make_batch([a, b]))
        before = {t: cat.scan(t).sort_by([(k, "ascending") for k in ROW_KEYS[t]]) for t in ROW_KEYS}
        changed = make_batch([a, b, c], ["h2", "h1", "h1"], now=T0 + dt.timedelta(hours=1))
        # The 3rd row insert of this upsert (files, parts, then channels) fails after the
        # audit update and the delete of a's old rows have been sent.
        server.fail_next(status=500, code="InternalError", count=1, method="POST", command="rows", skip=2)
        with pytest.raises(CatalogError, match="500"):
            cat.upsert(changed)
        after = {t: cat.scan(t).sort_by([(k, "ascending") for k in ROW_KEYS[t]]) for t in ROW_KEYS}
        for t in before:
            assert after[t].equals(before[t]), t
        assert cat.upsert(changed).replaced == 1


@pytest.mark.parametrize("status, code, match", [
    (403, "AccessDenied", "403 Forbidden"),
    (401, "Unauthorized", "401 Unauthorized"),
    (409, "Conflict", "409"),
    (503, "SlowDown", "503 SlowDown"),
    (507, "InsufficientCapacity", "507"),
    (400, "MaxMessageLengthExceeded", "request too large"),
    (400, "TabularMismatchColumnType", "type mismatch"),
])
def test_error_statuses_map_to_clear_messages(server, status, code, match):
    with open_vast(server, max_tries=2) as cat:
        server.fail_next(status=status, code=code, count=10, command="rows")
        try:
            with pytest.raises(CatalogError, match=match) as e:
                cat.upsert(make_batch(paths_of(2)))
        finally:
            server.clear_faults()
        assert SECRET not in str(e.value) and ACCESS not in str(e.value)
        assert cat.count("files") == 0


def test_slowdown_is_retried_with_backoff(server):
    with open_vast(server, max_tries=4) as cat:
        server.fail_next(status=503, code="SlowDown", count=2, method="GET")
        assert cat.count("files") == 0  # succeeded on the third try


def test_wrong_credentials_and_missing_bucket(server):
    with pytest.raises(CatalogError, match="403") as e:
        open_vast(server, access_key="AKIAWRONGWRONGWRONG")
    assert "AK****" in str(e.value) and "AKIAWRONG" not in str(e.value)
    with pytest.raises(CatalogError, match="bucket 'nope' does not exist.*Database-enabled"):
        VastCatalog("vast://nope/s", endpoint=server.endpoint, access_key=ACCESS, secret_key=SECRET,
                    allow_insecure=True, timeout=5)
    with pytest.raises(CatalogError, match="schema 'never_made' does not exist"):
        open_vast(server, "never_made", read_only=True).lookup(["/x.exr"])


def test_missing_table_is_reported(server):
    schema = "t_" + uuid.uuid4().hex[:12]
    with server.connect().transaction() as tx:
        tx.bucket(BUCKET).create_schema(schema)  # a schema nobody crawled into
    with open_vast(server, schema, read_only=True) as cat:
        with pytest.raises(CatalogError, match="a catalog table is missing.*crawl into it once"):
            cat.lookup(["/a.exr"])


def test_unreachable_and_timeout(server):
    with pytest.raises(CatalogError, match="cannot reach VAST at http://127.0.0.1:9"):
        VastCatalog(f"vast://{BUCKET}/s", endpoint="http://127.0.0.1:9", access_key=ACCESS, secret_key=SECRET,
                    allow_insecure=True, timeout=2, max_tries=1)
    with open_vast(server, timeout=0.5, max_tries=1) as cat:
        server.delay_next(2.0, count=1, command="data")
        with pytest.raises(CatalogError, match="did not answer within 0.5 s"):
            cat.lookup(["/a.exr"])


def test_type_mismatch_is_reported(server):
    import vastdb

    schema = "t_" + uuid.uuid4().hex[:12]
    s = vastdb.connect(endpoint=server.endpoint, access=ACCESS, secret=SECRET)
    with s.transaction() as tx:
        sch = tx.bucket(BUCKET).create_schema(schema)
        wrong = pa.schema([f if f.name != "size_bytes" else pa.field("size_bytes", pa.string()) for f in TABLES["files"]])
        sch.create_table("files", wrong)
    with pytest.raises(CatalogError, match="type mismatch.*size_bytes"):
        open_vast(server, schema)


def test_concurrent_first_runs_and_disjoint_writers(server):
    schema = "t_" + uuid.uuid4().hex[:12]
    errors: list[BaseException] = []
    roots = [f"/show{k}/seq/shot" for k in range(4)]

    def run(root: str) -> None:
        try:
            with open_vast(server, schema) as cat:
                for i in range(0, 600, 200):
                    cat.upsert(make_batch(paths_of(600, root)[i:i + 200], n_parts=1, n_channels=2, n_attrs=2))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(r,)) for r in roots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with open_vast(server, schema) as cat:
        paths = cat.scan("files", ["file_path_normalized"])["file_path_normalized"]
        assert len(paths) == 2400 and pc.count_distinct(paths).as_py() == 2400
        assert cat.count("channels") == 2400 * 2
        assert len(server.table_rows(BUCKET, schema, "catalog_meta")) == 1 or cat.count("catalog_meta") >= 1


def test_query_is_not_supported_and_open_catalog_routes(server):
    with open_vast(server) as cat:
        with pytest.raises(CatalogError, match="only on the embedded DuckDB"):
            cat.query("SELECT 1")
    env = vast_env(server)
    os.environ.update({k: env[k] for k in ("VAST_DB_ENDPOINT", "VAST_DB_ACCESS_KEY", "VAST_DB_SECRET_KEY")})
    try:
        with open_catalog(f"vast://{BUCKET}/t_{uuid.uuid4().hex[:8]}", allow_insecure=True) as cat:
            assert isinstance(cat, VastCatalog) and cat.count("files") == 0
    finally:
        for k in ("VAST_DB_ENDPOINT", "VAST_DB_ACCESS_KEY", "VAST_DB_SECRET_KEY"):
            os.environ.pop(k, None)


def test_duplicate_rows_from_a_race_are_healed(server):
    with open_vast(server) as cat:
        batch = make_batch(paths_of(3))
        # Simulate two racing writers that both inserted the same new file.
        import vastdb

        s = vastdb.connect(endpoint=server.endpoint, access=ACCESS, secret=SECRET)
        with s.transaction() as tx:
            t = tx.bucket(BUCKET).schema(cat.config.schema).table("files")
            t.insert(batch.files.slice(0, 1))
            t.insert(batch.files.slice(0, 1))
        assert cat.upsert(make_batch(paths_of(3), "h2")).replaced == 1
        paths = cat.scan("files", ["file_path_normalized"])["file_path_normalized"]
        assert sorted(paths.to_pylist()) == paths_of(3)


# -- through the CLI ------------------------------------------------------------------


def _cli(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exr_inspector.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from gen_tree import generate

    root = tmp_path_factory.mktemp("tree")
    generate(root, files=120, templates=6, seed=3, damaged=4)
    return root


def test_cli_crawl_similar_and_errors_into_vast(server, small_tree, tmp_path):
    url = f"vast://{BUCKET}/t_{uuid.uuid4().hex[:10]}"
    env = vast_env(server)
    r = _cli(["crawl", str(small_tree), "--catalog", url, "--allow-insecure", "--workers", "2", "--json"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["files"], summary["errors"], summary["inserted"]) == (120, 4, 120)
    again = _cli(["crawl", str(small_tree), "--catalog", url, "--allow-insecure", "--json"], env, tmp_path)
    assert json.loads(again.stdout)["skipped"] == 120  # incremental: nothing opened again
    with open_vast(server, url.rsplit("/", 1)[1], read_only=True) as cat:
        assert cat.count("files") == 120 and cat.count("crawl_errors") == 8
        runs = cat.scan("crawl_runs")
        assert runs["status"].to_pylist() == ["completed", "completed"]
        one = cat.scan("files", ["file_path"])["file_path"][0].as_py()
    sim = _cli(["similar", one, "--catalog", url, "--allow-insecure", "-k", "3", "--json"], env, tmp_path)
    assert sim.returncode == 0, sim.stderr
    assert len(sim.stdout.splitlines()) == 3
    q = _cli(["query", "SELECT 1", "--catalog", url, "--allow-insecure"], env, tmp_path)
    assert q.returncode == 2 and "only on the embedded DuckDB" in q.stderr
    for out in (r, again, sim, q):
        assert SECRET not in out.stdout + out.stderr and ACCESS not in out.stdout + out.stderr
    assert SECRET not in str(runs.to_pylist()) and ACCESS not in str(runs.to_pylist())


@pytest.mark.parametrize("env_over, args, match", [
    ({"VAST_DB_ENDPOINT": ""}, [], "VAST_DB_ENDPOINT not configured"),
    ({}, ["--allow-insecure", "--vast-endpoint", "127.0.0.1:1"], "is not a URL"),
    ({}, [], "--allow-insecure"),
    ({"VAST_DB_SECRET_KEY": "wrong-secret-value"}, ["--allow-insecure"], "403"),
])
def test_cli_catalog_errors_exit_3(server, small_tree, tmp_path, env_over, args, match):
    env = vast_env(server, **env_over)
    r = _cli(["crawl", str(small_tree), "--catalog", f"vast://{BUCKET}/cli_err", *args], env, tmp_path)
    assert r.returncode == 3, r.stderr
    assert match in r.stderr
    assert SECRET not in r.stderr + r.stdout and "wrong-secret-value" not in r.stderr + r.stdout


def test_parallel_writers_lose_nothing(server, small_tree):
    from exr_inspector.crawl.pipeline import crawl

    with open_vast(server, writers=3) as cat:
        summary = crawl([str(small_tree)], cat, workers=0, chunk_size=16)
        assert summary.files == 120 and summary.status == "completed"
        paths = cat.scan("files", ["file_path_normalized"])["file_path_normalized"]
        assert len(paths) == 120 and pc.count_distinct(paths).as_py() == 120
        assert cat.count("parts") == summary.parts and cat.count("channels") == summary.channels


# -- DataEngine handler -----------------------------------------------------------------


def test_dataengine_handler_writes_and_reports_skipped_persistence(server, small_tree, monkeypatch):
    from exr_inspector import dataengine

    for k in ("VAST_DB_ENDPOINT", "S3_ENDPOINT", "VAST_DB_ACCESS_KEY", "VAST_DB_SECRET_KEY"):
        monkeypatch.delenv(k, raising=False)
    files = sorted(str(p) for p in small_tree.rglob("*.exr"))[:3]
    dataengine.init({})
    # No endpoint anywhere: the files are parsed, and the result says nothing was written and why.
    out = dataengine.handler({}, {"paths": files})
    assert (out["files"], out["persistence"]) == (3, "skipped")
    assert "VAST_DB_ENDPOINT not configured" in out["reason"]
    schema = f"de_{uuid.uuid4().hex[:8]}"
    ctx = {"vastdb_endpoint": server.endpoint, "vastdb_access_key": ACCESS, "vastdb_secret_key": SECRET,
           "bucket": BUCKET, "schema": schema, "allow_insecure": True}
    out = dataengine.handler(ctx, {"paths": files + [str(small_tree / "nope.exr")]})
    assert (out["persistence"], out["inserted"], out["files"]) == ("written", 3, 3)
    assert [e["code"] for e in out["errors"]] == ["vanished"]  # named by the event, gone when read
    assert dataengine.handler(ctx, {"path": files[0]})["unchanged"] == 1
    bad = dataengine.handler(dict(ctx, vastdb_secret_key="not-the-secret-key"), {"path": files[0]})
    assert bad["persistence"] == "failed" and "403" in bad["reason"] and "not-the-secret-key" not in str(bad)
    with open_vast(server, schema, read_only=True) as cat:
        assert cat.count("files") == 3 and cat.count("crawl_errors") == 1


def test_read_only_refuses_writes(server):
    with open_vast(server) as cat:
        schema = cat.config.schema
    with open_vast(server, schema, read_only=True) as ro:
        assert ro.count("files") == 0
        with pytest.raises(CatalogError, match="read-only"):
            ro.upsert(make_batch(paths_of(1)))
        with pytest.raises(CatalogError, match="read-only"):
            ro.prune(T0)
