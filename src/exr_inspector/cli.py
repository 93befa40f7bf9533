"""The ``exr-inspector`` command. Each subcommand is a thin wrapper over the library.

Exit codes: 0 success, 1 some input failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__, inspect
from .exr import ExrError
from .payload import canonical_json, error_record
from .report import render_text

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. piped into `head`
        return EXIT_OK
    except KeyboardInterrupt:
        print("exr-inspector: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
