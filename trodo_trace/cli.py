"""The ``trodo-trace`` command: inspect runs, spans and events in the local store.

Only the standard library is imported at module level; the store (and with it the
OpenTelemetry SDK) is loaded when a command actually runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import sqlite3
import sys
from typing import TYPE_CHECKING, Any

from trodo_trace._internal.display.render import CONTROL_CHARS, terminal_safe

if TYPE_CHECKING:
    from trodo_trace._internal.store.local import LocalStore

PROG = "trodo-trace"


class CommandError(Exception):
    """A user-facing failure: printed as one line on stderr, exit code 1."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Inspect traced runs in the local store.")
    parser.add_argument(
        "--store",
        metavar="PATH",
        default=None,
        help="local store file (default: $TRODO_STORE or ./.trodo/trodo.db)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    runs = sub.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--user", help="only runs of this distinct id")
    runs.add_argument("--conversation", help="only runs of this conversation id")
    runs.add_argument("--status", choices=("ok", "error"), help="only runs with this status")
    runs.add_argument("--name", help="only runs with exactly this name")
    runs.add_argument("--limit", type=_positive_int, default=20, help="at most N runs (default 20)")
    runs.add_argument("--json", action="store_true", help="print a JSON list")

    show = sub.add_parser("show", help="show one run as a span tree")
    show.add_argument("run_id", metavar="RUN_ID", help="run id, or a unique prefix of 6+ characters")
    show.add_argument("--json", action="store_true", help="print run, spans and sub-runs as JSON")

    conv = sub.add_parser("conversation", help="list the runs of a conversation, oldest first")
    conv.add_argument("conversation_id", metavar="ID")
    conv.add_argument("--json", action="store_true", help="print a JSON list")

    events = sub.add_parser("events", help="list stored events, newest first")
    events.add_argument("--user", help="only events of this distinct id")
    events.add_argument("--name", help="only events with this name")
    events.add_argument("--limit", type=_positive_int, default=100, help="at most N events (default 100)")
    events.add_argument("--json", action="store_true", help="print a JSON list")

    sub.add_parser("demo", help="write a demo run to the local store")
    sub.add_parser("status", help="show the state of the local store and spool")
    _add_ui_parser(sub)
    return parser


def _echo(text: str, file: Any = None) -> None:
    """Print human-readable output with control characters stripped."""
    print(terminal_safe(text), file=file)


def _print_json(value: Any) -> None:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    # JSON escapes C0 controls itself; C1 controls (a CSI is one byte there) are escaped here.
    print(CONTROL_CHARS.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def _open_store(path: pathlib.Path) -> LocalStore:
    """Open an existing store for reading; never creates one."""
    from trodo_trace._internal.store.local import LocalStore

    if not path.exists():
        raise CommandError(f"no local store at {path} (run something traced first, or set TRODO_STORE)")
    if not path.is_file():
        raise CommandError(f"local store {path} is not a file")
    store = LocalStore(path, create=False)
    try:
        store.open()
    except OSError as exc:  # StoreUnavailable is an OSError
        store.close()
        raise CommandError(str(exc)) from None
    return store


def _cmd_runs(store: LocalStore, args: argparse.Namespace) -> int:
    from trodo_trace._internal.display.render import format_runs_table

    runs = store.list_runs(
        user=args.user, conversation=args.conversation, status=args.status, name=args.name, limit=args.limit
    )
    if args.json:
        _print_json(runs)
    elif runs:
        _echo(format_runs_table(runs))
    else:
        _echo("No runs found.")
    return 0


def _cmd_show(store: LocalStore, args: argparse.Namespace) -> int:
    from trodo_trace._internal.display.render import format_run_tree

    matches = store.resolve_run_ids(args.run_id)
    if len(matches) > 1:
        shown = ", ".join(matches[:5])
        raise CommandError(f"run id prefix {args.run_id} is ambiguous in {store.path} ({shown})")
    run = store.get_run(matches[0]) if matches else None
    if run is None:
        raise CommandError(f"no run {args.run_id} in {store.path}")
    spans = store.get_spans(run["run_id"])
    subs = store.sub_runs(run["run_id"])
    if args.json:
        _print_json({"run": run, "spans": spans, "sub_runs": subs})
        return 0
    parent = store.get_run(run["parent_run_id"]) if run.get("parent_run_id") else None
    _echo(format_run_tree(run, spans, subs, parent))
    _echo_feedback(store.path, run["run_id"])
    return 0


def _echo_feedback(path: pathlib.Path, run_id: str) -> None:
    """The run's feedback (``trodo.feedback``), one line each, under its tree."""
    from trodo_trace._internal.display.render import format_time
    from trodo_trace._internal.store.feedback import read_for_run

    for item in read_for_run(path, run_id):
        fields = [f"{key} {item[key]}" for key in ("score", "label") if item[key] is not None]
        if item["distinct_id"]:
            fields.append(f"by {item['distinct_id']}")
        comment = f": {item['comment']}" if item["comment"] else ""
        _echo(f"feedback {item['name']} ({', '.join(fields) or '-'}) {format_time(item['ts_ns'])}{comment}")


def _cmd_conversation(store: LocalStore, args: argparse.Namespace) -> int:
    from trodo_trace._internal.display.render import format_runs_table

    runs = store.conversation_runs(args.conversation_id)
    if args.json:
        _print_json(runs)
    elif runs:
        _echo(format_runs_table(runs))
    else:
        _echo(f"No runs in conversation {args.conversation_id}.")
    return 0


def _format_events(events: list[dict[str, Any]]) -> str:
    from trodo_trace._internal.display.render import format_time

    headers = ("TIME (UTC)", "NAME", "USER", "CATEGORY", "RUN ID", "PROPERTIES")
    rows = [headers]
    for event in events:
        props = event.get("properties")
        props_text = json.dumps(props, ensure_ascii=False, default=str) if props else "-"
        if len(props_text) > 60:
            props_text = props_text[:59] + "…"
        rows.append(
            (
                format_time(event.get("ts_ns")),
                str(event.get("name") or "-"),
                str(event.get("distinct_id") or "-"),
                str(event.get("category") or "-"),
                str(event.get("run_id") or "-")[:12],
                props_text,
            )
        )
    widths = [max(len(row[col]) for row in rows) for col in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _cmd_events(store: LocalStore, args: argparse.Namespace) -> int:
    events = store.list_events(user=args.user, name=args.name, limit=args.limit)
    if args.json:
        _print_json(events)
    elif events:
        _echo(_format_events(events))
    else:
        _echo("No events found.")
    return 0


def _cmd_external(command: str, module_name: str, store_path: pathlib.Path) -> int:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"{PROG}: the '{command}' command is not available in this installation", file=sys.stderr)
            return 2
        raise
    return int(module.main(store_path))


_READ_COMMANDS = {
    "runs": _cmd_runs,
    "show": _cmd_show,
    "conversation": _cmd_conversation,
    "events": _cmd_events,
}
_EXTERNAL_COMMANDS = {
    "demo": "trodo_trace._internal.demo",
    "status": "trodo_trace._internal.export.spool_status",
}


def _store_path(args: argparse.Namespace) -> pathlib.Path:
    if args.store:
        return pathlib.Path(args.store).expanduser()
    from trodo_trace._internal.config import default_store_path

    return default_store_path()


# -- trodo-trace ui ------------------------------------------------------------------------------
def _add_ui_parser(sub: Any) -> None:
    ui = sub.add_parser("ui", help="serve the local dashboard over the store (http://127.0.0.1:6007)")
    ui.add_argument("--store", metavar="PATH", default=argparse.SUPPRESS, help="local store file")
    ui.add_argument("--port", type=int, default=6007, help="port (default 6007; 0 picks a free one)")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback)")
    ui.add_argument("--open", action="store_true", help="open the dashboard in the default web browser")


def _cmd_ui(args: argparse.Namespace, path: pathlib.Path) -> int:
    try:
        from trodo_trace.ui.server import serve
    except ModuleNotFoundError as exc:
        raise CommandError(f"the dashboard needs {exc.name}: pip install 'trodo-trace[ui]'") from None
    if not path.is_file():
        raise CommandError(f"no local store at {path} (run something traced first, or set TRODO_STORE)")
    return serve(path, host=args.host, port=args.port, open_browser=args.open)


def _run(args: argparse.Namespace) -> int:
    path = _store_path(args)
    if args.command == "ui":
        return _cmd_ui(args, path)
    if args.command in _EXTERNAL_COMMANDS:
        return _cmd_external(args.command, _EXTERNAL_COMMANDS[args.command], path)
    store = _open_store(path)
    try:
        return _READ_COMMANDS[args.command](store, args)
    except sqlite3.Error as exc:
        raise CommandError(f"cannot read local store {path}: {exc}") from None
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``trodo-trace`` command; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return _run(args)
    except CommandError as exc:
        _echo(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # Output piped into a command that stopped reading (e.g. ``| head``).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
