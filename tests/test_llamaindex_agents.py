"""LlamaIndex agents and workflows as trodo runs, the public entry point, and failure isolation."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent
from llama_index.core.llms import MockLLM
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.tools import FunctionTool
from llama_index.core.workflow import Event, StartEvent, StopEvent, Workflow, step
from test_llamaindex_models import (  # noqa: F401  (fixtures)
    ANSWER,
    RESPONSE_MODEL,
    ToolCallingLLM,
    build_index,
    li_fixture,
    no_network_fixture,
)

import trodo_trace as trodo
from trodo_trace.callbacks import _llamaindex_extract
from trodo_trace.callbacks.llamaindex import TrodoLlamaIndexHandler
from trodo_trace.testing import capture

RUN = "00000000000000000000000000000001"
KEYS = (
    "trodo.run.id",
    "input.value",
    "output.value",
    "trodo.tool.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "trodo.llm.cost",
    "trodo.llm.time_to_first_token_ms",
    "trodo.run.span_count",
    "trodo.run.tool_count",
    "trodo.run.total_tokens_in",
    "trodo.run.total_tokens_out",
    "trodo.run.total_cost",
    "trodo.run.status",
)
ASK = "weather in Paris?"
CALL = {"id": "call-1", "name": "weather", "args": {"city": "Paris"}}
USER = {"role": "user", "content": ASK}
ASSISTANT_CALL = {"role": "assistant", "content": "", "tool_calls": [CALL]}
TOOL_RESULT = {"role": "tool", "content": "sunny in Paris", "tool_call_id": "call-1"}
# Building an agent makes the workflows package read deprecated pydantic attributes (not our code).
AGENT_WARNING = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning")


def node(name: str, kind: str, attributes: dict[str, Any], *children: dict, status: str = "OK") -> dict:
    return {
        "name": name,
        "kind": kind,
        "status": status,
        "attributes": attributes,
        "children": list(children),
    }


def js(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def llm_call(messages: list[dict], output: dict, tokens_in: int, tokens_out: int, cost: float) -> dict:
    return node(
        "ToolCallingLLM.astream_chat",
        "llm",
        {
            "trodo.run.id": RUN,
            "input.value": js(messages),
            "output.value": js(output),
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": RESPONSE_MODEL,
            "gen_ai.usage.input_tokens": tokens_in,
            "gen_ai.usage.output_tokens": tokens_out,
            "trodo.llm.cost": cost,
            "trodo.llm.time_to_first_token_ms": 1.0,
        },
    )


@trodo.retrieval
def forecast(city: str) -> list[str]:
    return [f"sunny in {city}"]


def weather(city: str) -> str:
    """The weather in a city."""
    return forecast(city)[0]


@AGENT_WARNING
async def test_function_agent_is_a_run_of_llm_and_tool_spans(li):
    """A FunctionAgent is a run: each LLM turn an llm span, the tool a tool span, ``@trodo`` code nested in it."""
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(weather)], llm=ToolCallingLLM())
    with capture(deterministic=True) as traces:
        result = await agent.run(ASK, memory=ChatMemoryBuffer.from_defaults())
    assert str(result) == "It is sunny in Paris."
    first_cost, second_cost = 20 * 0.15e-6 + 8 * 0.6e-6, 30 * 0.15e-6 + 6 * 0.6e-6
    assert traces.tree(KEYS) == [
        node(
            "FunctionAgent",
            "run",
            {
                "trodo.run.id": RUN,
                "input.value": js(ASK),
                "output.value": js("It is sunny in Paris."),
                "trodo.run.span_count": 5,
                "trodo.run.tool_count": 1,
                "trodo.run.total_tokens_in": 50,
                "trodo.run.total_tokens_out": 14,
                "trodo.run.total_cost": pytest.approx(first_cost + second_cost),
                "trodo.run.status": "ok",
            },
            llm_call([USER], ASSISTANT_CALL, 20, 8, pytest.approx(first_cost)),
            node(
                "weather",
                "tool",
                {
                    "trodo.run.id": RUN,
                    "input.value": js({"city": "Paris"}),
                    "output.value": js("sunny in Paris"),
                    "trodo.tool.name": "weather",
                },
                node(
                    "forecast",
                    "retrieval",
                    {
                        "trodo.run.id": RUN,
                        "input.value": js({"city": "Paris"}),
                        "output.value": js(["sunny in Paris"]),
                    },
                ),
            ),
            llm_call(
                [USER, ASSISTANT_CALL, TOOL_RESULT],
                {"role": "assistant", "content": "It is sunny in Paris."},
                30,
                6,
                pytest.approx(second_cost),
            ),
        )
    ]


@AGENT_WARNING
async def test_agent_workflow_runs_each_agent_turn_as_an_agent_span(li):
    """In a multi-agent AgentWorkflow each turn of an agent is an ``agent`` span named after it."""
    planner = FunctionAgent(
        name="planner", description="plans", tools=[FunctionTool.from_defaults(weather)], llm=ToolCallingLLM()
    )
    workflow = AgentWorkflow(agents=[planner], root_agent="planner")
    with capture(deterministic=True) as traces:
        result = await workflow.run(ASK, memory=ChatMemoryBuffer.from_defaults())
    assert str(result) == "It is sunny in Paris."
    tree = traces.tree(("input.value",))
    shape = [
        (child["name"], child["kind"], [c["name"] for c in child["children"]])
        for child in tree[0]["children"]
    ]
    assert (tree[0]["name"], tree[0]["kind"]) == ("AgentWorkflow", "run")
    assert shape == [
        ("planner", "agent", ["ToolCallingLLM.astream_chat"]),
        ("weather", "tool", ["forecast"]),
        ("planner", "agent", ["ToolCallingLLM.astream_chat"]),
    ]
    assert tree[0]["children"][0]["attributes"] == {"input.value": js([USER])}


class Drafted(Event):
    draft: str


class DraftFlow(Workflow):
    """Drafts with an LLM in an async step, then shouts the draft in a sync step."""

    @step
    async def draft(self, ev: StartEvent) -> Drafted:
        response = await MockLLM(max_tokens=2).acomplete(ev.topic)
        return Drafted(draft=response.text)

    @step
    def shout(self, ev: Drafted) -> StopEvent:
        return StopEvent(result=ev.draft.upper())


async def test_workflow_steps_are_chain_spans(li):
    """A workflow run is a chain run with one chain span per step, sync steps included."""
    with capture(deterministic=True) as traces:
        result = await DraftFlow().run(topic="letters")
    assert result == "TEXT TEXT"
    keys = ("trodo.run.id", "input.value", "output.value", "trodo.run.span_count")
    assert traces.tree(keys) == [
        node(
            "DraftFlow.run",
            "chain",
            {
                "trodo.run.id": RUN,
                "input.value": js({"topic": "letters"}),
                "output.value": js("TEXT TEXT"),
                "trodo.run.span_count": 4,
            },
            node(
                "DraftFlow.draft",
                "chain",
                {
                    "trodo.run.id": RUN,
                    "input.value": js({"topic": "letters"}),
                    "output.value": js({"draft": "text text"}),
                },
                node(
                    "MockLLM.acomplete",
                    "llm",
                    {"trodo.run.id": RUN, "input.value": js("letters"), "output.value": js("text text")},
                ),
            ),
            node(
                "DraftFlow.shout",
                "chain",
                {
                    "trodo.run.id": RUN,
                    "input.value": js({"draft": "text text"}),
                    "output.value": js("TEXT TEXT"),
                },
            ),
        )
    ]


def test_extractor_failure_costs_only_its_field(li, monkeypatch):
    """An extractor that raises drops its field, is counted and logged; the query and its tree go on."""

    def broken(response: Any) -> None:
        raise RuntimeError("unexpected response shape")

    monkeypatch.setattr(_llamaindex_extract, "response_usage", broken)
    engine = build_index().as_query_engine(similarity_top_k=1)
    with capture(deterministic=True) as traces:
        assert str(engine.query("what is alpha?")) == ANSWER
    llm = traces.by_name("ScriptedLLM.predict")
    assert "gen_ai.usage.input_tokens" not in llm.attributes
    assert llm.attributes["output.value"] == js(ANSWER)
    assert [s["name"] for s in traces.tree()[0]["children"]] == [
        "VectorIndexRetriever.retrieve",
        "CompactAndRefine.synthesize",
    ]
    assert li.internal_errors == 1
    li.internal_errors = 0


def test_handler_failure_never_breaks_the_query(li, monkeypatch):
    """Even when every span start fails the query answers; the failures are counted, nothing is traced."""

    def broken(instance: Any, method: str) -> None:
        raise RuntimeError("classification bug")

    monkeypatch.setattr(_llamaindex_extract, "classify", broken)
    engine = build_index().as_query_engine(similarity_top_k=1)
    li.internal_errors = 0
    with capture(deterministic=True) as traces:
        assert str(engine.query("what is alpha?")) == ANSWER
    assert traces.spans == []
    assert li.internal_errors > 0
    li.internal_errors = 0


def test_instrument_llamaindex_is_lazy_idempotent_and_detachable(li):
    """``import trodo_trace`` loads no LlamaIndex; ``instrument_llamaindex()`` returns one handler that detaches."""
    code = "import sys, trodo_trace; print(any(m.startswith('llama_index') for m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"
    li.detach()
    engine = build_index().as_query_engine(similarity_top_k=1)
    handler = trodo.instrument_llamaindex()
    try:
        assert isinstance(handler, TrodoLlamaIndexHandler)
        assert trodo.instrument_llamaindex() is handler
        with capture() as traces:
            engine.query("what is alpha?")
        assert [root.name for root in traces.runs()] == ["RetrieverQueryEngine.query"]
        assert handler.internal_errors == 0
    finally:
        handler.detach()
    with capture() as traces:
        engine.query("what is alpha?")
    assert traces.spans == []


def test_disabled_tracing_starts_no_spans(li):
    """With ``enabled=False`` the handler starts nothing and the query still answers."""
    trodo.init(enabled=False)
    engine = build_index().as_query_engine(similarity_top_k=1)
    assert str(engine.query("what is alpha?")) == ANSWER
    assert trodo.stats()["started"] == 0
