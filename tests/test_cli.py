"""Tests of the ``trodo-trace`` command, run as a real subprocess against a real store file."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from trodo_trace._internal.store.local import LocalStore

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
MS = 1_000_000
RUN_A = "5b1d7e3a9f00c111"
RUN_B = "5b1d7e3a0000b222"  # sub-run of RUN_A
RUN_C = "e4e4e4e4aaaa0333"


def _span(name, trace_id, span_id, parent_id, start_ms, end_ms, attrs, *, error=None, events=()):
    ctx = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    parent = None
    if parent_id is not None:
        parent = SpanContext(trace_id, parent_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return ReadableSpan(
        name=name,
        context=ctx,
        parent=parent,
        resource=Resource({"service.name": "cli-test"}),
        attributes=attrs,
        events=events,
        status=Status(StatusCode.ERROR, error) if error else Status(StatusCode.OK),
        start_time=T0 + start_ms * MS,
        end_time=T0 + end_ms * MS,
    )


def _run_root(run_id, name, trace_id, span_id, parent_id, start_ms, end_ms, *, user, conv, **extra):
    attrs = {
        "trodo.span.kind": extra.pop("kind", "run"),
        "trodo.run.id": run_id,
        "trodo.agent.name": name,
        "trodo.distinct_id": user,
        "trodo.conversation_id": conv,
        "trodo.run.duration_ms": float(end_ms - start_ms),
        **{f"trodo.run.{key}": value for key, value in extra.items()},
    }
    if "trodo.run.parent" in attrs:
        attrs["trodo.parent_run_id"] = attrs.pop("trodo.run.parent")
    error = attrs.get("trodo.run.error_summary") if attrs.get("trodo.run.status") == "error" else None
    return _span(name, trace_id, span_id, parent_id, start_ms, end_ms, attrs, error=error)


def _write_fixture_store(path: pathlib.Path) -> None:
    a = {"trodo.run.id": RUN_A}
    spans = [
        _run_root(
            RUN_A,
            "support_agent",
            0xA,
            0x1,
            None,
            0,
            500,
            user="user-1",
            conv="conv-1",
            status="error",
            error_summary="ValueError: bad tool input",
            total_tokens_in=120,
            total_tokens_out=45,
            total_cost=0.000123,
            span_count=5,
            tool_count=1,
            error_count=1,
        ),
        _span(
            "chat gpt-4o-mini",
            0xA,
            0x2,
            0x1,
            10,
            110,
            {
                **a,
                "trodo.span.kind": "llm",
                "gen_ai.usage.input_tokens": 120,
                "gen_ai.usage.output_tokens": 45,
                "trodo.llm.cost": 0.000123,
            },
        ),
        _span("planner", 0xA, 0x3, 0x1, 120, 200, {**a, "trodo.span.kind": "agent"}),
        _span(
            "lookup_order",
            0xA,
            0x4,
            0x3,
            130,
            135.5,
            {**a, "trodo.span.kind": "tool", "trodo.tool.name": "lookup_order", "error.type": "ValueError"},
            error="bad tool input",
            events=[
                Event("exception", {"exception.type": "ValueError", "exception.message": "bad tool input"})
            ],
        ),
        _span("format_answer", 0xA, 0x5, 0x1, 400, 450, {**a, "trodo.span.kind": "chain"}),
        _span("late_callback", 0xA, 0x6, 0x99, 460, 470, {**a, "trodo.span.kind": "function"}),
        _run_root(
            RUN_B,
            "researcher",
            0xA,
            0x10,
            0x3,
            140,
            190,
            user="user-1",
            conv="conv-1",
            kind="agent",
            parent=RUN_A,
            status="ok",
            span_count=1,
            tool_count=0,
            error_count=0,
        ),
        _run_root(
            RUN_C,
            "billing_agent",
            0xC,
            0x20,
            None,
            60_000,
            60_050,
            user="user-2",
            conv="conv-2",
            status="ok",
            total_tokens_in=10,
            total_tokens_out=5,
            total_cost=0.5,
            span_count=1,
            tool_count=0,
            error_count=0,
        ),
    ]
    with LocalStore(path) as store:
        store.export_spans(spans)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("cli") / "trodo.db"
    _write_fixture_store(path)
    return path


def cli(*args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRODO_STORE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "trodo_trace.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or REPO_ROOT,
        timeout=60,
    )


def ok(*args: str) -> str:
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_runs_table(store_path):
    """`runs` prints an aligned table, newest first, with ids cut to 12 chars."""
    lines = ok("--store", str(store_path), "runs").splitlines()
    assert lines.pop(0) == f"Store: {store_path} (3 runs, 1 of them sub-runs)"
    header = lines[0]
    for title in ("RUN ID", "NAME", "STATUS", "USER", "CONVERSATION", "STARTED (UTC)", "DURATION", "TOKENS"):
        assert title in header
    assert [line[:12] for line in lines[1:]] == [RUN_C[:12], RUN_B[:12], RUN_A[:12]]
    status_col = header.index("STATUS")
    assert [line[status_col:].split()[0] for line in lines[1:]] == ["ok", "ok", "error"]
    row_a = lines[3]
    assert "support_agent" in row_a and "user-1" in row_a and "conv-1" in row_a
    assert "2023-11-14 22:13:20" in row_a
    assert "500.0 ms" in row_a and "120→45" in row_a and "$0.000123" in row_a
    assert RUN_A not in row_a
    assert "$0.000000" not in lines[2] and " - " in lines[2]


def test_runs_json_and_filters(store_path):
    """`runs --json` prints a JSON list; every filter narrows it."""

    def ids(*extra: str) -> list[str]:
        return [run["run_id"] for run in json.loads(ok("--store", str(store_path), "runs", "--json", *extra))]

    full = json.loads(ok("--store", str(store_path), "runs", "--json"))
    assert full[2]["run_id"] == RUN_A and full[2]["cost"] == 0.000123 and full[2]["tokens_in"] == 120
    assert ids() == [RUN_C, RUN_B, RUN_A]
    assert ids("--user", "user-1") == [RUN_B, RUN_A]
    assert ids("--conversation", "conv-2") == [RUN_C]
    assert ids("--status", "error") == [RUN_A]
    assert ids("--status", "ok", "--user", "user-1") == [RUN_B]
    assert ids("--name", "billing_agent") == [RUN_C]
    assert ids("--limit", "1") == [RUN_C]
    assert ids("--user", "nobody") == []
    assert "No runs found." in ok("--store", str(store_path), "runs", "--user", "nobody")


def test_runs_rejects_bad_status(store_path):
    """An invalid --status value is a usage error (exit 2)."""
    result = cli("--store", str(store_path), "runs", "--status", "maybe")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_show_tree(store_path):
    """`show` prints the header, the indented span tree, the parent run and sub-runs."""
    out = ok("--store", str(store_path), "show", RUN_A)
    lines = out.splitlines()
    assert lines[0] == f"Run {RUN_A}  support_agent  [ERROR]"
    assert "user: user-1" in out and "conversation: conv-1" in out
    assert "started: 2023-11-14T22:13:20.000Z" in out and "duration: 500.0 ms" in out
    assert "tokens: 120 in / 45 out" in out and "cost: $0.000123" in out
    assert "spans: 5   tools: 1   errors: 1" in out
    assert "error: ValueError: bad tool input" in out
    start = lines.index("") + 1
    assert lines[start : start + 7] == [
        "[run] support_agent  500.0 ms  ERROR ValueError: bad tool input",
        "├─ [llm] chat gpt-4o-mini  100.0 ms  tokens 120→45  $0.000123",
        "├─ [agent] planner  80.0 ms",
        "│  ├─ [tool] lookup_order  5.5 ms  ERROR ValueError: bad tool input",
        # the sub-run, under the span that was current when it started
        f"│  └─ ↳ sub-run {RUN_B[:12]} researcher  ok  50.0 ms  (trodo-trace show {RUN_B[:12]})",
        "└─ [chain] format_answer  50.0 ms",
        "[function] late_callback  10.0 ms",
    ]
    assert "Sub-runs:" in lines
    assert lines[lines.index("Sub-runs:") + 1] == f"  {RUN_B}  researcher  ok"


def test_show_sub_run_names_parent_and_accepts_prefix(store_path):
    """`show` of a sub-run by unique prefix prints its parent run line."""
    out = ok("--store", str(store_path), "show", RUN_B[:10])
    assert out.splitlines()[0] == f"Run {RUN_B}  researcher  [OK]"
    assert f"Parent run: {RUN_A}  support_agent  error" in out
    assert "cost: $" not in out and "cost: -" in out
    assert "(no spans stored for this run)" not in out


def test_show_json(store_path):
    """`show --json` prints the run, its spans in start order and its sub-runs."""
    data = json.loads(ok("--store", str(store_path), "show", RUN_A, "--json"))
    assert set(data) == {"run", "spans", "sub_runs"}
    assert data["run"]["run_id"] == RUN_A and data["run"]["status"] == "error"
    assert [s["name"] for s in data["spans"]] == [
        "support_agent",
        "chat gpt-4o-mini",
        "planner",
        "lookup_order",
        "format_answer",
        "late_callback",
    ]
    tool = data["spans"][3]
    assert tool["parent_span_id"] == "0000000000000003"
    assert tool["attributes"]["trodo.tool.name"] == "lookup_order"
    assert tool["events"][0]["attributes"]["exception.message"] == "bad tool input"
    assert [r["run_id"] for r in data["sub_runs"]] == [RUN_B]


def test_show_unknown_run(store_path):
    """`show` of an unknown or ambiguous id exits 1 with one line on stderr."""
    result = cli("--store", str(store_path), "show", "doesnotexist")
    assert result.returncode == 1
    assert result.stderr == f"trodo-trace: no run doesnotexist in {store_path}\n"
    ambiguous = cli("--store", str(store_path), "show", "5b1d7e3a")
    assert ambiguous.returncode == 1
    assert "ambiguous" in ambiguous.stderr and len(ambiguous.stderr.splitlines()) == 1


def test_conversation(store_path):
    """`conversation` lists its turns oldest first, each sub-run nested under the run that started
    it with a PARENT column; JSON marks the depth."""
    data = json.loads(ok("--store", str(store_path), "conversation", "conv-1", "--json"))
    assert [(r["run_id"], r["depth"]) for r in data] == [(RUN_A, 0), (RUN_B, 1)]
    lines = ok("--store", str(store_path), "conversation", "conv-1").splitlines()
    assert lines[0] == "Conversation conv-1: 1 turn (+1 sub-run)"
    assert lines[1].split()[:3] == ["TURN", "RUN", "ID"] and lines[1].endswith("PARENT")
    assert lines[2].split()[:3] == ["1", RUN_A[:12], "support_agent"] and lines[2].endswith("-")
    assert lines[3].split()[:3] == [RUN_B[:12], "└─", "researcher"] and lines[3].endswith(RUN_A[:12])
    assert "No runs in conversation nope." in ok("--store", str(store_path), "conversation", "nope")


def test_events_empty_and_filled(tmp_path, store_path):
    """`events` reports an empty table and lists stored events with filters."""
    assert ok("--store", str(store_path), "events").strip() == "No events found."
    assert json.loads(ok("--store", str(store_path), "events", "--json")) == []
    path = tmp_path / "events.db"
    with LocalStore(path) as store:
        store.write_events(
            [
                {
                    "dedup_key": "a",
                    "ts_ns": T0,
                    "name": "signup",
                    "distinct_id": "u1",
                    "properties": {"p": 1},
                },
                {"dedup_key": "b", "ts_ns": T0 + MS, "name": "purchase", "distinct_id": "u2"},
            ]
        )
    lines = ok("--store", str(path), "events").splitlines()
    assert lines[0].startswith("TIME (UTC)")
    assert "purchase" in lines[1] and "signup" in lines[2] and '{"p": 1}' in lines[2]
    filtered = json.loads(ok("--store", str(path), "events", "--user", "u1", "--json"))
    assert [e["name"] for e in filtered] == ["signup"]
    assert [e["name"] for e in json.loads(ok("--store", str(path), "events", "--limit", "1", "--json"))] == [
        "purchase"
    ]


def test_missing_store_is_one_line_and_not_created(tmp_path):
    """Reading a missing store exits 1 with one stderr line and creates nothing."""
    (tmp_path / ".git").mkdir()  # the search for a .trodo/ upwards stops at a repository's root
    result = cli("runs", cwd=tmp_path)
    default = pathlib.Path(os.path.realpath(tmp_path)) / ".trodo" / "trodo.db"
    assert result.returncode == 1
    assert result.stderr == (
        f"trodo-trace: no local store at {default} (run something traced first, or set TRODO_STORE)\n"
    )
    assert not (tmp_path / ".trodo").exists()
    explicit = cli("--store", str(tmp_path / "none.db"), "show", "abc")
    assert explicit.returncode == 1 and len(explicit.stderr.splitlines()) == 1
    assert not (tmp_path / "none.db").exists()


def test_corrupt_store_is_one_line_without_traceback(tmp_path):
    """A non-SQLite store file exits 2 with one stderr line and no traceback."""
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"garbage, not sqlite at all " * 200)
    result = cli("--store", str(path), "runs")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr and str(path) in result.stderr


def test_pending_commands_report_missing_modules(store_path):
    """`demo` and `status` exit 2 with one line while their modules are absent."""
    for command, module in (("demo", "demo"), ("status", "export/spool_status")):
        if (REPO_ROOT / "trodo_trace" / "_internal" / f"{module}.py").exists():
            continue
        result = cli("--store", str(store_path), command)
        assert result.returncode == 2
        assert (
            result.stderr == f"trodo-trace: the '{command}' command is not available in this installation\n"
        )


def test_no_command_prints_usage():
    """Running without a command prints usage and exits 2."""
    result = cli()
    assert result.returncode == 2
    assert "usage: trodo-trace" in result.stderr


def test_import_is_cheap():
    """Importing trodo_trace.cli adds neither the store nor OpenTelemetry to what the package loads."""
    code = (
        "import sys, trodo_trace; before = set(sys.modules); import trodo_trace.cli; "
        "new = set(sys.modules) - before; "
        "print(sorted(m for m in new if m.startswith(('opentelemetry', 'trodo_trace._internal.store'))))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
