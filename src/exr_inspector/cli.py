"""The ``exr-inspector`` command. Each subcommand is a thin wrapper over the library.

Exit codes: 0 success, 1 some input failed, 2 usage error, 3 catalog error.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence

# Before NumPy loads: its BLAS would start a spinning thread per core (5% of a reader's
# time under perf), and nothing here multiplies matrices. An explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Before pyarrow loads: its default pool (mimalloc) keeps freed pages, and a crawl frees
# a chunk's columns every few milliseconds. The C library's allocator returns them: peak
# RSS of a 100,000-file crawl, summed over its processes, 514-516 -> 487-495 MB at the
# same speed (3 interleaved runs each). An explicit setting wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

from . import __version__, inspect  # noqa: E402
from .exr import ExrError  # noqa: E402
from .payload import canonical_json, error_record  # noqa: E402
from .report import render_text  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CATALOG = 0, 1, 2, 3


class Progress:
    """One self-overwriting status line on a TTY; silent otherwise (logs stay clean)."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.enabled = stream.isatty()
        self._last = 0.0

    def __call__(self, s) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.2:
            return
        self._last = now
        rate = s.walked / s.seconds if s.seconds else 0.0
        self.stream.write(f"\r  {s.walked:>10,} found  {s.files:>10,} parsed  {s.skipped:>10,} unchanged  "
                          f"{s.errors:>6,} errors  {rate:>9,.0f} files/s  {s.seconds:7.1f}s ")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 110 + "\r")
            self.stream.flush()


def _catalog_error(e: Exception) -> int:
    print(f"exr-inspector: catalog error: {e}", file=sys.stderr)
    return EXIT_CATALOG


def _cmd_crawl(args: argparse.Namespace) -> int:
    """Crawl roots into the catalog; failed files are recorded, not fatal."""
    from .catalog import is_new
    from .crawl.prefetch import prefetch_walk
    from .crawl.walk import Walker, parse_shard

    for root in args.roots:
        if not os.path.exists(root):
            print(f"exr-inspector: crawl root does not exist: {root}", file=sys.stderr)
            return EXIT_USAGE
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 0:
        print("exr-inspector: --workers must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        shard = parse_shard(args.shard) if args.shard else None
    except ValueError as e:
        print(f"exr-inspector: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.batch_files is not None and args.batch_files < 1:
        print("exr-inspector: --batch-files must be >= 1", file=sys.stderr)
        return EXIT_USAGE
    if args.max_depth is not None and args.max_depth < 0:
        print("exr-inspector: --max-depth must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    extensions = [e.strip() for e in args.include_ext.split(",") if e.strip()]
    if not extensions:
        print("exr-inspector: --include-ext needs at least one extension", file=sys.stderr)
        return EXIT_USAGE
    if args.prefetch and (args.full or is_new(args.catalog)):
        # Every file found will be read: on a cold tree, the storage can fetch the first ones while
        # Python loads pyarrow and DuckDB (~0.3 s). A warm tree stops this after one chunk.
        prefetch_walk(Walker(args.roots, excludes=args.exclude, extensions=extensions, shard=shard,
                             max_depth=args.max_depth, one_file_system=args.one_file_system))
    from .catalog.base import CatalogError
    from .crawl.pipeline import crawl
    from .crawl.pool import ReaderPool

    progress = Progress()
    # The pool forks before the catalog opens: forking after DuckDB starts its threads is unsafe.
    with ReaderPool(workers) as pool:
        try:
            with _open_catalog(args) as catalog:
                summary = crawl(args.roots, catalog, pool=pool, excludes=args.exclude, extensions=extensions,
                                progress=progress, full=args.full, touch=args.touch, shard=shard,
                                max_depth=args.max_depth, one_file_system=args.one_file_system,
                                batch_files=args.batch_files, prefetch=args.prefetch)
        except CatalogError as e:
            progress.done()
            return _catalog_error(e)
        except KeyboardInterrupt:
            progress.done()
            print("exr-inspector: interrupted; committed batches are kept", file=sys.stderr)
            return 130
    progress.done()
    if args.json:
        sys.stdout.buffer.write(canonical_json(summary.to_dict()) + b"\n")
    else:
        print(f"crawled {', '.join(summary.roots)} into {args.catalog}" + (f" (shard {args.shard})" if shard else ""))
        print(f"  files     {summary.walked:,} found: {summary.inserted:,} new, {summary.replaced:,} changed, "
              f"{summary.unchanged + summary.skipped:,} unchanged ({summary.skipped:,} not opened), "
              f"{summary.missing:,} missing, {summary.renamed:,} renamed" +
              (f", {summary.returned:,} back" if summary.returned else ""))
        print(f"  parts     {summary.parts:,}")
        print(f"  channels  {summary.channels:,}")
        print(f"  errors    {summary.errors:,}" + (
            "  (" + ", ".join(f"{k} {v}" for k, v in sorted(summary.error_codes.items())) + ")"
            if summary.error_codes else ""))
        print(f"  time      {summary.seconds:.2f} s, {summary.files_per_s:,.0f} files/s, "
              f"{summary.batches} batch(es), run {summary.run_id}")
    return EXIT_FAILED if args.strict and summary.errors else EXIT_OK


def _cmd_prune(args: argparse.Namespace) -> int:
    """Delete files missing for longer than --missing-for days."""
    import datetime as dt

    from .catalog.base import CatalogError
    from .crawl.walk import normalize

    if args.missing_for < 0:
        print("exr-inspector: --missing-for must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    cutoff = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=args.missing_for)
    prefix = normalize(args.under).rstrip(os.sep) + os.sep if args.under else ""
    try:
        with _open_catalog(args) as catalog:
            pruned = catalog.prune(cutoff, prefix)
    except CatalogError as e:
        return _catalog_error(e)
    if args.json:
        sys.stdout.buffer.write(canonical_json({"pruned": pruned, "missing_before": cutoff.isoformat()}) + b"\n")
    else:
        print(f"pruned {pruned:,} file(s) missing since before {cutoff:%Y-%m-%d %H:%M} UTC")
    return EXIT_OK


def _print_table(table, as_json: bool) -> None:
    rows = table.to_pylist()
    if as_json:
        for row in rows:
            sys.stdout.buffer.write(canonical_json(row) + b"\n")
        return
    cols = table.column_names
    def cell(v) -> str:
        return "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)

    cells = [[cell(r[c]) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _cmd_similar(args: argparse.Namespace) -> int:
    """The files whose headers are most like PATH's (cosine of metadata embeddings)."""
    import pyarrow.compute as pc

    from .catalog.base import CatalogError
    from .crawl.walk import normalize

    path = normalize(args.path)
    try:
        with _open_catalog(args) as catalog:
            vec = catalog.get_embedding(path)
            if vec is None:
                print(f"exr-inspector: {args.path} is not in the catalog {args.catalog}", file=sys.stderr)
                return EXIT_FAILED
            result = catalog.search(vec, k=args.k + 1)  # the file itself comes back too
    except CatalogError as e:
        return _catalog_error(e)
    _print_table(result.filter(pc.not_equal(result["file_path"], path)).slice(0, args.k), args.json)
    return EXIT_OK


def _cmd_query(args: argparse.Namespace) -> int:
    """Run SQL against the embedded catalog."""
    from .catalog.base import CatalogError, NotSupported

    try:
        with _open_catalog(args, read_only=True) as catalog:
            table = catalog.query(args.sql)
    except NotSupported as e:
        print(f"exr-inspector: {e}", file=sys.stderr)
        return EXIT_USAGE
    except CatalogError as e:
        return _catalog_error(e)
    _print_table(table, args.json)
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    """Print each file's header; keep going past failures and report them."""
    failed = 0
    out = sys.stdout.buffer
    for i, path in enumerate(args.paths):
        try:
            payload = inspect(path)
        except ExrError as e:
            failed += 1
            print(f"exr-inspector: error [{e.code}] {e}", file=sys.stderr)
            if args.json:
                out.write(canonical_json(error_record(path, e)) + b"\n")
            continue
        if args.json:
            out.write(canonical_json(payload) + b"\n")
        else:
            if i:
                out.write(b"\n")
            out.write(render_text(payload).encode("utf-8", "backslashreplace") + b"\n")
    out.flush()
    return EXIT_FAILED if failed else EXIT_OK


def _catalog_option(p: argparse.ArgumentParser) -> None:
    from .catalog import DEFAULT_CATALOG

    p.add_argument("--catalog", default=DEFAULT_CATALOG, metavar="PATH|vast://BUCKET/SCHEMA",
                   help=f"a DuckDB file (default ./{DEFAULT_CATALOG}) or a VAST DataBase schema")
    p.add_argument("--vast-endpoint", metavar="URL", help="VAST VIP URL (default: $VAST_DB_ENDPOINT)")
    p.add_argument("--allow-insecure", action="store_true", help="allow a plain http:// VAST endpoint")


def _open_catalog(args: argparse.Namespace, **kw):
    """The catalog named by --catalog; VAST settings are passed only to VAST."""
    from .catalog.base import open_catalog

    if args.catalog.startswith("vast://"):
        kw.update(endpoint=args.vast_endpoint, allow_insecure=args.allow_insecure)
    return open_catalog(args.catalog, **kw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exr-inspector",
        description="Read OpenEXR headers (every part, channel and attribute, never the pixels).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'exr-inspector COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"exr-inspector {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "inspect",
        help="print the header of one or more EXR files",
        description="Print every part, channel (grouped by layer) and attribute of each file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  exr-inspector inspect shot/beauty.1001.exr
  exr-inspector inspect --json renders/*.exr > headers.jsonl
  exr-inspector inspect --json a.exr | jq '.channels[].name'

exit codes: 0 every file parsed, 1 any file failed (error on stderr, and with
--json an {"path", "error": {"code", "message", "offset"}} line on stdout), 2 usage.
Set EXR_INSPECTOR_NATIVE=0 to force the pure-Python parser.""",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="EXR files to read")
    p.add_argument("--json", action="store_true", help="one JSON object per file per line (JSON Lines)")
    p.set_defaults(func=_cmd_inspect)

    from .catalog import DEFAULT_CATALOG

    p = sub.add_parser(
        "crawl",
        help="crawl directory trees into the catalog",
        description="Walk ROOTs, parse every EXR header in a pool of reader processes, and upsert the "
                    "results into the catalog in large transactions.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"""examples:
  exr-inspector crawl /shows/kestrel
  exr-inspector crawl /shows --catalog shows.duckdb --workers 8 --exclude '*/tmp/*' --json
  exr-inspector crawl /shows --catalog vast://exr-data/exr_metadata --shard 3/16
  exr-inspector crawl /shows --full --include-ext .exr,.sxr --max-depth 8

Re-crawls are incremental: files whose size and mtime match the catalog are not
opened; files gone since are marked missing (see `prune`). Files that cannot be read
or parsed are recorded in the crawl_errors table and the crawl goes on. The catalog
defaults to ./{DEFAULT_CATALOG}; VAST settings come from VAST_DB_* variables.
exit codes: 0 crawl completed (even if some files failed), 1 with --strict when any
file failed, 2 usage, 3 the catalog cannot be opened or written.""",
    )
    p.add_argument("roots", nargs="+", metavar="ROOT", help="directories (or files) to crawl")
    _catalog_option(p)
    p.add_argument("--workers", type=int, default=None, help="reader processes (default: CPU count; 0: in-process)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="skip paths (or names) matching GLOB; repeatable")
    p.add_argument("--include-ext", default=".exr", metavar="EXTS",
                   help="comma-separated file extensions, any case (default .exr), e.g. .exr,.sxr")
    p.add_argument("--max-depth", type=int, default=None, metavar="N",
                   help="descend at most N directory levels below each root (0: the root's own files)")
    p.add_argument("--one-file-system", action="store_true", help="do not cross into other mounted file systems")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="crawl only shard K of N (0 <= K < N), split by a stable hash of each directory")
    p.add_argument("--full", action="store_true", help="parse every file, even those unchanged since the last crawl")
    p.add_argument("--touch", action="store_true",
                   help="update last_inspected of unchanged files too (default: a no-op re-crawl writes nothing)")
    p.add_argument("--batch-files", type=int, default=None, metavar="N",
                   help="files per catalog transaction (default: 16,384 on DuckDB, one row group; 10,000 on "
                        "VAST; smaller uses less memory, and is slower on DuckDB)")
    p.add_argument("--no-prefetch", dest="prefetch", action="store_false",
                   help="never ask the storage to read headers ahead of the readers (by default it is asked "
                        "only for files not already in the page cache)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 if any file failed")
    p.set_defaults(func=_cmd_crawl)

    p = sub.add_parser(
        "prune",
        help="delete files that have been missing for a while",
        description="Delete, in one transaction, the rows of every file (and its parts, channels and "
                    "attributes) whose missing_since is more than DAYS days ago.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  exr-inspector prune --missing-for 30
  exr-inspector prune --missing-for 7 --under /shows/kestrel --catalog vast://exr-data/exr_metadata --json

A crawl marks files it no longer finds with missing_since; they stay in the catalog
until pruned. exit codes: 0 done, 2 usage, 3 the catalog cannot be written.""",
    )
    p.add_argument("--missing-for", type=float, required=True, metavar="DAYS",
                   help="prune files missing for more than DAYS days (0: all missing files)")
    p.add_argument("--under", default=None, metavar="DIR", help="only files under this directory")
    _catalog_option(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_prune)

    p = sub.add_parser(
        "similar",
        help="files whose headers are most similar to a file's",
        description="Nearest neighbours of a catalogued file by its metadata embedding (cosine).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  exr-inspector similar /shows/kes/beauty.1001.exr -k 5
  exr-inspector similar shot.exr --catalog shows.duckdb --json""",
    )
    p.add_argument("path", metavar="PATH", help="a file already in the catalog")
    p.add_argument("-k", type=int, default=5, help="how many neighbours (default 5)")
    _catalog_option(p)
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    p.set_defaults(func=_cmd_similar)

    p = sub.add_parser(
        "query",
        help="run SQL on the embedded catalog",
        description="Run a read-only SQL query on the DuckDB catalog (tables: files, parts, channels, "
                    "attributes, crawl_errors, crawl_runs).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  exr-inspector query "SELECT compression, count(*) n FROM parts GROUP BY 1 ORDER BY n DESC"
  exr-inspector query "SELECT file_path FROM files WHERE is_deep" --json""",
    )
    p.add_argument("sql", metavar="SQL")
    _catalog_option(p)
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    p.set_defaults(func=_cmd_query)
    return parser


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # A scheduler stops jobs with SIGTERM (Slurm at its time limit): treat it as Ctrl-C, so the
    # current batch rolls back and the run is recorded as interrupted.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. piped into `head`
        return EXIT_OK
    except KeyboardInterrupt:
        print("exr-inspector: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The console entry point: ``main()``, then a prompt exit.

    Every catalog and reader pool is closed by the time ``main()`` returns; the interpreter's
    own teardown of NumPy, pyarrow, numba and DuckDB would add ~0.2 s to every command
    (a fifth of a small crawl's start-up), so once the output is flushed the process ends.
    """
    try:
        code = main()
    except SystemExit as e:  # argparse's usage errors and --help
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


if __name__ == "__main__":
    run()
