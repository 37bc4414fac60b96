"""The CLI against a store written by real subprocesses: the demo, a traced script, the error paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


def _cli(store, *args, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRODO_", "OTEL_"))}
    result = subprocess.run(
        [sys.executable, "-m", "trodo_trace.cli", "--store", str(store), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_demo_stores_and_prints_its_runs(tmp_path):
    """`trodo-trace demo` traces an offline agent into the store and prints each run's tree."""
    store = tmp_path / "demo.db"
    result = _cli(store, "demo")
    out = result.stdout
    assert out.splitlines()[0].startswith("Stored conversation demo-")
    assert out.splitlines()[0].endswith(f"(2 runs and 1 sub-run they started) in {store}")
    for needle in (
        "├─ ↳ sub-run ",  # where the second turn started its sub-run
        "[run] travel-assistant",
        "[retrieval] search_knowledge_base",
        "[llm] plan",
        "ERROR TimeoutError: weather service did not answer",
        "[run] umbrella-advisor",
        "Sub-runs:",
        "Parent run:",
    ):
        assert needle in out, needle
    runs = json.loads(_cli(store, "runs", "--json").stdout)
    assert sorted(r["name"] for r in runs) == ["travel-assistant", "travel-assistant", "umbrella-advisor"]
    first, second = sorted((r for r in runs if r["name"] == "travel-assistant"), key=lambda r: r["start_ns"])
    assert (first["span_count"], first["tool_count"], first["error_count"], first["status"]) == (
        6,
        2,
        1,
        "ok",
    )
    assert first["tokens_in"] == 444 and first["cost"] > 0
    sub = next(r for r in runs if r["name"] == "umbrella-advisor")
    assert sub["parent_run_id"] == second["run_id"]
    conversation = json.loads(_cli(store, "conversation", first["conversation_id"], "--json").stdout)
    assert [r["run_id"] for r in conversation] == [first["run_id"], second["run_id"], sub["run_id"]]
    shown = json.loads(_cli(store, "show", second["run_id"], "--json").stdout)
    assert [s["name"] for s in shown["spans"]] == [
        "travel-assistant",
        "search_knowledge_base",
        "plan",
        "get_weather",
        "answer",
    ]
    assert [r["run_id"] for r in shown["sub_runs"]] == [sub["run_id"]]


def test_cli_reads_runs_written_by_a_traced_script(tmp_path):
    """A script that never calls flush() still has its runs in the store when it exits."""
    store = tmp_path / "script.db"
    script = textwrap.dedent(
        """
        import trodo_trace as trodo

        @trodo.tool
        def add(a, b):
            return a + b

        @trodo.agent("calculator", distinct_id="user-1", conversation_id="conv-1")
        def calculator(n):
            if n == 2:
                raise ValueError("two is not allowed")
            return add(n, n)

        for n in range(4):
            try:
                calculator(n)
            except ValueError:
                pass
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRODO_", "OTEL_"))}
    env["TRODO_STORE"] = str(store)
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=60)
    runs = json.loads(_cli(store, "runs", "--json").stdout)
    assert len(runs) == 4
    assert [r["status"] for r in runs].count("error") == 1
    errors = json.loads(_cli(store, "runs", "--status", "error", "--json").stdout)
    assert len(errors) == 1 and errors[0]["error_summary"] == "ValueError: two is not allowed"
    assert len(json.loads(_cli(store, "runs", "--user", "user-1", "--limit", "2", "--json").stdout)) == 2
    assert json.loads(_cli(store, "runs", "--user", "nobody", "--json").stdout) == []
    table = _cli(store, "runs").stdout
    assert table.splitlines()[0] == f"Store: {store} (4 runs, 0 of them sub-runs)"
    assert table.splitlines()[1].split()[:3] == ["RUN", "ID", "NAME"]
    assert table.count("calculator") == 4
    tree = _cli(store, "show", errors[0]["run_id"]).stdout
    assert "[run] calculator" in tree and "ERROR ValueError: two is not allowed" in tree


def test_cli_error_paths(tmp_path):
    """A missing store and an unknown run id give one line and exit 1; a corrupt file one line and
    exit 2 (bad input)."""
    missing = tmp_path / "missing.db"
    result = _cli(missing, "runs", check=False)
    assert result.returncode == 1 and "no local store" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not missing.exists()

    store = tmp_path / "demo.db"
    _cli(store, "demo")
    result = _cli(store, "show", "ffffffffffff", check=False)
    assert result.returncode == 1 and "no run ffffffffffff" in result.stderr

    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not sqlite" * 100)
    result = _cli(corrupt, "runs", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
