"""Build ``store_v2.db``: a local store written by the release before schema version 3.

That release's package (commit 60ce9f9) is taken from git into a temporary directory and writes
real spans of two services (two resources): a run with an unpriced LLM call, a span joined from
another process, a sub-run, a span outside any run, an event and a ``push`` cursor entry. Run from
the repository root: ``.venv/bin/python tests/data/make_store_v2.py``.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

RELEASE = "60ce9f9"
HERE = pathlib.Path(__file__).resolve().parent
T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def write(target: pathlib.Path) -> None:
    """Runs under the old release's package (see :func:`main`)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

    from trodo_trace._internal.store.local import SCHEMA_VERSION, LocalStore

    assert SCHEMA_VERSION == 2, SCHEMA_VERSION

    def span(name, trace, span_id, parent, start, end, attrs, service="svc-v2"):
        def ctx(sid):
            return SpanContext(trace, sid, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))

        return ReadableSpan(
            name=name,
            context=ctx(span_id),
            parent=ctx(parent) if parent is not None else None,
            resource=Resource({"service.name": service, "deployment.environment": "test"}),
            attributes=attrs,
            status=Status(StatusCode.OK),
            start_time=start,
            end_time=end,
        )

    root = {
        "trodo.span.kind": "run",
        "trodo.run.id": "run-v2-parent",
        "trodo.agent.name": "planner",
        "trodo.distinct_id": "user-8",
        "trodo.conversation_id": "conv-8",
        "trodo.run.status": "ok",
        "trodo.run.total_tokens_in": 10,
        "trodo.run.total_tokens_out": 5,
        "trodo.run.total_cost": 0.0,
        "trodo.run.cost_incomplete": True,
        "trodo.run.span_count": 2,
        "trodo.run.tool_count": 0,
        "trodo.run.error_count": 0,
        "trodo.run.duration_ms": 100.0,
        "input.value": '{"question": "plan"}',
    }
    llm = {
        "trodo.span.kind": "llm",
        "trodo.run.id": "run-v2-parent",
        "gen_ai.request.model": "in-house-model",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 5,
    }
    joined = {"trodo.span.kind": "tool", "trodo.run.id": "run-v2-parent", "trodo.run.joined": True}
    sub = {
        "trodo.span.kind": "run",
        "trodo.run.id": "run-v2-child",
        "trodo.agent.name": "researcher",
        "trodo.parent_run_id": "run-v2-parent",
        "trodo.distinct_id": "user-8",
        "trodo.conversation_id": "conv-8",
        "trodo.run.status": "ok",
        "trodo.run.span_count": 1,
        "trodo.run.tool_count": 0,
        "trodo.run.error_count": 0,
    }
    with LocalStore(target) as store:
        store.export_spans(
            [
                span("call-model", 0xA, 2, 1, T0 + 10 * MS, T0 + 50 * MS, llm),
                span("remote-tool", 0xA, 3, 1, T0 + 60 * MS, T0 + 70 * MS, joined, service="svc-remote"),
                span("planner", 0xA, 1, None, T0, T0 + 100 * MS, root),
                span("researcher", 0xA, 4, 2, T0 + 20 * MS, T0 + 40 * MS, sub),
                span("health-check", 0xC, 5, None, T0 + 500 * MS, T0 + 501 * MS, {"http.route": "/health"}),
            ]
        )
        store.write_events(
            [
                {
                    "dedup_key": "e2",
                    "ts_ns": T0 + 20 * MS,
                    "name": "signup",
                    "distinct_id": "user-8",
                    "category": "product",
                    "run_id": "run-v2-parent",
                    "properties": {"plan": "team"},
                }
            ]
        )
        store.mark_pushed("http://collector:4318", ["run:run-v2-child"])
        store.open().execute("PRAGMA wal_checkpoint(TRUNCATE)")


def main() -> None:
    target = HERE / "store_v2.db"
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "archive", RELEASE, "trodo_trace"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import make_store_v2; make_store_v2.write({str(target)!r})"
        env = {**os.environ, "PYTHONPATH": tmp}
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
