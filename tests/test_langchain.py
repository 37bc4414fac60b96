"""TrodoCallbackHandler: whole span trees for the common LangChain shapes, with LLM fields."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.language_models import BaseLLM
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import Generation, LLMResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough
from test_langchain_fakes import (
    USAGE_DETAILED,
    KeywordRetriever,
    ScriptedChatModel,
    broken,
    node,
    search,
    sort_children,
)

from trodo_trace._internal.core.pricing import PricingTable
from trodo_trace.callbacks.langchain import TrodoCallbackHandler
from trodo_trace.testing import capture

IO = ("input.value", "output.value")
LLM_KEYS = (
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.provider.name",
    "gen_ai.request.temperature",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "llm.token_count.prompt_details.cache_read",
    "llm.token_count.completion_details.reasoning",
    "trodo.llm.cost",
    "gen_ai.response.finish_reasons",
)
RUN_KEYS = ("trodo.run.span_count", "trodo.run.total_tokens_in", "trodo.run.total_tokens_out")


def _cost(input_tokens: int, output_tokens: int, cache_read: int = 0) -> float:
    cost = PricingTable.bundled().cost(
        "gpt-4o-mini-2024-07-18",
        "openai",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=0,
    )
    assert cost is not None
    return cost


def _prompt_chain(*replies: str):
    model = GenericFakeChatModel(messages=iter(replies))
    return ChatPromptTemplate.from_messages([("human", "{q}")]) | model | StrOutputParser()


def test_prompt_model_parser_is_one_run_with_four_spans():
    """prompt | chat model | parser: the sequence is the run root, each step a child with its I/O."""
    chain = _prompt_chain("hello there")
    with capture(deterministic=True) as traces:
        result = chain.invoke({"q": "hi"}, config={"callbacks": [TrodoCallbackHandler()]})
    assert result == "hello there"
    user = '[{"role":"user","content":"hi"}]'
    assistant = '{"role":"assistant","content":"hello there"}'
    assert traces.tree((*IO, "gen_ai.operation.name", "gen_ai.provider.name", "trodo.run.span_count")) == [
        node(
            "RunnableSequence",
            "chain",
            node("ChatPromptTemplate", "chain", attrs={"input.value": '{"q":"hi"}', "output.value": user}),
            node(
                "GenericFakeChatModel",
                "llm",
                attrs={
                    "input.value": user,
                    "output.value": assistant,
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "genericfakechatmodel",
                },
            ),
            node(
                "StrOutputParser", "chain", attrs={"input.value": assistant, "output.value": '"hello there"'}
            ),
            attrs={"input.value": '{"q":"hi"}', "output.value": '"hello there"', "trodo.run.span_count": 4},
        )
    ]
    root = traces.runs()[0]
    assert {s.run_id for s in traces.spans} == {root.run_id}
    assert root.attributes["trodo.agent.name"] == "RunnableSequence"


def _tool_loop(question: str, config=None) -> str:
    model = ScriptedChatModel(usage=USAGE_DETAILED).bind_tools([search])
    tools = {"search": search, "broken": broken}
    messages: list = [HumanMessage(question)]
    while True:
        reply = model.invoke(messages, config)
        messages.append(reply)
        if not reply.tool_calls:
            return reply.content
        for call in reply.tool_calls:
            messages.append(tools[call["name"]].invoke(call, config))


def test_tool_calling_loop_records_model_fields_tool_calls_and_usage():
    """A model that calls a @tool: llm → tool (with the decorated helper inside) → llm, all fields set."""
    agent = RunnableLambda(_tool_loop, name="tool_loop")
    with capture(deterministic=True) as traces:
        assert (
            agent.invoke("Weather", config={"callbacks": [TrodoCallbackHandler()]}) == "answer: found weather"
        )
    cost = _cost(200, 50, cache_read=80)
    llm = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.usage.input_tokens": 200,
        "gen_ai.usage.output_tokens": 50,
        "llm.token_count.prompt_details.cache_read": 80,
        "llm.token_count.completion_details.reasoning": 30,
        "trodo.llm.cost": cost,
    }
    keys = (*LLM_KEYS, *RUN_KEYS, "trodo.tool.name", "gen_ai.tool.name", "tool.name", "gen_ai.tool.call.id")
    assert traces.tree(keys) == [
        node(
            "tool_loop",
            "chain",
            node(
                "ScriptedChatModel", "llm", attrs={**llm, "gen_ai.response.finish_reasons": ("tool_calls",)}
            ),
            node(
                "search",
                "tool",
                node(
                    "normalise",
                    "tool",
                    attrs={
                        "trodo.tool.name": "normalise",
                        "gen_ai.tool.name": "normalise",
                        "tool.name": "normalise",
                    },
                ),
                attrs={
                    "trodo.tool.name": "search",
                    "gen_ai.tool.name": "search",
                    "tool.name": "search",
                    "gen_ai.tool.call.id": "call_1",
                },
            ),
            node("ScriptedChatModel", "llm", attrs={**llm, "gen_ai.response.finish_reasons": ("stop",)}),
            attrs={
                "trodo.run.span_count": 5,
                "trodo.run.total_tokens_in": 400,
                "trodo.run.total_tokens_out": 100,
            },
        )
    ]
    first_llm = min((s for s in traces.spans if s.kind == "llm"), key=lambda s: s.start_ns)
    assert first_llm.attributes["output.value"] == (
        '{"role":"assistant","content":"","tool_calls":[{"id":"call_1","name":"search","arguments":{"query":"Weather"}}]}'
    )
    assert traces.runs()[0].attributes["trodo.run.total_cost"] == pytest.approx(2 * cost)


def test_rag_chain_records_retrieval_documents():
    """A custom BaseRetriever in a RAG chain: a retrieval span with the query and its documents."""
    retriever = KeywordRetriever(
        documents=[
            Document(page_content="paris is in france", id="d1"),
            Document(page_content="rome is in italy", id="d2"),
        ]
    )
    prompt = ChatPromptTemplate.from_messages([("human", "{context} | {question}")])
    rag = (
        {"context": retriever, "question": RunnablePassthrough()}
        | prompt
        | ScriptedChatModel()
        | StrOutputParser()
    )
    keys = (
        "input.value",
        "trodo.retrieval.result_count",
        "retrieval.documents.0.document.id",
        "retrieval.documents.0.document.content",
        "gen_ai.usage.input_tokens",
    )
    with capture(deterministic=True) as traces:
        rag.invoke("where is paris", config={"callbacks": [TrodoCallbackHandler()]})
    tree = traces.tree(keys)
    parallel = tree[0]["children"][0]
    assert parallel == node(
        "RunnableParallel<context,question>",
        "chain",
        node(
            "KeywordRetriever",
            "retrieval",
            attrs={
                "input.value": '"where is paris"',
                "trodo.retrieval.result_count": 1,
                "retrieval.documents.0.document.id": "d1",
                "retrieval.documents.0.document.content": "paris is in france",
            },
        ),
        node("RunnablePassthrough", "chain", attrs={"input.value": '"where is paris"'}),
        attrs={"input.value": '"where is paris"'},
    )
    assert [(n["name"], n["kind"]) for n in tree[0]["children"]] == [
        ("RunnableParallel<context,question>", "chain"),
        ("ChatPromptTemplate", "chain"),
        ("ScriptedChatModel", "llm"),
        ("StrOutputParser", "chain"),
    ]
    assert tree[0]["children"][2]["attributes"]["gen_ai.usage.input_tokens"] == 100


def test_runnable_parallel_branches_and_batch_items_keep_their_parents():
    """RunnableParallel branches nest under the parallel; batch() items are separate runs."""
    upper = RunnableLambda(lambda text: text.upper(), name="upper")
    length = RunnableLambda(lambda text: len(text), name="length")
    parallel = RunnableParallel(upper=upper, length=length)
    handler = TrodoCallbackHandler()
    with capture(deterministic=True) as traces:
        results = parallel.batch(["ab", "cde", "f"], config={"callbacks": [handler]})
    assert results == [
        {"upper": "AB", "length": 2},
        {"upper": "CDE", "length": 3},
        {"upper": "F", "length": 1},
    ]

    def item(text: str, upper_text: str, size: int):
        return node(
            "RunnableParallel<upper,length>",
            "chain",
            node("length", "chain", attrs={"input.value": f'"{text}"', "output.value": str(size)}),
            node("upper", "chain", attrs={"input.value": f'"{text}"', "output.value": f'"{upper_text}"'}),
            attrs={"input.value": f'"{text}"', "output.value": f'{{"upper":"{upper_text}","length":{size}}}'},
        )

    assert sort_children(traces.tree(IO)) == sort_children(
        [item("ab", "AB", 2), item("cde", "CDE", 3), item("f", "F", 1)]
    )
    assert len(traces.runs()) == 3
    for root in traces.runs():
        assert {s.trace_id for s in traces.run_spans(root.run_id)} == {root.trace_id}


def test_streaming_records_time_to_first_token_and_the_streamed_output():
    """stream(): the LLM span gets time to first token; the deferred chain input is recorded at the end."""
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | ScriptedChatModel() | StrOutputParser()
    with capture(deterministic=True) as traces:
        chunks = list(chain.stream({"q": "tell me"}, config={"callbacks": [TrodoCallbackHandler()]}))
    assert "".join(chunks) == "echo: tell me"
    keys = (*IO, "gen_ai.usage.input_tokens", "gen_ai.response.model")
    tree = traces.tree(keys)
    assert tree == [
        node(
            "RunnableSequence",
            "chain",
            node(
                "ChatPromptTemplate",
                "chain",
                attrs={
                    "input.value": '{"q":"tell me"}',
                    "output.value": '[{"role":"user","content":"tell me"}]',
                },
            ),
            node(
                "ScriptedChatModel",
                "llm",
                attrs={
                    "input.value": '[{"role":"user","content":"tell me"}]',
                    "output.value": '{"role":"assistant","content":"echo: tell me"}',
                    "gen_ai.usage.input_tokens": 100,
                    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                },
            ),
            node(
                "StrOutputParser",
                "chain",
                attrs={
                    "input.value": '{"role":"assistant","content":"echo: tell me"}',
                    "output.value": '"echo: tell me"',
                },
            ),
            attrs={"input.value": '{"q":"tell me"}', "output.value": '"echo: tell me"'},
        )
    ]
    llm = next(s for s in traces.spans if s.kind == "llm")
    ttft = llm.attributes["trodo.llm.time_to_first_token_ms"]
    assert 0 < ttft < llm.duration_ms


async def test_async_invocation_builds_the_same_tree():
    """ainvoke() gives the same tree as invoke(), and concurrent ainvokes do not mix."""
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | ScriptedChatModel() | StrOutputParser()
    handler = TrodoCallbackHandler()
    with capture(deterministic=True) as traces:
        await chain.ainvoke({"q": "one"}, config={"callbacks": [handler]})
    expected = traces.tree(("output.value",))
    with capture() as concurrent:
        results = await asyncio.gather(
            *(chain.ainvoke({"q": f"q{i}"}, config={"callbacks": [handler]}) for i in range(5))
        )
    assert results == [f"echo: q{i}" for i in range(5)]
    assert [n["name"] for n in expected[0]["children"]] == [
        "ChatPromptTemplate",
        "ScriptedChatModel",
        "StrOutputParser",
    ]
    roots = concurrent.runs()
    assert len(roots) == 5
    for root in roots:
        tree = concurrent.tree(("output.value",), run_id=root.run_id)
        question = root.attributes["output.value"].split("echo: ")[1].rstrip('"')
        assert tree == [
            node(
                "RunnableSequence",
                "chain",
                node(
                    "ChatPromptTemplate",
                    "chain",
                    attrs={"output.value": f'[{{"role":"user","content":"{question}"}}]'},
                ),
                node(
                    "ScriptedChatModel",
                    "llm",
                    attrs={"output.value": f'{{"role":"assistant","content":"echo: {question}"}}'},
                ),
                node("StrOutputParser", "chain", attrs={"output.value": f'"echo: {question}"'}),
                attrs={"output.value": f'"echo: {question}"'},
            )
        ]


def test_tool_that_raises_marks_tool_and_run_as_errors():
    """A tool raising: the tool span and every enclosing span are errors with the exception recorded."""
    agent = RunnableLambda(lambda q, config: broken.invoke({"query": q}, config), name="agent")
    with capture(deterministic=True) as traces, pytest.raises(ValueError, match="cannot handle x"):
        agent.invoke("x", config={"callbacks": [TrodoCallbackHandler()]})
    assert traces.tree(("error.type", "trodo.run.error_count", "trodo.run.status")) == [
        node(
            "agent",
            "chain",
            node("broken", "tool", status="ERROR", attrs={"error.type": "ValueError"}),
            status="ERROR",
            attrs={"error.type": "ValueError", "trodo.run.error_count": 2, "trodo.run.status": "error"},
        )
    ]
    tool_span = traces.by_name("broken")
    assert tool_span.events[0]["name"] == "exception"
    assert tool_span.events[0]["attributes"]["exception.message"] == "cannot handle x"


def test_handled_tool_error_marks_only_the_tool():
    """A tool whose error LangChain turns into a message: the tool span is an error, the run goes on."""
    from langchain_core.tools import ToolException, tool

    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        raise ToolException(f"cannot handle {query}")

    lookup.handle_tool_error = True

    call = {"name": "lookup", "args": {"query": "y"}, "id": "call_9", "type": "tool_call"}
    with capture(deterministic=True) as traces:
        message = lookup.invoke(call, config={"callbacks": [TrodoCallbackHandler()]})
    assert message.status == "error"
    assert traces.tree(("output.value", "error.type")) == [
        node(
            "lookup",
            "tool",
            status="ERROR",
            attrs={"output.value": '"cannot handle y"', "error.type": "ToolError"},
        )
    ]


class CompletionLLM(BaseLLM):
    """A text-completion LLM reporting usage the OpenAI way, in ``llm_output``."""

    @property
    def _llm_type(self) -> str:
        return "completion"

    def _generate(
        self, prompts: list[str], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> LLMResult:
        return LLMResult(
            generations=[
                [Generation(text="forty-two", generation_info={"finish_reason": "length"})] for _ in prompts
            ],
            llm_output={
                "token_usage": {
                    "prompt_tokens": 7,
                    "completion_tokens": 2,
                    "prompt_tokens_details": {"cached_tokens": 3},
                },
                "model_name": "gpt-3.5-turbo-instruct",
            },
        )


def test_text_completion_llm_reads_usage_and_model_from_llm_output():
    """A text-completion LLM: prompt in, text out, usage and model from llm_output, cost from the table."""
    with capture(deterministic=True) as traces:
        CompletionLLM().invoke("what is six times seven?", config={"callbacks": [TrodoCallbackHandler()]})
    cost = PricingTable.bundled().cost(
        "gpt-3.5-turbo-instruct",
        None,
        input_tokens=7,
        output_tokens=2,
        cache_read_tokens=3,
        cache_write_tokens=0,
    )
    assert traces.tree((*IO, *LLM_KEYS)) == [
        node(
            "CompletionLLM",
            "llm",
            attrs={
                "input.value": '"what is six times seven?"',
                "output.value": '"forty-two"',
                "gen_ai.operation.name": "text_completion",
                "gen_ai.request.model": "gpt-3.5-turbo-instruct",
                "gen_ai.response.model": "gpt-3.5-turbo-instruct",
                "gen_ai.provider.name": "completion",
                "gen_ai.usage.input_tokens": 7,
                "gen_ai.usage.output_tokens": 2,
                "llm.token_count.prompt_details.cache_read": 3,
                "trodo.llm.cost": cost,
                "gen_ai.response.finish_reasons": ("length",),
            },
        )
    ]


def test_v3_stream_events_record_time_to_first_token():
    """stream_events(version="v3"): the first content delta gives the time to first token."""
    model = ScriptedChatModel(report_tokens=False)
    with capture(deterministic=True) as traces:
        events = list(
            model.stream_events("hello there", config={"callbacks": [TrodoCallbackHandler()]}, version="v3")
        )
    assert events[-1]["event"] == "message-finish"
    span = traces.by_name("ScriptedChatModel")
    assert 0 < span.attributes["trodo.llm.time_to_first_token_ms"] < span.duration_ms
    assert span.attributes["gen_ai.usage.output_tokens"] == 20


def test_model_error_is_recorded_on_the_llm_span():
    """A chat model raising: its llm span is an error, the exception escapes unchanged."""
    model = ScriptedChatModel(fail_with="rate limited")
    with capture(deterministic=True) as traces, pytest.raises(RuntimeError, match="rate limited"):
        model.invoke("hi", config={"callbacks": [TrodoCallbackHandler()]})
    assert traces.tree(("error.type", "gen_ai.request.model")) == [
        node(
            "ScriptedChatModel",
            "llm",
            status="ERROR",
            attrs={"error.type": "RuntimeError", "gen_ai.request.model": "gpt-4o-mini"},
        )
    ]


def test_identity_comes_from_the_handler_or_the_invocation_metadata():
    """distinct_id/conversation_id/metadata: handler arguments first, then the invocation's metadata."""
    chain = RunnableLambda(lambda x: x, name="echo")
    keys = ("trodo.distinct_id", "user.id", "trodo.conversation_id", "session.id", "trodo.metadata")
    with capture(deterministic=True) as traces:
        chain.invoke(
            1, config={"callbacks": [TrodoCallbackHandler(distinct_id="u-1", metadata={"plan": "pro"})]}
        )
        chain.invoke(
            2,
            config={
                "callbacks": [TrodoCallbackHandler()],
                "metadata": {
                    "trodo_distinct_id": "u-2",
                    "thread_id": "t-9",
                    "tenant": "acme",
                    "ls_provider": "x",
                },
            },
        )
        chain.invoke(3, config={"callbacks": [TrodoCallbackHandler()], "metadata": {"session_id": "s-3"}})
    assert [n["attributes"] for n in traces.tree(keys)] == [
        {"trodo.distinct_id": "u-1", "user.id": "u-1", "trodo.metadata": '{"plan":"pro"}'},
        {
            "trodo.distinct_id": "u-2",
            "user.id": "u-2",
            "trodo.conversation_id": "t-9",
            "session.id": "t-9",
            "trodo.metadata": '{"tenant":"acme"}',
        },
        {"trodo.conversation_id": "s-3", "session.id": "s-3"},
    ]


def test_agent_actions_retries_and_custom_events_become_span_events():
    """on_retry / on_agent_action / on_agent_finish / custom events are events on the run that reported them."""
    from langchain_core.agents import AgentAction, AgentFinish
    from langchain_core.callbacks import dispatch_custom_event
    from tenacity import RetryCallState, Retrying

    def executor(question: str, run_manager) -> str:
        retry_state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
        retry_state.attempt_number = 2
        retry_state.set_exception((TimeoutError, TimeoutError("slow"), None))
        run_manager.on_retry(retry_state)
        run_manager.on_agent_action(
            AgentAction(tool="search", tool_input={"query": question}, log="look it up")
        )
        dispatch_custom_event("progress", {"step": 1})
        run_manager.on_agent_finish(AgentFinish(return_values={"output": "done"}, log="finished"))
        return "done"

    with capture(deterministic=True) as traces:
        RunnableLambda(executor, name="AgentExecutor").invoke(
            "q", config={"callbacks": [TrodoCallbackHandler()]}
        )
    assert traces.tree() == [{"name": "AgentExecutor", "kind": "run", "status": "OK", "children": []}]
    events = [(e["name"], e["attributes"]) for e in traces.by_name("AgentExecutor").events]
    assert events == [
        ("retry", {"retry.attempt": 2, "exception.type": "TimeoutError", "exception.message": "slow"}),
        (
            "agent.action",
            {"agent.tool": "search", "agent.tool_input": '{"query":"q"}', "agent.log": "look it up"},
        ),
        ("progress", {"data": '{"step":1}'}),
        ("agent.finish", {"agent.return_values": '{"output":"done"}', "agent.log": "finished"}),
    ]
