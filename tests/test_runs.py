"""Runs: sub-runs, wrap_agent, conversations, handles and isolation under concurrency."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

import trodo_trace as trodo
from trodo_trace.testing import capture

RUN_KEYS = (
    "trodo.run.id",
    "trodo.parent_run_id",
    "trodo.run.span_count",
    "trodo.run.tool_count",
    "trodo.run.total_tokens_in",
    "trodo.distinct_id",
    "trodo.conversation_id",
)


def test_sub_run_has_parent_and_separate_rollups():
    """sub_run=True starts a run under the current one; each run counts only its own spans."""

    @trodo.tool
    def fetch():
        return 1

    @trodo.llm(model="gpt-4o")
    def think():
        return {"usage": {"prompt_tokens": 10, "completion_tokens": 1}}

    @trodo.agent("researcher", sub_run=True)
    def researcher():
        fetch()
        think()

    @trodo.agent("stage")
    def stage():
        fetch()

    @trodo.agent("boss", distinct_id="u", conversation_id="c")
    def boss():
        stage()
        researcher()

    with capture(deterministic=True) as traces:
        boss()
    parent = "00000000000000000000000000000001"
    child = "00000000000000000000000000000002"
    assert traces.tree(RUN_KEYS) == [
        {
            "name": "boss",
            "kind": "run",
            "status": "OK",
            "attributes": {
                "trodo.run.id": parent,
                "trodo.run.span_count": 3,
                "trodo.run.tool_count": 1,
                "trodo.run.total_tokens_in": 0,
                "trodo.distinct_id": "u",
                "trodo.conversation_id": "c",
            },
            "children": [
                {
                    "name": "stage",
                    "kind": "agent",
                    "status": "OK",
                    "attributes": {"trodo.run.id": parent},
                    "children": [
                        {
                            "name": "fetch",
                            "kind": "tool",
                            "status": "OK",
                            "attributes": {"trodo.run.id": parent},
                            "children": [],
                        }
                    ],
                },
                {
                    "name": "researcher",
                    "kind": "run",
                    "status": "OK",
                    "attributes": {
                        "trodo.run.id": child,
                        "trodo.parent_run_id": parent,
                        "trodo.run.span_count": 3,
                        "trodo.run.tool_count": 1,
                        "trodo.run.total_tokens_in": 10,
                        "trodo.distinct_id": "u",
                        "trodo.conversation_id": "c",
                    },
                    "children": [
                        {
                            "name": "fetch",
                            "kind": "tool",
                            "status": "OK",
                            "attributes": {"trodo.run.id": child},
                            "children": [],
                        },
                        {
                            "name": "think",
                            "kind": "llm",
                            "status": "OK",
                            "attributes": {"trodo.run.id": child},
                            "children": [],
                        },
                    ],
                },
            ],
        }
    ]
    assert (
        "trodo.run.total_cost" not in traces.run(parent).attributes
        or traces.run(parent).attributes["trodo.run.total_cost"] == 0.0
    )
    assert traces.run(child).attributes["trodo.run.total_cost"] == pytest.approx(10 * 2.5e-6 + 1 * 10e-6)


def test_wrap_agent_returns_result_and_run_id_and_nests_as_sub_run():
    """wrap_agent always starts a run; inside another run it is a sub-run with parent_run_id."""
    seen = {}

    def inner(run):
        seen["inner"] = run
        run.set_input({"q": 1})
        run.set_metadata({"tier": "pro"}, region="eu")
        return "inner-result"

    def outer(run):
        seen["outer"] = run
        assert trodo.current_run() is run
        result, inner_id = trodo.wrap_agent("inner", inner, distinct_id="other-user")
        assert trodo.current_run() is run
        return result, inner_id

    with capture() as traces:
        (result, inner_id), outer_id = trodo.wrap_agent("outer", outer, distinct_id="u", conversation_id="c")
    assert result == "inner-result"
    assert inner_id == seen["inner"].run_id and outer_id == seen["outer"].run_id
    inner_root = traces.run(inner_id)
    assert inner_root.attributes["trodo.parent_run_id"] == outer_id
    assert inner_root.attributes["trodo.distinct_id"] == "other-user"
    assert inner_root.attributes["trodo.conversation_id"] == "c"
    assert json.loads(inner_root.attributes["trodo.metadata"]) == {"tier": "pro", "region": "eu"}
    assert inner_root.attributes["input.value"] == '{"q":1}'
    assert inner_root.attributes["output.value"] == '"inner-result"'
    assert inner_root.parent_id == traces.run(outer_id).span_id
    assert seen["outer"].status == "ok"


async def test_wrap_agent_async_and_explicit_parent():
    """An async fn makes wrap_agent awaitable; parent_run_id can be given explicitly."""

    async def work(run):
        await asyncio.sleep(0)
        return run.run_id

    with capture() as traces:
        result, run_id = await trodo.wrap_agent(
            "async-agent", work, parent_run_id="abc123", metadata={"k": 1}
        )
    assert result == run_id
    root = traces.run(run_id)
    assert root.kind == "run"
    assert root.attributes["trodo.parent_run_id"] == "abc123"


def test_wrap_agent_rejects_bad_arguments():
    """wrap_agent names the bad argument."""
    with pytest.raises(ValueError, match="name"):
        trodo.wrap_agent("", lambda run: None)
    with pytest.raises(TypeError, match="fn"):
        trodo.wrap_agent("x", 42)
    with pytest.raises(TypeError, match="distinct_id"):
        trodo.wrap_agent("x", lambda run: None, distinct_id=7)
    with pytest.raises(TypeError, match="metadata"):
        trodo.wrap_agent("x", lambda run: None, metadata=[1])


def test_conversation_links_runs():
    """Runs of one conversation carry its id in all three conventions."""

    @trodo.agent(conversation_id="conv-9")
    def turn(text):
        return text

    with capture() as traces:
        turn("one")
        turn("two")
    roots = traces.runs()
    assert [r.attributes["trodo.conversation_id"] for r in roots] == ["conv-9", "conv-9"]
    assert {r.attributes["session.id"] for r in roots} == {"conv-9"}
    assert len({r.run_id for r in roots}) == 2


def test_current_span_and_run_handles():
    """current_span()/current_run() expose the setters; outside a run they are None."""
    assert trodo.current_span() is None and trodo.current_run() is None

    @trodo.llm
    def call():
        span = trodo.current_span()
        span.set_model("claude-3-5-sonnet-20241022", provider="anthropic")
        span.set_usage(input_tokens=1000, output_tokens=100, cache_read_tokens=400)
        span.set_attribute("custom.flag", True)
        span.set_attributes({"custom.n": 3})
        span.set_input("prompt text")
        return "answer"

    @trodo.agent
    def agent():
        run = trodo.current_run()
        run.set_error_summary("partial answer")
        call()
        trodo.current_span().set_output({"final": True})
        return "ignored because set_output was called"

    with capture() as traces:
        agent()
    llm = traces.by_name("call")
    assert llm.attributes["gen_ai.request.model"] == "claude-3-5-sonnet-20241022"
    assert llm.attributes["gen_ai.provider.name"] == "anthropic"
    assert llm.attributes["llm.token_count.total"] == 1100
    assert llm.attributes["llm.token_count.prompt_details.cache_read"] == 400
    assert llm.attributes["input.value"] == '"prompt text"'
    assert llm.attributes["custom.flag"] is True and llm.attributes["custom.n"] == 3
    assert llm.attributes["trodo.llm.cost"] == pytest.approx((600 * 3 + 400 * 0.3 + 100 * 15) / 1e6)
    root = traces.runs()[0]
    assert root.attributes["output.value"] == '{"final":true}'
    assert root.attributes["trodo.run.error_summary"] == "partial answer"


def test_set_usage_and_set_model_reject_bad_values():
    """Handle setters name the bad argument."""
    with trodo.llm("x") as span:
        with pytest.raises(ValueError, match="input_tokens"):
            span.set_usage(input_tokens=-1)
        with pytest.raises(ValueError, match="output_tokens"):
            span.set_usage(output_tokens="3")
        with pytest.raises(ValueError, match="model"):
            span.set_model("")


def test_context_manager_forms_build_the_same_tree():
    """Each helper works as a context manager, sync and async, with with_span and trace."""

    async def main():
        with trodo.agent("bot", distinct_id="u") as run_span:
            run_span.set_input("q")
            with trodo.tool("search") as tool_span:
                tool_span.set_output([1])
            async with trodo.llm("gen", model="gpt-4o") as llm_span:
                llm_span.set_usage(input_tokens=5, output_tokens=5)
            with trodo.with_span("load", kind="retrieval", attributes={"custom": 1}):
                pass
            with trodo.trace("step", kind="chain"):
                pass
            with trodo.function("f"), trodo.chain("c"), trodo.retrieval("r"):
                pass

    with capture(deterministic=True) as traces:
        asyncio.run(main())
    assert traces.tree() == [
        {
            "name": "bot",
            "kind": "run",
            "status": "OK",
            "children": [
                {"name": "search", "kind": "tool", "status": "OK", "children": []},
                {"name": "gen", "kind": "llm", "status": "OK", "children": []},
                {"name": "load", "kind": "retrieval", "status": "OK", "children": []},
                {"name": "step", "kind": "chain", "status": "OK", "children": []},
                {
                    "name": "f",
                    "kind": "function",
                    "status": "OK",
                    "children": [
                        {
                            "name": "c",
                            "kind": "chain",
                            "status": "OK",
                            "children": [{"name": "r", "kind": "retrieval", "status": "OK", "children": []}],
                        }
                    ],
                },
            ],
        }
    ]
    assert traces.by_name("gen").attributes["trodo.llm.cost"] == pytest.approx(5 * 2.5e-6 + 5 * 10e-6)
    assert traces.by_name("load").attributes["custom"] == 1


def test_context_manager_records_errors_and_reraises():
    """An exception leaving a with-block marks the span and propagates."""
    with capture() as traces, pytest.raises(ZeroDivisionError):
        with trodo.tool("divide"):
            _ = 1 / 0
    assert traces.by_name("divide").attributes["error.type"] == "ZeroDivisionError"


def test_unknown_kind_and_bad_names_raise():
    """with_span/trace name the bad argument."""
    with pytest.raises(ValueError, match="kind"):
        trodo.with_span("x", kind="database")
    with pytest.raises(ValueError, match="kind"):
        trodo.trace("x", kind="nope")
    with pytest.raises(ValueError, match="name"):
        trodo.with_span("")
    with pytest.raises(TypeError, match="name"):
        trodo.tool(123)
    with pytest.raises(TypeError, match="distinct_id"):
        trodo.agent(distinct_id=5)
    with pytest.raises(TypeError, match="temperature"):
        trodo.llm(temperature="hot")


async def test_hundred_concurrent_tasks_keep_their_runs_apart():
    """100 asyncio tasks, each its own run: every span lands in its own task's run."""

    @trodo.tool
    async def step(task_id, i):
        await asyncio.sleep(0)
        return task_id

    @trodo.agent
    async def agent(task_id):
        for i in range(3):
            await step(task_id, i)
        return task_id

    with capture() as traces:
        await asyncio.gather(*(agent(t) for t in range(100)))
    roots = traces.runs()
    assert len(roots) == 100
    for root in roots:
        task_id = json.loads(root.attributes["input.value"])["task_id"]
        spans = traces.run_spans(root.run_id)
        assert len(spans) == 4
        children = [s for s in spans if s is not root and s.name == "step"]
        assert all(json.loads(s.attributes["input.value"])["task_id"] == task_id for s in children)
        assert all(s.parent_id == root.span_id and s.trace_id == root.trace_id for s in children)
        assert root.attributes["trodo.run.span_count"] == 4


def test_eight_threads_keep_their_runs_apart():
    """8 threads each running agents: no span lands in another thread's run."""

    @trodo.tool
    def step(worker, i):
        return worker

    @trodo.agent
    def agent(worker, n):
        for i in range(5):
            step(worker, i)

    barrier = threading.Barrier(8)

    def worker(w):
        barrier.wait()
        for n in range(25):
            agent(w, n)

    with capture() as traces:
        threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    roots = traces.runs()
    assert len(roots) == 200
    for root in roots:
        worker_id = json.loads(root.attributes["input.value"])["worker"]
        spans = [s for s in traces.run_spans(root.run_id) if s is not root]
        assert len(spans) == 5
        assert all(json.loads(s.attributes["input.value"])["worker"] == worker_id for s in spans)
        assert all(s.parent_id == root.span_id for s in spans)
        assert root.attributes["trodo.run.span_count"] == 6
