"""The ``trodo-trace`` command: inspect, prune and move the runs, spans and events of the local store.

Only the standard library is imported at module level; the store (and with it the
OpenTelemetry SDK) is loaded when a command actually runs.

Exit status: 0 done, 1 nothing found (no such run, an ambiguous prefix, a push that did not
finish), 2 bad input (an unknown option, a store that cannot be read or is not understood).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import logging
import os
import pathlib
import re
import sqlite3
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from trodo_trace._internal.display.render import CONTROL_CHARS, terminal_safe

if TYPE_CHECKING:
    from trodo_trace._internal.store.local import LocalStore

PROG = "trodo-trace"
STORE_DIR = ".trodo"
STORE_FILE = "trodo.db"


class CommandError(Exception):
    """A user-facing failure: printed as one line on stderr, exit ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """Errors as one line (``trodo-trace: error: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _byte_size(text: str) -> int:
    """``1000000``, ``500MB``, ``2GiB``..."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size: {text!r} (e.g. 500MB, 2GiB)")
    unit = (match.group(2) or "").lower().rstrip("b")
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
    scale.update({"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40})
    if unit not in scale:
        raise argparse.ArgumentTypeError(f"invalid size unit: {text!r}")
    return int(float(match.group(1)) * scale[unit])


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _moment(text: str) -> int:
    """A time as UTC nanoseconds: an ISO date or date-time (UTC unless it has an offset), or an age
    before now (``30m``, ``12h``, ``7d``, ``2w``)."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        seconds = float(relative.group(1)) * _SECONDS[relative.group(2)]
        return int((_dt.datetime.now(_dt.timezone.utc).timestamp() - seconds) * 1e9)
    try:
        moment = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time: {text!r} (use 2026-11-01, 2026-11-01T12:00, or an age like 7d / 12h)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return max(-(2**63), min(int(moment.timestamp() * 1e9), 2**63 - 1))  # SQLite's integers


def _add_listing(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="print a JSON list")
    group.add_argument("--jsonl", action="store_true", help="print one JSON object per line")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Inspect, prune and move traced runs in the local store.")
    parser.add_argument(
        "--store",
        metavar="PATH",
        default=None,
        help="local store file (default: $TRODO_STORE, else .trodo/trodo.db in the nearest directory"
        " upwards that has a .trodo/, else ./.trodo/trodo.db)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    runs = sub.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--user", help="only runs of this distinct id")
    runs.add_argument("--conversation", help="only runs of this conversation id")
    runs.add_argument("--status", choices=("ok", "error"), help="only runs with this status")
    runs.add_argument("--name", help="only runs with exactly this name")
    runs.add_argument("--model", help="only runs with a call to this model (requested or answering)")
    runs.add_argument("--since", type=_moment, metavar="TIME", help="only runs started at or after TIME")
    runs.add_argument("--until", type=_moment, metavar="TIME", help="only runs started before TIME")
    runs.add_argument("--limit", type=_positive_int, default=20, help="at most N runs (default 20)")
    _add_listing(runs)

    show = sub.add_parser("show", help="show one run as a span tree")
    show.add_argument("run_id", metavar="RUN_ID", help="run id, or a unique prefix of 6+ characters")
    show.add_argument("--content", action="store_true", help="print each span's input and output under it")
    show.add_argument("--json", action="store_true", help="print run, spans and sub-runs as JSON")

    conv = sub.add_parser(
        "conversation", help="list the turns of a conversation, sub-runs under their parent"
    )
    conv.add_argument("conversation_id", metavar="ID")
    _add_listing(conv)

    events = sub.add_parser("events", help="list stored events, newest first")
    events.add_argument("--user", help="only events of this distinct id")
    events.add_argument("--name", help="only events with this name")
    events.add_argument("--limit", type=_positive_int, default=100, help="at most N events (default 100)")
    _add_listing(events)

    prune = sub.add_parser("prune", help="remove the oldest whole runs (with their spans, events, feedback)")
    prune.add_argument("--before", type=_moment, metavar="TIME", help="remove runs started before TIME")
    prune.add_argument(
        "--max-bytes", type=_byte_size, metavar="N", help="remove the oldest runs until under N"
    )
    sub.add_parser("vacuum", help="rewrite the store file to its smallest size")

    push = sub.add_parser("push", help="send stored runs and events to an OTLP collector")
    push.add_argument(
        "--endpoint", required=True, metavar="URL", help="OTLP base endpoint (http://host:4318)"
    )
    push.add_argument("--protocol", choices=("http/protobuf", "grpc"), default=None)
    push.add_argument("--header", action="append", default=[], metavar="KEY=VALUE", help="request header")
    push.add_argument("--since", type=_moment, metavar="TIME", help="only runs and events since TIME")
    push.add_argument("--run", metavar="RUN_ID", help="only this run (id or unique prefix)")

    export = sub.add_parser("export", help="write stored runs and events to a file")
    export.add_argument("--format", choices=("jsonl", "otlp-json"), default="jsonl")
    export.add_argument("--out", metavar="FILE", help="output file (default: standard output)")
    export.add_argument("--since", type=_moment, metavar="TIME", help="only runs and events since TIME")
    export.add_argument("--run", metavar="RUN_ID", help="only this run (id or unique prefix)")

    sub.add_parser("demo", help="write a demo run to the local store")
    sub.add_parser("status", help="show which store is used, and the state of the store and spool")
    _add_ui_parser(sub)
    return parser


def _echo(text: str, file: Any = None) -> None:
    """Print human-readable output with control characters stripped."""
    print(terminal_safe(text), file=file)


def _json_text(value: Any, indent: int | None = 2) -> str:
    text = json.dumps(value, indent=indent, ensure_ascii=False, default=str)
    # JSON escapes C0 controls itself; C1 controls (a CSI is one byte there) are escaped here.
    return CONTROL_CHARS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _print_listing(items: list[dict[str, Any]], args: argparse.Namespace) -> bool:
    """Print ``items`` as JSON or JSON lines when asked; ``False`` for the human form."""
    if getattr(args, "jsonl", False):
        for item in items:
            print(_json_text(item, indent=None))
        return True
    if getattr(args, "json", False):
        print(_json_text(items))
        return True
    return False


# -- which store --------------------------------------------------------------------------------
def find_store(start: pathlib.Path | None = None) -> pathlib.Path:
    """``$TRODO_STORE``, else ``.trodo/trodo.db`` in the nearest directory from ``start`` upwards that
    has a ``.trodo/`` (as git finds ``.git``; not above a git repository's root), else
    ``./.trodo/trodo.db``."""
    configured = os.environ.get("TRODO_STORE")
    if configured:
        return pathlib.Path(configured).expanduser()
    here = (start or pathlib.Path.cwd()).absolute()
    for directory in (here, *here.parents):
        if (directory / STORE_DIR).is_dir():
            return directory / STORE_DIR / STORE_FILE
        if (directory / ".git").exists():
            break  # never above the repository the command runs in
    return here / STORE_DIR / STORE_FILE


def _store_path(args: argparse.Namespace) -> pathlib.Path:
    if args.store:
        return pathlib.Path(args.store).expanduser()
    return find_store()


def _store_source(args: argparse.Namespace, path: pathlib.Path) -> str:
    if args.store:
        return "from --store"
    if os.environ.get("TRODO_STORE"):
        return "from TRODO_STORE"
    if path.parent.is_dir():
        return f"the nearest {STORE_DIR}/ from {pathlib.Path.cwd()}"
    return f"no {STORE_DIR}/ in {pathlib.Path.cwd()} or above: the default"


def _open_store(path: pathlib.Path) -> LocalStore:
    """Open an existing store; never creates one, never writes to one it does not understand."""
    from trodo_trace._internal.store.local import LocalStore

    if not path.exists():
        raise CommandError(f"no local store at {path} (run something traced first, or set TRODO_STORE)")
    if not path.is_file():
        raise CommandError(f"local store {path} is not a file", 2)
    store = LocalStore(path, create=False)
    try:
        store.open()
    except OSError as exc:  # StoreUnavailable is an OSError
        store.close()
        raise CommandError(str(exc), 2) from None
    return store


def _resolve_run(store: LocalStore, run_id: str) -> str:
    from trodo_trace._internal.store.queries import MIN_PREFIX

    matches = store.resolve_run_ids(run_id)
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        shown = ", ".join(matches[:5])
        raise CommandError(f"run id prefix {run_id} is ambiguous in {store.path}: matches {shown}")
    if len(run_id) < MIN_PREFIX:
        found = store.prefix_matches(run_id)
        if found:
            raise CommandError(
                f"run id prefix {run_id} is too short: give at least {MIN_PREFIX} characters"
                f" ({found}{'+' if found >= 100 else ''} {'run starts' if found == 1 else 'runs start'} with it)"
            )
    raise CommandError(f"no run {run_id} in {store.path}")


# -- commands ---------------------------------------------------------------------------------
def _cmd_runs(store: LocalStore, args: argparse.Namespace) -> int:
    from trodo_trace._internal.display.render import format_runs_table

    runs = store.list_runs(
        user=args.user,
        conversation=args.conversation,
        status=args.status,
        name=args.name,
        limit=args.limit,
        since_ns=args.since,
        until_ns=args.until,
        model=args.model,
    )
    if _print_listing(runs, args):
        return 0
    total, subs = store.count_runs()
    _echo(f"Store: {store.path} ({total} runs, {subs} of them sub-runs)")
    _echo(format_runs_table(runs) if runs else "No runs found.")
    return 0


def _cmd_show(store: LocalStore, args: argparse.Namespace) -> int:
    from trodo_trace._internal.display.render import format_run_tree

    run = store.get_run(_resolve_run(store, args.run_id))
    if run is None:
        raise CommandError(f"no run {args.run_id} in {store.path}")
    spans = store.get_spans(run["run_id"])
    subs = store.sub_runs(run["run_id"])
    if args.json:
        print(_json_text({"run": run, "spans": spans, "sub_runs": subs}))
        return 0
    parent = store.get_run(run["parent_run_id"]) if run.get("parent_run_id") else None
    _echo(format_run_tree(run, spans, subs, parent, content=args.content))
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
    from trodo_trace._internal.display.render import conversation_order, format_conversation

    runs = store.conversation_runs(args.conversation_id)
    ordered = [{**run, "depth": depth} for run, depth in conversation_order(runs)]
    if _print_listing(ordered, args):
        return 0
    _echo(
        format_conversation(args.conversation_id, runs)
        if runs
        else f"No runs in conversation {args.conversation_id}."
    )
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
    if _print_listing(events, args):
        return 0
    _echo(_format_events(events) if events else "No events found.")
    return 0


def _human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _cmd_prune(store: LocalStore, args: argparse.Namespace) -> int:
    before, max_bytes = args.before, args.max_bytes
    if before is None and max_bytes is None:
        # The configured retention (TRODO_STORE_MAX_BYTES, TRODO_STORE_MAX_AGE_DAYS).
        from trodo_trace._internal.config import resolve
        from trodo_trace._internal.store.retention import cutoff_ns

        config = resolve({})
        max_bytes = config.store_max_bytes or None
        if config.store_max_age_days is not None:
            before = cutoff_ns(config.store_max_age_days)
    removed = store.prune(before_ns=before, max_bytes=max_bytes)
    _echo(
        f"Pruned {removed['runs']} runs ({removed['spans']} spans, {removed['events']} events,"
        f" {removed['feedback']} feedback) from {store.path}; {_human_bytes(store.size_bytes())} of data"
        " left (trodo-trace vacuum shrinks the file)"
    )
    return 0


def _cmd_vacuum(store: LocalStore, args: argparse.Namespace) -> int:
    before = store.path.stat().st_size
    store.vacuum()
    after = store.path.stat().st_size
    _echo(f"Vacuumed {store.path}: {_human_bytes(before)} -> {_human_bytes(after)}")
    return 0


def _cmd_export(store: LocalStore, args: argparse.Namespace) -> int:
    from trodo_trace._internal.transfer import export_file

    run_id = _resolve_run(store, args.run) if args.run else None
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            runs, spans, events = export_file(store, out, args.format, since_ns=args.since, run_id=run_id)
        _echo(f"Exported {runs} runs ({spans} spans) and {events} events to {args.out}", file=sys.stderr)
    else:
        export_file(store, sys.stdout, args.format, since_ns=args.since, run_id=run_id)
    return 0


def _cmd_push(store: LocalStore, args: argparse.Namespace) -> int:
    from trodo_trace._internal.transfer import push, stderr_if_tty

    run_id = _resolve_run(store, args.run) if args.run else None
    options: dict[str, Any] = {}
    if args.protocol:
        options["protocol"] = args.protocol
    if args.header:
        options["headers"] = ",".join(args.header)
    # The export path's own log lines are collected: a failed push is reported in one line below.
    notes: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: notes.append(record.getMessage())  # type: ignore[method-assign]
    sdk_logger = logging.getLogger("trodo_trace")
    sdk_logger.addHandler(handler)
    propagate, sdk_logger.propagate = sdk_logger.propagate, False
    try:
        result = push(
            store,
            args.endpoint,
            since_ns=args.since,
            run_id=run_id,
            options=options,
            progress=stderr_if_tty(),
        )
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc), 2) from None
    finally:
        sdk_logger.removeHandler(handler)
        sdk_logger.propagate = propagate
    if not result.error:
        for note in dict.fromkeys(notes):
            _echo(f"note: {note}", file=sys.stderr)
    summary = (
        f"Pushed {result.runs} runs ({result.spans} spans) and {result.events} events to {args.endpoint}"
    )
    if result.skipped_runs or result.skipped_events:
        summary += f"; {result.skipped_runs} runs and {result.skipped_events} events were already there"
    _echo(summary)
    if result.error:
        raise CommandError(f"push stopped: {result.error}; run the same command again to resume")
    if result.pending:
        raise CommandError(
            "some batches wait in the disk spool (the collector did not take them in time);"
            " run the same command again to send them"
        )
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


_STORE_COMMANDS = {
    "runs": _cmd_runs,
    "show": _cmd_show,
    "conversation": _cmd_conversation,
    "events": _cmd_events,
    "prune": _cmd_prune,
    "vacuum": _cmd_vacuum,
    "export": _cmd_export,
    "push": _cmd_push,
}
_EXTERNAL_COMMANDS = {
    "demo": "trodo_trace._internal.demo",
    "status": "trodo_trace._internal.export.spool_status",
}


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
    if args.command == "status":
        _echo(f"Using store {path} ({_store_source(args, path)})")
        if path.exists():
            _open_store(path).close()  # a store this release cannot read: exit 2 here
    if args.command in _EXTERNAL_COMMANDS:
        return _cmd_external(args.command, _EXTERNAL_COMMANDS[args.command], path)
    store = _open_store(path)
    try:
        return _STORE_COMMANDS[args.command](store, args)
    except sqlite3.Error as exc:
        raise CommandError(f"cannot read local store {path}: {exc}", 2) from None
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
        return exc.code
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
