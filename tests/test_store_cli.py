"""`trodo-trace` against real store files in real subprocesses: filters, JSON lines, content,
incomplete costs, generators closed early, id prefixes, which store is used, retention commands,
and bad input (exit 2, one line, the file untouched)."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

import trodo_trace as trodo
from trodo_trace._internal.store.local import SCHEMA_VERSION, LocalStore
from trodo_trace.testing import capture

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
DAY = 86_400 * 10**9
RUN_P = "abc123priced0001"
RUN_U = "abc124unpriced02"
RUN_G = "f00d00generator3"


def _span(name, trace, span_id, parent, start, attrs):
    def ctx(sid):
        return SpanContext(trace, sid, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))

    return ReadableSpan(
        name=name,
        context=ctx(span_id),
        parent=ctx(parent) if parent else None,
        resource=Resource({"service.name": "cli-store"}),
        attributes=attrs,
        status=Status(StatusCode.OK),
        start_time=start,
        end_time=start + 10**6,
    )


def _root(run_id, name, trace, start, **rollups):
    return _span(
        name,
        trace,
        1,
        None,
        start,
        {
            "trodo.span.kind": "run",
            "trodo.run.id": run_id,
            "trodo.agent.name": name,
            "trodo.distinct_id": "user-1",
            "trodo.run.status": "ok",
            "trodo.run.span_count": 2,
            "trodo.run.tool_count": 0,
            "trodo.run.error_count": 0,
            **rollups,
        },
    )


def _llm(run_id, trace, start, model, **extra):
    return _span(
        "chat",
        trace,
        2,
        1,
        start + 1,
        {
            "trodo.span.kind": "llm",
            "trodo.run.id": run_id,
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20,
            **extra,
        },
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("cli-store") / "trodo.db"
    spans = [
        _llm(
            RUN_P,
            0x1,
            T0,
            "gpt-4o-mini",
            **{
                "trodo.llm.cost": 0.0002,
                "input.value": "hi\x1b[31m there\x07",
                "output.value": "word " * 100,
            },
        ),
        _root(RUN_P, "pricey", 0x1, T0, **{"trodo.run.total_cost": 0.0002, "input.value": '{"q": "hi"}'}),
        _llm(RUN_U, 0x2, T0 + DAY, "in-house-7b"),
        _root(
            RUN_U,
            "homegrown",
            0x2,
            T0 + DAY,
            **{"trodo.run.total_cost": 0.0, "trodo.run.cost_incomplete": True},
        ),
        _root(
            RUN_G,
            "streamer",
            0x3,
            T0 + 2 * DAY,
            **{"trodo.generator.closed_early": True, "trodo.generator.items": 2, "trodo.run.span_count": 1},
        ),
    ]
    with LocalStore(path) as local:
        local.export_spans(spans)
        local.write_events([{"dedup_key": "e1", "ts_ns": T0, "name": "signup", "distinct_id": "user-1"}])
    return path


def cli(*args: str, cwd: pathlib.Path | None = None, env_extra: dict | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRODO_", "OTEL_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "trodo_trace.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or REPO_ROOT,
        timeout=60,
    )


def ok(*args: str, **kwargs) -> str:
    result = cli(*args, **kwargs)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_runs_filters_by_model_and_time_and_prints_json_lines(store):
    def ids(*extra: str) -> list[str]:
        lines = ok("--store", str(store), "runs", "--jsonl", *extra).splitlines()
        return [json.loads(line)["run_id"] for line in lines]

    assert ids() == [RUN_G, RUN_U, RUN_P]
    assert ids("--model", "in-house-7b") == [RUN_U]
    assert ids("--model", "gpt-4o-mini") == [RUN_P]
    assert ids("--since", "2023-11-15T12:00") == [RUN_G, RUN_U]
    assert ids("--until", "2023-11-15T12:00Z") == [RUN_P]
    assert ids("--since", "2023-11-15", "--until", "2023-11-16T12:00:00+00:00") == [RUN_U]
    assert ids("--since", "1d") == []  # runs of 2023 are older than a day
    events = ok("--store", str(store), "events", "--jsonl").splitlines()
    assert [json.loads(line)["name"] for line in events] == ["signup"]
    bad = cli("--store", str(store), "runs", "--since", "yesterday-ish")
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "invalid time" in bad.stderr


def test_costs_marked_incomplete_and_generators_closed_early(store):
    lines = ok("--store", str(store), "runs").splitlines()
    assert lines[0] == f"Store: {store} (3 runs, 0 of them sub-runs)"
    rows = {line[:12]: line for line in lines[2:]}
    assert "? (incomplete)" in rows[RUN_U[:12]]
    assert "$0.000200" in rows[RUN_P[:12]] and "incomplete" not in rows[RUN_P[:12]]
    assert " closed early " in rows[RUN_G[:12]]
    shown = ok("--store", str(store), "show", RUN_U)
    assert "cost: ? (incomplete)" in shown
    assert "[llm] chat  1.0 ms  tokens 100→20  cost unknown (no price for the model)" in shown
    generator = ok("--store", str(store), "show", RUN_G)
    assert generator.splitlines()[0] == f"Run {RUN_G}  streamer  [CLOSED EARLY]"
    assert "[run] streamer  1.0 ms  CLOSED EARLY after 2 items" in generator
    data = json.loads(ok("--store", str(store), "show", RUN_U, "--json"))
    assert data["run"]["cost_incomplete"] is True and data["run"]["cost"] == 0.0
    assert {span["resource"]["service.name"] for span in data["spans"]} == {"cli-store"}
    assert all("resource_id" not in span for span in data["spans"])


def test_show_content_prints_inputs_and_outputs_cut_and_stripped(store):
    out = ok("--store", str(store), "show", RUN_P, "--content")
    lines = out.splitlines()
    tree = lines[lines.index("") + 1 :]
    assert tree[0].startswith("[run] pricey")
    assert tree[1] == '│  input: {"q": "hi"}'
    assert tree[2].startswith("└─ [llm] chat")
    assert tree[3] == "      input: hi[31m there"  # the escape and bell are gone
    assert tree[4].startswith("      output: word word") and tree[4].endswith("…")
    assert len(tree[4]) == len("      output: ") + 200
    assert "\x1b" not in out and "\x07" not in out
    assert "input:" not in ok("--store", str(store), "show", RUN_P)


def test_short_and_ambiguous_prefixes_are_named(store):
    short = cli("--store", str(store), "show", "abc")
    assert short.returncode == 1
    assert short.stderr == (
        "trodo-trace: run id prefix abc is too short: give at least 6 characters (2 runs start with it)\n"
    )
    ambiguous = cli("--store", str(store), "show", "abc12")
    assert "too short" in ambiguous.stderr
    many = cli("--store", str(store), "show", "abc123")
    assert many.returncode == 0, many.stderr
    none = cli("--store", str(store), "show", "zzz")
    assert none.stderr == f"trodo-trace: no run zzz in {store}\n"
    conn = sqlite3.connect(store)
    ids = [row[0] for row in conn.execute("SELECT run_id FROM runs")]
    conn.close()
    alone = next(p for p in (i[:3] for i in ids) if sum(i.startswith(p) for i in ids) == 1)
    one = cli("--store", str(store), "show", alone)
    assert one.stderr.endswith("give at least 6 characters (1 run starts with it)\n"), one.stderr


def test_cli_finds_the_nearest_store_upwards_and_says_which(store, tmp_path):
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / ".trodo").mkdir()
    shutil.copy(store, project / ".trodo" / "trodo.db")
    deep = project / "src" / "service"
    deep.mkdir(parents=True)
    found = project / ".trodo" / "trodo.db"
    assert ok("runs", cwd=deep).splitlines()[0].startswith(f"Store: {found} (3 runs")
    status = ok("status", cwd=deep).splitlines()
    assert status[0] == f"Using store {found} (the nearest .trodo/ from {os.path.realpath(deep)})"
    explicit = ok("status", cwd=deep, env_extra={"TRODO_STORE": str(store)}).splitlines()
    assert explicit[0] == f"Using store {store} (from TRODO_STORE)"


def test_bad_input_is_one_line_exit_2_and_never_written(store, tmp_path):
    newer = tmp_path / "newer.db"
    shutil.copy(store, newer)
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    for path, message in (
        (newer, "was written by a newer trodo_trace"),
        (foreign, "is an SQLite database but not a trodo_trace store"),
    ):
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        for command in (["runs"], ["prune", "--max-bytes", "1"], ["vacuum"], ["status"], ["export"]):
            result = cli("--store", str(path), *command)
            assert result.returncode == 2, (command, result.stderr)
            assert len(result.stderr.splitlines()) == 1 and message in result.stderr
            assert "Traceback" not in result.stderr
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    directory = cli("--store", str(tmp_path), "runs")
    assert directory.returncode == 2 and "is not a file" in directory.stderr
    unknown = cli("--store", str(store), "runs", "--colour")
    assert unknown.returncode == 2
    assert unknown.stderr == "trodo-trace: error: unrecognized arguments: --colour (see trodo-trace --help)\n"
    size = cli("--store", str(store), "prune", "--max-bytes", "lots")
    assert size.returncode == 2 and "invalid size" in size.stderr


def test_prune_and_vacuum_commands(store, tmp_path):
    path = tmp_path / "prune.db"
    shutil.copy(store, path)
    out = ok("--store", str(path), "prune", "--before", "2023-11-15T12:00")
    # the run of 2023-11-14, and the event outside any run of that day
    assert out.startswith(f"Pruned 1 runs (2 spans, 1 events, 0 feedback) from {path};")
    assert [json.loads(x)["run_id"] for x in ok("--store", str(path), "runs", "--jsonl").splitlines()] == [
        RUN_G,
        RUN_U,
    ]
    assert ok("--store", str(path), "prune", "--max-bytes", "1").startswith("Pruned 2 runs")
    assert ok("--store", str(path), "runs", "--json").strip() == "[]"
    vacuumed = ok("--store", str(path), "vacuum")
    assert vacuumed.startswith(f"Vacuumed {path}: ")


def test_prune_without_options_applies_the_configured_age(store, tmp_path):
    path = tmp_path / "aged.db"
    shutil.copy(store, path)
    out = ok("--store", str(path), "prune", env_extra={"TRODO_STORE_MAX_AGE_DAYS": "1"})
    assert out.startswith("Pruned 3 runs (5 spans, 1 events")


# -- the SDK side of the same fixes ------------------------------------------------------------------
def test_sub_run_started_outside_its_parent_inherits_user_and_conversation_from_the_store():
    """wrap_agent(..., parent_run_id=X) outside any run takes X's user and conversation when the
    local store holds X; explicit values win; an unknown X leaves them unset."""
    _, parent = trodo.wrap_agent("parent", lambda run: 1, distinct_id="u-9", conversation_id="c-9")
    assert trodo.flush(10)
    with capture() as traces:
        _, child = trodo.wrap_agent("child", lambda run: 2, parent_run_id=parent)
        _, own = trodo.wrap_agent("own", lambda run: 3, parent_run_id=parent, distinct_id="u-other")
        _, orphan = trodo.wrap_agent("orphan", lambda run: 4, parent_run_id="not-stored")
    attrs = {run_id: traces.run(run_id).attributes for run_id in (child, own, orphan)}
    assert (attrs[child]["trodo.distinct_id"], attrs[child]["trodo.conversation_id"]) == ("u-9", "c-9")
    assert attrs[child]["trodo.parent_run_id"] == parent
    assert (attrs[own]["trodo.distinct_id"], attrs[own]["trodo.conversation_id"]) == ("u-other", "c-9")
    assert "trodo.distinct_id" not in attrs[orphan] and "trodo.conversation_id" not in attrs[orphan]


def test_service_name_defaults_to_the_script_name(tmp_path):
    script = tmp_path / "billing_worker.py"
    script.write_text(
        textwrap.dedent(
            """
            import trodo_trace as trodo
            trodo.wrap_agent("job", lambda run: None)
            trodo.flush(10)
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRODO_", "OTEL_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    services = []
    for extra in ({}, {"OTEL_SERVICE_NAME": "billing"}):
        store = tmp_path / f"s{len(services)}.db"
        subprocess.run(
            [sys.executable, str(script)], check=True, env={**env, **extra, "TRODO_STORE": str(store)}
        )
        with LocalStore(store) as local:
            services.append(local.list_runs()[0]["service_name"])
    assert services == ["billing_worker", "billing"]
