"""Build ``store_v1.db``: a local store written by the release before schema version 2.

The store module of that release (commit 6193a8d) is read from git and writes real spans: a run
with an unpriced LLM call (``cost_incomplete``), a span joined from another process, a sub-run and
an event. Run from the repository root: ``.venv/bin/python tests/data/make_store_v1.py``.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import types

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

RELEASE = "6193a8d"
HERE = pathlib.Path(__file__).resolve().parent
T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def old_store_module() -> types.ModuleType:
    source = subprocess.run(
        ["git", "show", f"{RELEASE}:trodo_trace/_internal/store/local.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("trodo_trace._internal.store.local_v1")
    module.__package__ = "trodo_trace._internal.store"
    sys.modules[module.__name__] = module
    exec(compile(source, "local_v1.py", "exec"), module.__dict__)
    return module


def span(name, trace, span_id, parent, start, end, attrs, service="svc-v1"):
    def ctx(sid):
        return SpanContext(trace, sid, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))

    return ReadableSpan(
        name=name,
        context=ctx(span_id),
        parent=ctx(parent) if parent is not None else None,
        resource=Resource({"service.name": service}),
        attributes=attrs,
        status=Status(StatusCode.OK),
        start_time=start,
        end_time=end,
    )


def main() -> None:
    target = HERE / "store_v1.db"
    target.unlink(missing_ok=True)
    local = old_store_module()
    root = {
        "trodo.span.kind": "run",
        "trodo.run.id": "run-v1-parent",
        "trodo.agent.name": "planner",
        "trodo.distinct_id": "user-7",
        "trodo.conversation_id": "conv-7",
        "trodo.run.status": "ok",
        "trodo.run.total_tokens_in": 10,
        "trodo.run.total_tokens_out": 5,
        "trodo.run.total_cost": 0.0,
        "trodo.run.cost_incomplete": True,
        "trodo.run.span_count": 2,
        "trodo.run.tool_count": 0,
        "trodo.run.error_count": 0,
        "trodo.run.duration_ms": 100.0,
    }
    llm = {
        "trodo.span.kind": "llm",
        "trodo.run.id": "run-v1-parent",
        "gen_ai.request.model": "in-house-model",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 5,
    }
    joined = {"trodo.span.kind": "tool", "trodo.run.id": "run-v1-parent", "trodo.run.joined": True}
    sub = {
        "trodo.span.kind": "run",
        "trodo.run.id": "run-v1-child",
        "trodo.agent.name": "researcher",
        "trodo.parent_run_id": "run-v1-parent",
        "trodo.distinct_id": "user-7",
        "trodo.conversation_id": "conv-7",
        "trodo.run.status": "ok",
        "trodo.run.span_count": 1,
        "trodo.run.tool_count": 0,
        "trodo.run.error_count": 0,
    }
    with local.LocalStore(target) as store:
        store.export_spans(
            [
                span("call-model", 0xA, 2, 1, T0 + 10 * MS, T0 + 50 * MS, llm),
                span("remote-tool", 0xA, 3, 1, T0 + 60 * MS, T0 + 70 * MS, joined, service="svc-remote"),
                span("planner", 0xA, 1, None, T0, T0 + 100 * MS, root),
                span("researcher", 0xB, 4, None, T0 + 200 * MS, T0 + 300 * MS, sub),
            ]
        )
        store.write_events(
            [
                {
                    "dedup_key": "e1",
                    "ts_ns": T0 + 20 * MS,
                    "name": "signup",
                    "distinct_id": "user-7",
                    "category": "product",
                    "run_id": "run-v1-parent",
                    "properties": {"plan": "pro"},
                }
            ]
        )
        store.open().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
