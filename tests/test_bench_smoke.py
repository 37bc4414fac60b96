"""Every benchmark script runs: each one, with tiny counts, to its end, and what it reports holds together.

The figures themselves live in ``make bench`` (BENCHMARKS.md), never in a test; these tests only
catch a benchmark that broke (a schema change, a renamed option, a workload that no longer
delivers its spans), which would otherwise show only on the next ``make bench``. The benchmarks run
in the project's .venv, so these tests run on the default Python only, not in the matrix.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"

sys.path.insert(0, str(BENCH))
from sink import OTLPSink  # noqa: E402

sys.path.remove(str(BENCH))


def run(script: str, *args: str, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode in ok, (
        f"{script} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def bench_module(name: str) -> Any:
    """A bench/ script imported as a module (for its render functions)."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


def last_json(stdout: str) -> Any:
    start = stdout.index("{")
    return json.loads(stdout[start:])


@pytest.mark.parametrize("source", ["sdk", "trodo"])
def test_store_write(source: str) -> None:
    out = run("store_write.py", "--spans", "2000", "--batch", "256", "--repeat", "1", "--source", source)
    match = re.search(r"local store \(\w+ spans\): 2,000 spans in batches of 256: ([\d,]+) spans/s", out)
    assert match, out
    assert int(match.group(1).replace(",", "")) > 0
    assert re.search(r"file \d+\.\d MiB", out), out
    alone = re.search(
        r"SQLite alone, the same rows prebuilt, same schema and settings: ([\d,]+) spans/s", out
    )
    assert alone and int(alone.group(1).replace(",", "")) > 0, out
    bare = re.search(
        r"SQLite alone, the same rows, no secondary index \(tables and primary keys only\): ([\d,]+)", out
    )
    assert bare and int(bare.group(1).replace(",", "")) > 0, out
    blocks = re.search(r"SQLite alone, several spans per row .*: ([\d,]+) spans/s", out)
    assert blocks and int(blocks.group(1).replace(",", "")) > 0, out
    runs = re.search(r"SQLite alone, the runs rows only .*: ([\d,]+) spans/s", out)
    assert runs and int(runs.group(1).replace(",", "")) > 0, out


def test_ui_bench(tmp_path: Path) -> None:
    out = run(
        "ui_bench.py", "--runs", "300", "--spans", "3000", "--repeat", "2", "--dir", str(tmp_path), ok=(0, 1)
    )
    assert "generated 300 runs" in out, out
    rows = [line for line in out.splitlines() if line.startswith(("runs list", "run page", "overview"))]
    assert len(rows) == 17, out  # every page measured: 15 list filters, the run page, the overview
    assert all(re.search(r"\d+\.\d +\d+\.\d", row) for row in rows), out


def test_export_bench() -> None:
    out = run("export.py", "--spans", "3000", "--runs", "30", "--repeat", "1")
    assert "3000 spans delivered" in out and "flush ok=True, exported=3000" in out, out
    table = {
        line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ") and line.split()
    }
    assert set(table) >= {"up", "slow", "down"}, out
    up, down = table["up"], table["down"]
    assert int(up[-3]) > 0 and int(up[-1]) == 0, out  # exported, nothing dropped
    assert int(down[-3]) == 0 and int(down[-2]) > 0 and int(down[-1]) == 0, out  # a dead collector: spooled


@pytest.mark.parametrize(
    ("mode", "args"),
    [
        ("overhead", ["--runs", "50", "--repeat", "2", "--warmup", "10"]),
        ("burst", ["--spans", "2000", "--deadline", "60"]),
        ("scaling", ["--total", "400", "--sizes", "10", "100", "--threads", "1", "2"]),
    ],
)
def test_child_modes(mode: str, args: list[str]) -> None:
    with OTLPSink() as sink:
        out = run("child.py", "trodo_trace", mode, "--endpoint", sink.url, *args)
        line = next(line for line in out.splitlines() if line.startswith("RESULT "))
        result = json.loads(line[len("RESULT ") :])
        if mode == "overhead":
            assert result["all_flushed"] is True
            assert sink.span_count == result["expected"] == 4 * (10 + 50 * 2)
            assert 0 < result["cpu_us"] <= result["process_us"] * 2
        elif mode == "burst":
            assert result["flush_finished"] is True
            assert result["expected"] == 2000
            assert sink.span_count == 2000 + result["warmup_spans"]  # one exported run before the burst
        else:
            assert result, out


def contenders(script: str, only: list[str], runs: int, warmup: int) -> Any:
    """The ``--json`` results of a script that runs each contender in its own process."""
    counts = ["--runs", str(runs), "--repeat", "1", "--rounds", "1", "--warmup", str(warmup)]
    return last_json(run(script, "--only", *only, *counts, "--json"))


def test_provider_overhead_openai() -> None:
    results = contenders("provider_overhead.py", ["none", "trodo_trace"], runs=20, warmup=5)
    for mode in ("create", "stream"):
        traced = results[mode]["trodo_trace"]
        assert traced["flushed"] is True
        assert traced["spans"] == 20 + 5, results
        assert results[mode]["none"]["spans"] == 0
        # The exact figures: the timing shims sat under and over the patch, and the export was counted.
        untraced = results[mode]["none"]
        assert traced["wrapper_us"] > untraced["wrapper_us"] >= 0, results
        assert traced["export_us"] > 0, results
        assert traced["added_exact_us"] == traced["exact_us"] - untraced["exact_us"]
    # Without the peers there is no verdict, and the table says so instead of failing.
    provider_overhead = bench_module("provider_overhead")
    table = provider_overhead.render_exact(results)
    assert "| create | trodo_trace (instrument_openai) |" in table, table
    assert "- create, exact: not measured" in table and "- stream, exact: not measured" in table, table


def test_provider_sdks() -> None:
    output = last_json(run("provider_sdks.py", "--blocks", "2", "--calls", "10", "--warmup", "3", "--json"))
    results = output["results"]
    assert set(results) == {"bedrock", "gemini", "cohere", "mistral", "litellm"}
    for sdk, result in results.items():
        assert "error" not in result, (sdk, result)
        assert result["flushed"] is True
        assert result["spans"] == result["calls"] > 0, (sdk, result)
    assert output["floors"] == {}


def test_provider_sdks_floors() -> None:
    """The floor rows: one bare span (trodo_trace's, then the OpenTelemetry SDK's) around the same
    method; every span of each reaches the sink, and the table prints both beside trodo's figure."""
    args = ("--sdk", "cohere", "--blocks", "2", "--calls", "5", "--floor-blocks", "2", "--floor-calls", "5")
    output = last_json(run("provider_sdks.py", *args, "--warmup", "2", "--floor", "--json"))
    floors = output["floors"]["cohere"]
    assert set(floors) == {"span", "otel"}
    for mode, result in floors.items():
        assert "error" not in result, (mode, result)
        assert result["flushed"] is True
        assert result["spans"] == result["calls"] > 0, (mode, result)
    provider_sdks = bench_module("provider_sdks")
    table = provider_sdks.render_floors(output["results"], output["floors"])
    assert table.count("\n| cohere |") == 1, table
    assert "A bare OpenTelemetry SDK span around the call, with nothing read, costs" in table, table


def test_langchain_overhead() -> None:
    """Traced and untraced blocks in one process: every traced invocation's 4 spans arrive, each
    figure has its paired median and quartiles, and the table and verdict line print."""
    counts = ["--runs", "10", "--blocks", "2", "--rounds", "1", "--warmup", "2"]
    names = ("noop", "trodo_spans", "trodo_trace")
    results = last_json(run("langchain_overhead.py", "--only", *names, *counts, "--json"))
    for name in ("trodo_spans", "trodo_trace"):
        traced = results[name]
        assert traced["flushed"] is True
        assert traced["calls"] == 2 + 2 * 10
        assert traced["spans"] == traced["expected_spans"] == 4 * traced["calls"], results
    for name in names:
        for key in ("wall_us", "cpu_us", "process_cpu_us"):
            assert results[name][key] > 0 and len(results[name][f"added_{key}_quartiles"]) == 2, results
    langchain_overhead = bench_module("langchain_overhead")
    table = langchain_overhead.render(results)
    assert "| trodo_trace (TrodoCallbackHandler) |" in table, table
    assert re.search(
        r"trodo_trace added -?\d+ µs app-thread CPU per invocation \(median\), -?\d+ above", table
    )
    assert re.search(r"target at most 164 µs: (met|not met)\n", table), table
    assert re.search(r"the same 4 spans with nothing read \(bare trodo_trace spans\) add -?\d+ µs", table)


def test_llamaindex_overhead() -> None:
    counts = ["--runs", "5", "--blocks", "2", "--rounds", "1", "--warmup", "1"]
    results = last_json(run("llamaindex_overhead.py", "--only", "noop", "trodo_trace", *counts, "--json"))
    traced = results["trodo_trace"]
    assert traced["flushed"] is True
    assert traced["calls"] == 1 + 2 * 5 and traced["processes"] == 1
    # 5 spans per traced query, and the index built once per process (its embedding span)
    assert traced["spans"] == 5 * traced["calls"] + 1, results
    assert results["noop"]["spans"] == 0, results
    for name in ("noop", "trodo_trace"):
        assert len(results[name]["added_cpu_us_quartiles"]) == 2 and results[name]["cpu_us"] > 0, results
    llamaindex_overhead = bench_module("llamaindex_overhead")
    table = llamaindex_overhead.render(results)
    assert "| trodo_trace (instrument_llamaindex) |" in table, table
    assert re.search(r"target at most 1,170 µs: (met|not met)$", table), table
