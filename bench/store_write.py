"""Local store write throughput: finished spans written by the store exporter, batch after batch.

``--spans`` spans (4-span agent runs: a run root with rollups, an LLM call with usage and cost, a
tool and a retrieval, with small inputs and outputs) are built in memory first, then written with
``LocalStoreExporter.export`` in batches of ``--batch`` (the runtime's default is 512) to a new
store file; reported: spans per second of writing (wall clock and per CPU-second of the process, best of
``--repeat``), the file size and the machine's load (a shared machine slows the first figure).

Beside it, **SQLite alone**: the very rows the writer stored (spans, runs, resources), read back
and inserted into a new store file of the same schema and settings with one ``executemany`` per
table per batch, one transaction per batch, no Python work per row. It is the ceiling of this
schema on this machine: what the writer reaches minus its own work. A second line inserts the same
rows with every secondary index dropped: the ceiling of one row per span before any index.

Two more lines ask whether another layout of the spans would reach further, still with SQLite
alone: **several spans per row** (each batch's spans of one run as one row holding their JSON
array, indexed by run id so a run can be read, beside the same ``runs`` rows), and **the runs rows
alone** (the ``runs`` table with the indexes the CLI and dashboard filter on: user, conversation,
parent run, start time). Whatever the spans' layout, the writer inserts those run rows too.

With ``--source trodo`` the spans are trodo's own, recorded through the public API (the same 4-span
runs: an agent, an LLM call, a tool, a retrieval), and each batch takes the runtime's real path to
the store: ``Runtime.convert_spans`` (scrubbing, then the spans as they are) and the exporter.

Run: ``.venv/bin/python bench/store_write.py [--spans 200000] [--batch 512] [--repeat 3]
[--source sdk|trodo]`` (``make bench-store``).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from trodo_trace._internal.store import writer
from trodo_trace._internal.store.local import LocalStore, LocalStoreExporter

RESOURCE = Resource({"service.name": "bench", "telemetry.sdk.language": "python"})


def make_spans(count: int) -> list[ReadableSpan]:
    spans: list[ReadableSpan] = []
    start = 1_700_000_000_000_000_000
    run = 0
    while len(spans) < count:
        run += 1
        trace_id = run
        run_id = f"run-{run:012d}"
        root = SpanContext(trace_id, run * 8, False, TraceFlags(1))
        t0 = start + run * 10_000_000
        children = [
            (
                "llm.chat",
                "llm",
                {
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": 120,
                    "gen_ai.usage.output_tokens": 40,
                    "trodo.llm.cost": 0.0003,
                },
            ),
            ("lookup", "tool", {"trodo.tool.name": "lookup"}),
            ("search", "retrieval", {"trodo.retrieval.result_count": 3}),
        ]
        for offset, (name, kind, extra) in enumerate(children, start=1):
            context = SpanContext(trace_id, run * 8 + offset, False, TraceFlags(1))
            attrs = {
                "trodo.span.kind": kind,
                "trodo.run.id": run_id,
                "input.value": json.dumps({"q": "hi"}),
                "output.value": json.dumps({"a": "hello there"}),
                **extra,
            }
            spans.append(
                ReadableSpan(
                    name=name,
                    context=context,
                    parent=root,
                    resource=RESOURCE,
                    attributes=attrs,
                    kind=SpanKind.INTERNAL,
                    status=Status(StatusCode.OK),
                    start_time=t0 + offset,
                    end_time=t0 + offset + 1000,
                )
            )
        attrs = {
            "trodo.span.kind": "run",
            "trodo.run.id": run_id,
            "trodo.agent.name": "triage",
            "trodo.distinct_id": f"user-{run % 50}",
            "trodo.conversation_id": f"conv-{run % 200}",
            "trodo.run.status": "ok",
            "trodo.run.duration_ms": 1.0,
            "trodo.run.total_tokens_in": 120,
            "trodo.run.total_tokens_out": 40,
            "trodo.run.total_cost": 0.0003,
            "trodo.run.span_count": 4,
            "trodo.run.tool_count": 1,
            "trodo.run.error_count": 0,
            "input.value": json.dumps({"q": "hi"}),
            "output.value": json.dumps("done"),
        }
        spans.append(
            ReadableSpan(
                name="triage",
                context=root,
                parent=None,
                resource=RESOURCE,
                attributes=attrs,
                kind=SpanKind.INTERNAL,
                status=Status(StatusCode.OK),
                start_time=t0,
                end_time=t0 + 5000,
            )
        )
    return spans[:count]


def make_trodo_spans(count: int) -> tuple[list[Any], Any]:
    """``count`` finished spans of trodo's own (4-span runs), and the runtime that recorded them."""
    import trodo_trace as trodo
    from trodo_trace._internal import runtime as runtime_mod

    trodo.init(store_path=os.path.join(tempfile.mkdtemp(), "unused.db"), service_name="bench")
    runtime = runtime_mod.get()
    ended: list[Any] = []
    runtime.listeners.append(ended.append)
    runtime.pipeline.submit = lambda span: None  # kept here, written by measure()

    @trodo.llm(model="gpt-4o-mini", provider="openai")
    def chat(prompt: str) -> dict[str, Any]:
        return {"text": "hello there", "usage": {"prompt_tokens": 120, "completion_tokens": 40}}

    @trodo.tool
    def lookup(query: str) -> str:
        return "found"

    @trodo.retrieval
    def search(query: str) -> list[str]:
        return ["a", "b", "c"]

    run = 0
    while len(ended) < count:
        run += 1

        @trodo.agent("triage", distinct_id=f"user-{run % 50}", conversation_id=f"conv-{run % 200}")
        def triage(question: str) -> str:
            chat(question)
            lookup(question)
            search(question)
            return "done"

        triage("hi")
    return ended[:count], runtime


def sqlite_alone(source: Path, batch: int, indexes: bool = True) -> tuple[float, float]:
    """The rows of ``source`` inserted into a new store by SQLite alone: (rows/s, rows per CPU-second).
    ``indexes=False``: the same with every secondary index dropped first (the tables and their
    primary keys stay), what one row per span costs SQLite before any index."""
    with sqlite3.connect(source) as read:
        resources = read.execute("SELECT id, attributes FROM resources").fetchall()
        spans = read.execute(f"SELECT {', '.join(writer.SPAN_COLUMNS)} FROM spans ORDER BY rowid").fetchall()
        runs = read.execute(f"SELECT {', '.join(writer.RUN_COLUMNS)} FROM runs").fetchall()
    read.close()
    insert_span = (
        f"INSERT OR REPLACE INTO spans ({', '.join(writer.SPAN_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(writer.SPAN_COLUMNS))})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        conn = LocalStore(Path(tmp) / "trodo.db")._connect()  # the same schema and settings
        conn.executemany("INSERT INTO resources (id, attributes) VALUES (?, ?)", resources)
        if not indexes:
            named = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
            for (name,) in named.fetchall():
                conn.execute(f'DROP INDEX "{name}"')
        per_batch = max(1, round(len(runs) * batch / max(1, len(spans))))
        began, cpu_began = time.perf_counter(), time.process_time()
        for number, index in enumerate(range(0, len(spans), batch)):
            conn.execute("BEGIN")
            conn.executemany(insert_span, spans[index : index + batch])
            conn.executemany(writer.UPSERT_RUN, runs[number * per_batch : (number + 1) * per_batch])
            conn.execute("COMMIT")
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
        conn.close()
    return len(spans) / elapsed, len(spans) / cpu


BLOCKS_SCHEMA = (
    "CREATE TABLE span_blocks (id INTEGER PRIMARY KEY, run_id TEXT, trace_id TEXT, start_ns INTEGER, spans TEXT)",
    "CREATE INDEX span_blocks_run_id ON span_blocks (run_id)",
)


def sqlite_layouts(source: Path, batch: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """SQLite alone for the rows of ``source`` in other layouts: (spans/s, spans per CPU-second) with
    several spans per row (one row per run per batch) beside the runs rows, and for the runs rows alone."""
    with sqlite3.connect(source) as read:
        spans = read.execute(f"SELECT {', '.join(writer.SPAN_COLUMNS)} FROM spans ORDER BY rowid").fetchall()
        runs = read.execute(f"SELECT {', '.join(writer.RUN_COLUMNS)} FROM runs").fetchall()
    read.close()
    run_at, trace_at, start_at = (writer.SPAN_COLUMNS.index(c) for c in ("run_id", "trace_id", "start_ns"))
    blocks: list[list[tuple[Any, ...]]] = []
    for index in range(0, len(spans), batch):
        grouped: dict[Any, list[tuple[Any, ...]]] = {}
        for row in spans[index : index + batch]:
            grouped.setdefault(row[run_at] or row[trace_at], []).append(row)
        blocks.append(
            [
                (g[0][run_at], g[0][trace_at], g[0][start_at], json.dumps(g, separators=(",", ":")))
                for g in grouped.values()
            ]
        )
    per_batch = max(1, round(len(runs) * batch / max(1, len(spans))))
    results = []
    for with_spans in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            conn = LocalStore(Path(tmp) / "trodo.db")._connect()  # the runs table and settings of a store
            for statement in BLOCKS_SCHEMA:
                conn.execute(statement)
            began, cpu_began = time.perf_counter(), time.process_time()
            for number, rows in enumerate(blocks):
                conn.execute("BEGIN")
                if with_spans:
                    conn.executemany(
                        "INSERT INTO span_blocks (run_id, trace_id, start_ns, spans) VALUES (?, ?, ?, ?)",
                        rows,
                    )
                conn.executemany(writer.UPSERT_RUN, runs[number * per_batch : (number + 1) * per_batch])
                conn.execute("COMMIT")
            elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
            conn.close()
        results.append((len(spans) / elapsed, len(spans) / cpu))
    return results[0], results[1]


Rate = tuple[float, float]


def measure(
    spans: list[Any], batch: int, runtime: Any = None
) -> tuple[float, float, int, Rate, Rate, tuple[Rate, Rate]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trodo.db"
        exporter = LocalStoreExporter(path, resource=runtime.resource if runtime is not None else None)
        convert = runtime.convert_spans if runtime is not None else list
        exporter.store.open()
        began = time.perf_counter()
        cpu_began = time.process_time()
        for index in range(0, len(spans), batch):
            result = exporter.export(convert(spans[index : index + batch]))
            if getattr(result, "name", None) != "SUCCESS":
                raise SystemExit(f"export failed: {result}")
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu_began
        exporter.shutdown()
        size = os.path.getsize(path) + sum(os.path.getsize(p) for p in Path(tmp).glob("trodo.db-*"))
        alone = sqlite_alone(path, batch)
        bare = sqlite_alone(path, batch, indexes=False)
        layouts = sqlite_layouts(path, batch)
    return len(spans) / elapsed, len(spans) / cpu, size, alone, bare, layouts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--source", choices=("sdk", "trodo"), default="sdk")
    args = parser.parse_args()
    runtime = None
    if args.source == "trodo":
        spans, runtime = make_trodo_spans(args.spans)
    else:
        spans = list(make_spans(args.spans))
    best = best_cpu = alone = alone_cpu = bare = bare_cpu = 0.0
    blocks = blocks_cpu = runs = runs_cpu = 0.0
    size = 0
    for _ in range(args.repeat):
        rate, cpu_rate, size, (alone_rate, alone_cpu_rate), (bare_rate, bare_cpu_rate), layouts = measure(
            spans, args.batch, runtime
        )
        best, best_cpu = max(best, rate), max(best_cpu, cpu_rate)
        alone, alone_cpu = max(alone, alone_rate), max(alone_cpu, alone_cpu_rate)
        bare, bare_cpu = max(bare, bare_rate), max(bare_cpu, bare_cpu_rate)
        blocks, blocks_cpu = max(blocks, layouts[0][0]), max(blocks_cpu, layouts[0][1])
        runs, runs_cpu = max(runs, layouts[1][0]), max(runs_cpu, layouts[1][1])
    print(
        f"local store ({args.source} spans): {args.spans:,} spans in batches of {args.batch}: {best:,.0f} spans/s "
        f"(best of {args.repeat}; {best_cpu:,.0f} per CPU-second of this process), file {size / 2**20:.1f} MiB;"
        f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"SQLite alone, the same rows prebuilt, same schema and settings: {alone:,.0f} spans/s "
        f"({alone_cpu:,.0f} per CPU-second); the writer reaches {best / alone:.0%} of it"
    )
    print(
        f"SQLite alone, the same rows, no secondary index (tables and primary keys only): {bare:,.0f} spans/s "
        f"({bare_cpu:,.0f} per CPU-second)"
    )
    print(
        f"SQLite alone, several spans per row (one row per run per batch, indexed by run) and the same runs rows:"
        f" {blocks:,.0f} spans/s ({blocks_cpu:,.0f} per CPU-second)"
    )
    print(
        f"SQLite alone, the runs rows only (runs table and its indexes), counted in spans: {runs:,.0f} spans/s"
        f" ({runs_cpu:,.0f} per CPU-second)"
    )


if __name__ == "__main__":
    main()
