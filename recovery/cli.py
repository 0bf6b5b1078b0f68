"""``python -m recovery init|inspect|gc|verify DIR``: tools for a recovery store.

``shmflow recovery ...`` calls :func:`main` too. Errors print as one line on stderr and
exit with status 2; success exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from recovery._env import create_environment
from recovery._store import RecoveryStore
from recovery._verify import verify_store
from recovery.errors import RecoveryError

__all__ = ["main", "render_report"]

#: Exit status of a failed command (as for argparse's usage errors).
EXIT_ERROR = 2


def main(argv: Sequence[str] | None = None, prog: str = "python -m recovery") -> int:
    """Run one recovery command; return the exit status (0 ok, 2 error)."""
    parser = _parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # usage error or --help: argparse already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    try:
        text = args.command(args)
    except (RecoveryError, ValueError, OSError) as error:
        print(f"{prog} {args.name}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(text)
    return 0


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Tools for a shmflow recovery store.")
    commands = parser.add_subparsers(dest="name", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create and initialise a store in DIR")
    init.set_defaults(command=_init)

    inspect = commands.add_parser("inspect", help="show executions, frontiers and snapshots")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.set_defaults(command=_inspect)

    gc = commands.add_parser("gc", help="delete snapshots no resume can need")
    gc.add_argument(
        "--backup-interval-epochs",
        type=_non_negative,
        default=0,
        metavar="N",
        help="also keep what resuming up to N epochs back needs (default 0)",
    )
    gc.set_defaults(command=_gc)

    verify = commands.add_parser(
        "verify",
        help="check every page (without trusting the file to LMDB) and every record",
    )
    verify.set_defaults(command=_verify)

    for command in (init, inspect, gc, verify):
        command.add_argument("db_dir", metavar="DIR", help="the store directory")
    return parser


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _init(args: argparse.Namespace) -> str:
    if create_environment(args.db_dir):
        return f"initialised recovery store at {args.db_dir}"
    return f"recovery store at {args.db_dir} was already initialised; nothing changed"


def _inspect(args: argparse.Namespace) -> str:
    with RecoveryStore.open(args.db_dir) as store:
        report = store.inspect()
    if args.json:
        return json.dumps(report, indent=2, sort_keys=True)
    return render_report(report)


def _gc(args: argparse.Namespace) -> str:
    with RecoveryStore.open(args.db_dir) as store, store.lock_for_execution():
        result = store.gc(backup_epochs=args.backup_interval_epochs)
    if result.horizon < 1:
        return f"gc: nothing to compact yet; {result.remaining_snapshots} snapshots kept"
    built = " (built the store's GC index: one full scan)" if result.method == "build-index" else ""
    return (
        f"gc: compacted up to epoch {result.horizon}: deleted {result.deleted_snapshots} "
        f"snapshots, {result.remaining_snapshots} remain{built}"
    )


def _verify(args: argparse.Namespace) -> str:
    report = verify_store(args.db_dir)  # takes the execution lock itself
    return (
        f"recovery store {args.db_dir} (format {report.format}, "
        f"{_size(report.data_bytes)}): every page and record checked "
        f"({report.executions} executions, {report.snapshots} snapshots), no problem found"
    )


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [list(header)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def _state_steps_line(step_ids: Sequence[str]) -> str:
    """The steps recorded as holding state (a resumed flow must keep those with snapshots)."""
    return f"state steps ({len(step_ids)}): {', '.join(step_ids) if step_ids else 'none'}"


def _index_note(records: int | None) -> str:
    """What the GC index holds (a store of an older format has none yet)."""
    if records is None:
        return " (no GC index yet: the next execution or gc builds it in one scan)"
    return f" ({records} GC index records to visit)"


def render_report(report: dict[str, Any]) -> str:
    """Human-readable text of :meth:`RecoveryStore.inspect`'s report."""
    flow = report["flow_id"]
    lines = [
        f"recovery store {report['path']} (format {report['format']}, "
        f"{_size(report['data_bytes'])} on disk)",
        f"flow: {flow!r} (fingerprint {report['fingerprint']}), {report['key_groups']} key groups "
        f"(key hash {report['key_hash']})"
        if flow is not None
        else "flow: none yet (no execution has begun)",
        _state_steps_line(report["state_steps"]),
        f"GC horizon: epoch {report['gc_horizon']}{_index_note(report['gc_index_records'])}; "
        f"next execution resumes at epoch {report['next_resume_epoch']}",
        "",
        f"executions ({len(report['executions'])}):",
    ]
    rows = [
        (
            execution["execution_id"],
            execution["worker_count"],
            execution["resume_epoch"],
            execution["cluster_frontier"],
            execution["started_at"],
            execution["pid"],
            " ".join(f"w{w}={f}" for w, f in sorted(execution["frontiers"].items())) or "-",
        )
        for execution in report["executions"]
    ]
    header = ("id", "workers", "resume", "cluster frontier", "started (UTC)", "pid", "frontiers")
    lines += _table(header, rows) if rows else ["  none"]
    lines += ["", f"snapshots ({len(report['steps'])} steps):"]
    rows = [
        (
            step_id,
            stats["keys"],
            stats["partitions"],
            stats["snapshots"],
            stats["tombstones"],
            _size(stats["bytes"]),
            f"{stats['oldest_epoch']}..{stats['newest_epoch']}",
        )
        for step_id, stats in sorted(report["steps"].items())
    ]
    header = ("step", "keys", "partitions", "snapshots", "tombstones", "size", "epochs")
    lines += _table(header, rows) if rows else ["  none"]
    return "\n".join(lines)
