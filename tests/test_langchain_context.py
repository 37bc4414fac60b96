"""TrodoCallbackHandler and the OpenTelemetry context: decorated code nests under the LangChain run
that calls it in every execution mode, and nothing stays attached after a run, even when it fails,
is cancelled, is abandoned or misses an end callback."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from opentelemetry import trace
from test_langchain_fakes import node, search, sort_children

import trodo_trace as trodo
from trodo_trace._internal.core import errors
from trodo_trace.callbacks import _langchain_extract as extract
from trodo_trace.callbacks import _langchain_runs as runs
from trodo_trace.callbacks import langchain as lc
from trodo_trace.callbacks.langchain import TrodoCallbackHandler
from trodo_trace.testing import capture


@trodo.function
def helper(x: int) -> int:
    return x + 1


@trodo.function
def after() -> str:
    return "after"


def _chain():
    async def astep(x: int) -> int:
        await asyncio.sleep(0)
        return helper(x)

    step = RunnableLambda(lambda x: helper(x), afunc=astep, name="step")
    return step | RunnableLambda(lambda x: x * 10, name="finish")


def _item():
    return node(
        "RunnableSequence",
        "chain",
        node("step", "chain", node("helper", "function")),
        node("finish", "chain"),
    )


def _agent_tree(items: int):
    return [node("agent", "run", *[_item() for _ in range(items)], node("after", "function"))]


ERR = ("error.type",)


def _no_current_span() -> bool:
    return trace.get_current_span() is trace.INVALID_SPAN


SYNC_MODES = {
    "invoke": (lambda chain, config: chain.invoke(1, config), 1),
    "batch": (lambda chain, config: chain.batch([1, 2, 3], config), 3),
    "stream": (lambda chain, config: list(chain.stream(1, config)), 1),
    "threads": (
        lambda chain, config: list(ThreadPoolExecutor(3).map(lambda i: chain.invoke(i, config), [1, 2, 3])),
        3,
    ),
}


@pytest.mark.parametrize("mode", list(SYNC_MODES))
def test_decorated_code_nests_under_the_runnable_in_sync_modes(mode):
    """invoke/batch/stream/threads: the helper nests under its runnable; the agent's next call does not."""
    run, items = SYNC_MODES[mode]
    chain = _chain()
    handler = TrodoCallbackHandler()

    @trodo.agent("agent")
    def agent() -> str:
        run(chain, {"callbacks": [handler]})
        return after()

    with capture(deterministic=True) as traces:
        agent()
    assert sort_children(traces.tree(ERR)) == sort_children(_agent_tree(items))
    assert len({s.run_id for s in traces.spans}) == 1
    assert _no_current_span()
    assert not runs.RUNS


async def _aiter(chain, config):
    return [chunk async for chunk in chain.astream(1, config)]


ASYNC_MODES = {
    "ainvoke": (lambda chain, config: chain.ainvoke(1, config), 1),
    "abatch": (lambda chain, config: chain.abatch([1, 2, 3], config), 3),
    "astream": (_aiter, 1),
}


@pytest.mark.parametrize("mode", list(ASYNC_MODES))
async def test_decorated_code_nests_under_the_runnable_in_async_modes(mode):
    """ainvoke/abatch/astream: the helper nests under its runnable; the agent's next call does not."""
    run, items = ASYNC_MODES[mode]
    chain = _chain()
    handler = TrodoCallbackHandler()

    @trodo.agent("agent")
    async def agent() -> str:
        await run(chain, {"callbacks": [handler]})
        return after()

    with capture(deterministic=True) as traces:
        await agent()
    assert sort_children(traces.tree(ERR)) == sort_children(_agent_tree(items))
    assert _no_current_span()
    assert not runs.RUNS


def test_threads_started_outside_any_run_are_runs_of_their_own():
    """Plain threads each invoking the chain at top level: one complete run per thread, no mixing."""
    chain = _chain()
    handler = TrodoCallbackHandler()
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(chain.invoke(i, {"callbacks": [handler]})))
        for i in range(4)
    ]
    with capture(deterministic=True) as traces:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(results) == [10, 20, 30, 40]
    roots = traces.runs()
    assert len(roots) == 4
    for root in roots:
        assert traces.tree(ERR, run_id=root.run_id) == [_item()]
    assert not runs.RUNS


async def test_nothing_stays_current_after_a_top_level_ainvoke():
    """A top-level ainvoke (its end callback runs in another context) leaves no span current."""
    with capture(deterministic=True) as traces:
        await _chain().ainvoke(1, {"callbacks": [TrodoCallbackHandler()]})
        assert _no_current_span()
        after()
    assert traces.tree(ERR) == [_item(), node("after", "function")]
    assert len(traces.runs()) == 2


def test_opentelemetry_spans_in_a_tool_nest_under_it():
    """Inside a LangChain tool the current OpenTelemetry span is the tool's; tracer spans nest there."""

    @tool
    def lookup(query: str) -> str:
        """Look up."""
        assert trace.get_current_span().name == "lookup"
        with trodo.get_tracer().start_as_current_span("http-call"):
            return query

    with capture(deterministic=True) as traces:
        lookup.invoke({"query": "q"}, config={"callbacks": [TrodoCallbackHandler()]})
    assert traces.tree(ERR) == [node("lookup", "tool", node("http-call", "function"))]


@pytest.mark.parametrize("use_async", [False, True])
async def test_an_error_interrupting_a_chain_leaves_no_context_behind(use_async):
    """A runnable raising mid-chain: spans are errors, and the agent's next call is its own child."""

    def fail(x: int) -> int:
        raise KeyError("missing")

    chain = _chain() | RunnableLambda(fail, name="fail")
    handler = TrodoCallbackHandler()

    @trodo.agent("agent")
    async def agent() -> str:
        with pytest.raises(KeyError):
            if use_async:
                await chain.ainvoke(1, {"callbacks": [handler]})
            else:
                chain.invoke(1, {"callbacks": [handler]})
        return after()

    with capture(deterministic=True) as traces:
        await agent()
    assert traces.tree(ERR) == [
        node(
            "agent",
            "run",
            node(
                "RunnableSequence",
                "chain",
                node("step", "chain", node("helper", "function")),
                node("finish", "chain"),
                node("fail", "chain", status="ERROR", attrs={"error.type": "KeyError"}),
                status="ERROR",
                attrs={"error.type": "KeyError"},
            ),
            node("after", "function"),
        )
    ]
    assert _no_current_span()
    assert not runs.RUNS


def test_a_missed_end_callback_does_not_capture_the_next_request():
    """A run whose end never comes: the next invocation and the next agent are runs of their own."""
    handler = TrodoCallbackHandler()
    lost = uuid.uuid4()
    with capture(deterministic=True) as traces:
        handler.on_chain_start({}, {"q": 1}, run_id=lost, name="lost")
        assert trace.get_current_span().name == "lost"
        _chain().invoke(1, {"callbacks": [handler]})
        trodo.agent("next-request")(after)()
        handler.on_chain_end("late", run_id=lost)
    assert traces.tree(ERR) == [
        node("lost", "chain"),
        _item(),
        node("next-request", "run", node("after", "function")),
    ]
    assert len(traces.runs()) == 3
    assert _no_current_span()


async def test_a_cancelled_tool_is_ended_with_its_run():
    """An async tool cancelled mid-call is ended with its run, marked cancelled or unfinished; no context leaks.

    LangChain releases differ: some send ``on_tool_error(CancelledError)`` for the tool, others send
    nothing. Either way the tool's span must be ended, say why, and leave nothing open or current.
    """
    started = asyncio.Event()

    @tool
    async def slow(query: str) -> str:
        """Takes forever."""
        started.set()
        await asyncio.sleep(30)
        return query

    agent = RunnableLambda(
        lambda q: q, afunc=lambda q, config: slow.ainvoke({"query": q}, config), name="agent"
    )
    with capture(deterministic=True) as traces:
        task = asyncio.create_task(agent.ainvoke("q", {"callbacks": [TrodoCallbackHandler()]}))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    tree = traces.tree(("trodo.cancelled", runs.UNFINISHED))
    tool_node = tree[0]["children"][0]
    tool_marks = tool_node["attributes"]
    # Cancelled (an end callback arrived) or unfinished (none did, so it was closed with its run).
    assert tool_marks in ({"trodo.cancelled": True}, {runs.UNFINISHED: True}), tool_marks
    expected_status = "ERROR" if "trodo.cancelled" in tool_marks else "OK"
    assert tree == [
        node(
            "agent",
            "chain",
            node("slow", "tool", status=tool_node["status"], attrs=tool_marks),
            status="ERROR",
            attrs={"trodo.cancelled": True},
        )
    ]
    assert tool_node["status"] == expected_status, tool_node
    assert not runs.RUNS
    assert _no_current_span()


def test_an_abandoned_stream_is_closed_and_leaves_no_context():
    """A stream dropped after its first chunk: its spans end, and nothing stays current."""
    chain = _chain()
    with capture(deterministic=True) as traces:
        stream = chain.stream(1, {"callbacks": [TrodoCallbackHandler()]})
        assert next(stream) == 20
        del stream
        assert _no_current_span()
        after()
    assert traces.tree(ERR) == [_item(), node("after", "function")]
    assert not runs.RUNS


def test_instrument_langchain_traces_everything_once():
    """instrument_langchain(): invocations without callbacks are traced, and an explicit handler is not doubled."""
    chain = _chain()
    handler = trodo.instrument_langchain(distinct_id="everyone")
    try:
        assert trodo.instrument_langchain() is handler
        with capture(deterministic=True) as traces:
            chain.invoke(1)
            chain.invoke(2, {"callbacks": [TrodoCallbackHandler(distinct_id="explicit")]})
            chain.invoke(3, {"callbacks": [TrodoCallbackHandler(), TrodoCallbackHandler()]})
        assert traces.tree(("trodo.distinct_id",)) == [
            {**_item(), "attributes": {"trodo.distinct_id": "everyone"}},
            {**_item(), "attributes": {"trodo.distinct_id": "explicit"}},
            {**_item(), "attributes": {}},
        ]
    finally:
        lc.uninstrument()
    with capture() as traces:
        chain.invoke(1)
    assert [s.name for s in traces.spans] == ["helper"]


def test_hidden_runs_are_skipped_and_their_children_reattached():
    """Runs tagged langsmith:hidden get no span; their children nest under the nearest recorded run."""
    handler = TrodoCallbackHandler()
    outer, hidden, inner = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with capture(deterministic=True) as traces:
        handler.on_chain_start({}, {}, run_id=outer, name="outer")
        handler.on_chain_start(
            {}, {}, run_id=hidden, parent_run_id=outer, tags=[extract.HIDDEN_TAG], name="__start__"
        )
        handler.on_chain_start({}, {}, run_id=inner, parent_run_id=hidden, name="inner")
        helper(1)
        handler.on_chain_end({}, run_id=inner)
        handler.on_chain_end({}, run_id=hidden)
        handler.on_chain_end({}, run_id=outer)
    assert traces.tree(ERR) == [node("outer", "chain", node("inner", "chain", node("helper", "function")))]
    assert not runs.HIDDEN
    assert not runs.RUNS
    assert _no_current_span()


def test_a_failing_extractor_costs_only_its_field(monkeypatch, caplog):
    """An extractor raising: the chain runs on, the span is recorded without that field, a log says why."""
    monkeypatch.setattr(errors, "RAISE_INTERNAL", False)

    def broken_reader(*args):
        raise RuntimeError("unexpected shape")

    monkeypatch.setattr(extract, "model_attributes", broken_reader)
    handler = TrodoCallbackHandler()
    assert handler.raise_error is False
    from test_langchain_fakes import ScriptedChatModel

    with caplog.at_level(logging.WARNING, logger="trodo_trace"), capture(deterministic=True) as traces:
        reply = ScriptedChatModel().invoke("hi", config={"callbacks": [handler]})
    assert reply.content == "echo: hi"
    keys = ("gen_ai.request.temperature", "gen_ai.provider.name", "gen_ai.usage.input_tokens")
    assert traces.tree(keys) == [node("ScriptedChatModel", "llm", attrs={"gen_ai.usage.input_tokens": 100})]
    assert "internal error in langchain extractor broken_reader" in caplog.text


def test_a_failing_handler_never_breaks_the_chain(monkeypatch):
    """The handler failing outright (span start raising) leaves LangChain's result untouched."""
    monkeypatch.setattr(errors, "RAISE_INTERNAL", False)

    def no_spans(*args, **kwargs):
        raise RuntimeError("tracing is broken")

    monkeypatch.setattr(runs, "start_span", no_spans)
    with capture() as traces:
        assert search.invoke({"query": "Q"}, config={"callbacks": [TrodoCallbackHandler()]}) == "found q"
    assert [s.name for s in traces.spans] == ["normalise"]


def test_importing_trodo_trace_does_not_import_langchain():
    """import trodo_trace stays free of LangChain until the integration is used."""
    code = (
        "import sys, trodo_trace\n"
        "assert 'langchain_core' not in sys.modules\n"
        "trodo_trace.instrument_langchain()\n"
        "assert 'langchain_core' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
