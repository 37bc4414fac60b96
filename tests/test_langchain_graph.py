"""TrodoCallbackHandler with LangGraph: graphs as agent runs, nodes as chains, runs inside
``@trodo.agent``, and many concurrent invocations each in their own run."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from test_langchain_fakes import ScriptedChatModel, node, search
from typing_extensions import TypedDict

import trodo_trace as trodo
from trodo_trace.callbacks.langchain import TrodoCallbackHandler
from trodo_trace.testing import capture

KEYS = ("langgraph.node", "langgraph.step", "trodo.tool.name", "gen_ai.usage.input_tokens")


class State(TypedDict):
    messages: Annotated[list, add_messages]


def _graph(name: str | None = None) -> Any:
    model = ScriptedChatModel().bind_tools([search])

    def call_model(state: State, config: RunnableConfig) -> dict[str, Any]:
        # Passing config on is what LangChain asks of nodes for Python 3.10, where asyncio tasks
        # do not inherit the callbacks through contextvars (3.11+ they do): the graph is traced alike.
        return {"messages": [model.invoke(state["messages"], config)]}

    builder = StateGraph(State)
    builder.add_node("agent", call_model)
    builder.add_node("tools", ToolNode([search]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    graph = builder.compile()
    return graph.with_config(run_name=name) if name else graph


def _graph_tree(name: str = "LangGraph", kind: str = "run", attrs: dict[str, Any] | None = None):
    def model_node(step: int) -> dict[str, Any]:
        return node(
            "agent",
            "chain",
            node("ScriptedChatModel", "llm", attrs={"gen_ai.usage.input_tokens": 100}),
            node("tools_condition", "chain", attrs={"langgraph.node": "agent", "langgraph.step": step}),
            attrs={"langgraph.node": "agent", "langgraph.step": step},
        )

    return node(
        name,
        kind,
        model_node(1),
        node(
            "tools",
            "chain",
            node(
                "search",
                "tool",
                node("normalise", "tool", attrs={"trodo.tool.name": "normalise"}),
                attrs={"trodo.tool.name": "search"},
            ),
            attrs={"langgraph.node": "tools", "langgraph.step": 2},
        ),
        model_node(3),
        attrs=attrs,
    )


def test_state_graph_with_model_node_and_tool_node():
    """A compiled StateGraph is the run (kind run); nodes are chains; ToolNode runs the tool and its helper."""
    graph = _graph()
    with capture(deterministic=True) as traces:
        result = graph.invoke(
            {"messages": [HumanMessage("Weather")]},
            config={"callbacks": [TrodoCallbackHandler()], "metadata": {"thread_id": "thread-7"}},
        )
    assert result["messages"][-1].content == "answer: found weather"
    assert traces.tree((*KEYS, "trodo.conversation_id", "trodo.run.tool_count")) == [
        _graph_tree(attrs={"trodo.conversation_id": "thread-7", "trodo.run.tool_count": 2})
    ]


async def test_state_graph_async_and_streamed_give_the_same_tree():
    """ainvoke() and astream() of a graph build the same tree as invoke()."""
    graph = _graph()
    handler = TrodoCallbackHandler()
    with capture(deterministic=True) as traces:
        await graph.ainvoke({"messages": [HumanMessage("Weather")]}, config={"callbacks": [handler]})
    assert traces.tree(KEYS) == [_graph_tree()]
    with capture(deterministic=True) as traces:
        async for _ in graph.astream(
            {"messages": [HumanMessage("Weather")]}, config={"callbacks": [handler]}, stream_mode="messages"
        ):
            pass
    assert traces.tree(KEYS) == [_graph_tree()]


def test_graph_inside_agent_joins_the_run_and_nests_helpers_from_tools():
    """A graph invoked inside @trodo.agent is an agent stage of that run; helpers around it stay siblings."""
    graph = _graph("planner")

    @trodo.function
    def prepare(question: str) -> str:
        return question.title()

    @trodo.function
    def report(answer: str) -> int:
        return len(answer)

    @trodo.agent("support-bot", distinct_id="user-1")
    def answer(question: str) -> int:
        state = graph.invoke(
            {"messages": [HumanMessage(prepare(question))]}, config={"callbacks": [TrodoCallbackHandler()]}
        )
        return report(state["messages"][-1].content)

    with capture(deterministic=True) as traces:
        assert answer("weather") == len("answer: found weather")
    assert traces.tree((*KEYS, "trodo.distinct_id", "trodo.run.span_count")) == [
        node(
            "support-bot",
            "run",
            node("prepare", "function"),
            _graph_tree("planner", "agent", attrs={}),
            node("report", "function"),
            attrs={"trodo.distinct_id": "user-1", "trodo.run.span_count": 13},
        )
    ]
    assert len({s.run_id for s in traces.spans}) == 1


async def test_fifty_concurrent_ainvokes_are_fifty_runs():
    """50 concurrent ainvokes of a graph: 50 runs, each a complete tree of its own question only."""
    graph = _graph()
    handler = TrodoCallbackHandler()
    questions = [f"Question{i}" for i in range(50)]
    with capture() as traces:
        results = await asyncio.gather(
            *(
                graph.ainvoke({"messages": [HumanMessage(q)]}, config={"callbacks": [handler]})
                for q in questions
            )
        )
    assert [r["messages"][-1].content for r in results] == [f"answer: found {q.lower()}" for q in questions]
    roots = traces.runs()
    assert len(roots) == 50
    assert len({root.trace_id for root in roots}) == 50
    seen = set()
    for root in roots:
        assert traces.tree(KEYS, run_id=root.run_id) == [_graph_tree()]
        spans = traces.run_spans(root.run_id)
        assert {s.trace_id for s in spans} == {root.trace_id}
        inputs = {s.attributes["input.value"] for s in spans if s.name == "normalise"}
        assert len(inputs) == 1
        seen |= inputs
    assert seen == {f'{{"text":"{q}"}}' for q in questions}


def test_graph_interrupt_is_not_an_error():
    """A LangGraph interrupt ends the node span as an interrupt (not an error); resuming is a new run."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command, interrupt

    class Counter(TypedDict):
        x: int

    def ask(state: Counter) -> dict[str, Any]:
        return {"x": interrupt("value?")}

    builder = StateGraph(Counter)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    graph = builder.compile(checkpointer=InMemorySaver())
    config = {"callbacks": [TrodoCallbackHandler()], "configurable": {"thread_id": "conv-1"}}
    with capture(deterministic=True) as traces:
        assert "__interrupt__" in graph.invoke({"x": 1}, config=config)
        assert graph.invoke(Command(resume=5), config=config) == {"x": 5}
    keys = ("trodo.langgraph.interrupt", "error.type", "trodo.conversation_id")
    assert traces.tree(keys) == [
        node(
            "LangGraph",
            "run",
            node("ask", "chain", attrs={"trodo.langgraph.interrupt": "GraphInterrupt"}),
            attrs={"trodo.conversation_id": "conv-1"},
        ),
        node("LangGraph", "run", node("ask", "chain"), attrs={"trodo.conversation_id": "conv-1"}),
    ]
