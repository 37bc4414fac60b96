"""The local store's run rollups add the spans other processes recorded in a joined run."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from trodo_trace._internal.store.local import LocalStore

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
RUN = "4d1f0c2a9b8e7d6c5b4a392817161514"
TRACE = 0xABC
ROLLUP_COLUMNS = ("span_count", "tool_count", "error_count", "tokens_in", "tokens_out", "cost")


def _ctx(span_id: int) -> SpanContext:
    return SpanContext(TRACE, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def _span(name, span_id, parent_id, attrs, *, service, error=False):
    return ReadableSpan(
        name=name,
        context=_ctx(span_id),
        parent=_ctx(parent_id) if parent_id else None,
        resource=Resource({"service.name": service}),
        attributes={"trodo.run.id": RUN, **attrs},
        status=Status(StatusCode.ERROR, "boom") if error else Status(StatusCode.OK),
        start_time=T0 + span_id * MS,
        end_time=T0 + span_id * MS + MS,
    )


def caller_spans(cost_incomplete: bool = False) -> list[ReadableSpan]:
    """The caller's root (its rollups count its own 2 spans) and its tool."""
    root_attrs = {
        "trodo.span.kind": "run",
        "trodo.agent.name": "checkout",
        "trodo.run.span_count": 2,
        "trodo.run.tool_count": 1,
        "trodo.run.error_count": 0,
        "trodo.run.total_tokens_in": 10,
        "trodo.run.total_tokens_out": 5,
    }
    if cost_incomplete:
        root_attrs["trodo.run.cost_incomplete"] = True
    else:
        root_attrs["trodo.run.total_cost"] = 0.25
    return [
        _span("fetch", 2, 1, {"trodo.span.kind": "tool"}, service="caller"),
        _span("checkout", 1, None, root_attrs, service="caller"),
    ]


def remote_spans(priced: bool = True) -> list[ReadableSpan]:
    """A service's request span (joined) with a failing tool and an LLM call under it."""
    joined = {"trodo.run.joined": True}
    llm = {
        "trodo.span.kind": "llm",
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 20,
        **joined,
    }
    if priced:
        llm["trodo.llm.cost"] = 0.5
    return [
        _span("lookup", 4, 3, {"trodo.span.kind": "tool", **joined}, service="api", error=True),
        _span("summarize", 5, 3, llm, service="api"),
        _span("GET /orders/{id}", 3, 2, {"trodo.span.kind": "chain", **joined}, service="api"),
    ]


def rollups(store: LocalStore) -> tuple:
    run = store.get_run(RUN)
    return tuple(run[column] for column in ROLLUP_COLUMNS)


@pytest.fixture
def store(tmp_path):
    with LocalStore(tmp_path / "trodo.db") as s:
        yield s


@pytest.mark.parametrize("remote_first", [False, True])
def test_rollups_count_joined_spans_whatever_arrives_first(store, remote_first):
    """Root first or remote spans first, the run row ends with both processes' spans, tokens and cost."""
    batches = [caller_spans(), remote_spans()]
    for batch in reversed(batches) if remote_first else batches:
        store.export_spans(batch)
    assert rollups(store) == (5, 2, 1, 110, 25, 0.75)
    assert len(store.get_spans(RUN)) == 5


def test_reexport_does_not_double_count(store):
    """Exporting the same spans again (e.g. a retried batch) leaves the rollups unchanged."""
    store.export_spans(caller_spans())
    store.export_spans(remote_spans())
    store.export_spans(remote_spans())
    store.export_spans(caller_spans())
    assert rollups(store) == (5, 2, 1, 110, 25, 0.75)


def test_joined_spans_without_a_full_root_leave_no_rollups(store):
    """Until the run's root (with its rollups) arrives, no run row is invented from joined spans."""
    store.export_spans(remote_spans())
    assert store.get_run(RUN) is None


def test_unpriced_joined_llm_keeps_cost_known_part_or_unknown(store):
    """A joined LLM span without a cost leaves the priced part as the cost; with nothing priced it is NULL."""
    store.export_spans(caller_spans())
    store.export_spans(remote_spans(priced=False))
    assert rollups(store) == (5, 2, 1, 110, 25, 0.25)


def test_unpriced_everywhere_is_null_cost(tmp_path):
    """An incomplete root cost plus unpriced joined LLM calls stores cost NULL, not 0."""
    with LocalStore(tmp_path / "t.db") as store:
        store.export_spans(caller_spans(cost_incomplete=True))
        store.export_spans(remote_spans(priced=False))
        assert rollups(store) == (5, 2, 1, 110, 25, None)


def test_runs_without_joined_spans_keep_the_roots_rollups(store):
    """Without joined spans, the run row is exactly the root's own rollups (nothing recomputed)."""
    store.export_spans(caller_spans()[1:])  # the root alone: its rollups say 2 spans
    assert rollups(store) == (2, 1, 0, 10, 5, 0.25)
