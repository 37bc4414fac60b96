"""LlamaIndex queries, retrievals, streams, chat engines and rerankers traced as whole run trees."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import pytest
from llama_index.core import Settings
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine
from test_llamaindex_models import (  # noqa: F401  (fixtures)
    ANSWER,
    RESPONSE_MODEL,
    build_index,
    li_fixture,
    no_network_fixture,
)

import trodo_trace as trodo
from trodo_trace.testing import capture

RUN = "00000000000000000000000000000001"
ALPHA_SCORE = pytest.approx(0.9761870601839528)
DELTA_SCORE = pytest.approx(0.2)
QUERY = '"what is alpha?"'
OUTPUT = f'"{ANSWER}"'
LLM_COST = 9.6e-06  # 40 input + 6 output tokens of gpt-4o-mini
EMBED_COST = 6e-08  # 3 tokens of text-embedding-3-small

KEYS = (
    "trodo.run.id",
    "input.value",
    "output.value",
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.provider.name",
    "gen_ai.request.temperature",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "trodo.llm.cost",
    "trodo.llm.time_to_first_token_ms",
    "trodo.retrieval.result_count",
    "retrieval.documents.0.document.id",
    "retrieval.documents.0.document.content",
    "retrieval.documents.0.document.score",
    "retrieval.documents.1.document.id",
    "retrieval.documents.1.document.score",
    "trodo.run.span_count",
    "trodo.run.total_tokens_in",
    "trodo.run.total_tokens_out",
    "trodo.run.total_cost",
    "trodo.run.status",
    "trodo.run.error_count",
    "trodo.generator.closed_early",
    "error.type",
)


def node(name: str, kind: str, attributes: dict[str, Any], *children: dict, status: str = "OK") -> dict:
    return {
        "name": name,
        "kind": kind,
        "status": status,
        "attributes": attributes,
        "children": list(children),
    }


def embedding(query: str = QUERY, run: str = RUN) -> dict:
    return node(
        "embeddings text-embedding-3-small",
        "function",
        {
            "trodo.run.id": run,
            "input.value": query,
            "gen_ai.operation.name": "embeddings",
            "gen_ai.request.model": "text-embedding-3-small",
            "gen_ai.usage.input_tokens": 3,
            "trodo.llm.cost": EMBED_COST,
        },
    )


def retrieval(name: str, top_k: int, run: str = RUN) -> dict:
    documents: dict[str, Any] = {
        "retrieval.documents.0.document.id": "doc-alpha",
        "retrieval.documents.0.document.content": "alpha is the first letter of the greek alphabet",
        "retrieval.documents.0.document.score": ALPHA_SCORE,
    }
    if top_k == 2:
        documents["retrieval.documents.1.document.id"] = "doc-delta"
        documents["retrieval.documents.1.document.score"] = DELTA_SCORE
    attributes = {"trodo.run.id": run, "input.value": QUERY, "trodo.retrieval.result_count": top_k}
    return node(name, "retrieval", {**attributes, **documents}, embedding(run=run))


def llm(name: str, run: str = RUN, **extra: Any) -> dict:
    return node(
        name,
        "llm",
        {
            "trodo.run.id": run,
            "output.value": OUTPUT,
            "gen_ai.operation.name": "text_completion",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": RESPONSE_MODEL,
            "gen_ai.request.temperature": 0.1,
            "gen_ai.usage.input_tokens": 40,
            "gen_ai.usage.output_tokens": 6,
            "trodo.llm.cost": LLM_COST,
            **extra,
        },
    )


def rollups(
    spans: int, tokens_in: int = 43, tokens_out: int = 6, cost: float = LLM_COST + EMBED_COST
) -> dict[str, Any]:
    return {
        "trodo.run.span_count": spans,
        "trodo.run.total_tokens_in": tokens_in,
        "trodo.run.total_tokens_out": tokens_out,
        "trodo.run.total_cost": pytest.approx(cost),
        "trodo.run.status": "ok",
        "trodo.run.error_count": 0,
    }


def query_tree(
    prefix: str = "", top_k: int = 2, llm_name: str = "ScriptedLLM.predict", **llm_extra: Any
) -> dict:
    """The run of one query: query engine → retriever (→ query embedding), synthesizer → LLM."""
    return node(
        f"RetrieverQueryEngine.{prefix}query",
        "chain",
        {"trodo.run.id": RUN, "input.value": QUERY, "output.value": OUTPUT, **rollups(5)},
        retrieval(f"VectorIndexRetriever.{prefix}retrieve", top_k),
        node(
            f"CompactAndRefine.{prefix}synthesize",
            "chain",
            {"trodo.run.id": RUN, "input.value": QUERY, "output.value": OUTPUT},
            llm(llm_name, **llm_extra),
        ),
    )


def strip_prompts(tree: list[dict]) -> list[dict]:
    """LLM spans without their prompt (LlamaIndex's template text), checked separately."""
    for item in tree:
        if item["kind"] == "llm":
            prompt = item["attributes"].pop("input.value")
            assert "what is alpha?" in prompt and "alpha is the first letter" in prompt
        strip_prompts(item["children"])
    return tree


def test_query_is_a_run_of_retrieval_embedding_synthesis_and_llm(li):
    """A VectorStoreIndex query is one run: its helpers are collapsed, its LLM call has usage and cost."""
    index = build_index()
    with capture(deterministic=True) as traces:
        response = index.as_query_engine(similarity_top_k=2).query("what is alpha?")
    assert str(response) == ANSWER
    assert strip_prompts(traces.tree(KEYS)) == [query_tree()]


def test_building_an_index_is_an_embeddings_run(li):
    """Embedding in batches is one function span named for the model, with its token count and cost."""
    Settings.embed_model.embed_batch_size = 2  # three nodes: two batches, each reporting its own events
    with capture(deterministic=True) as traces:
        build_index()
    assert traces.tree(KEYS) == [
        node(
            "embeddings text-embedding-3-small",
            "function",
            {
                "trodo.run.id": RUN,
                "input.value": '["alpha is the first letter of the greek alphabet",'
                '"delta is the fourth letter","gamma gamma rays are light"]',
                "gen_ai.operation.name": "embeddings",
                "gen_ai.request.model": "text-embedding-3-small",
                "gen_ai.usage.input_tokens": 19,
                "trodo.llm.cost": 3.8e-07,
                **rollups(1, tokens_in=19, tokens_out=0, cost=3.8e-07),
            },
        )
    ]


def test_retriever_alone_is_a_retrieval_run(li):
    """A retriever called on its own is a retrieval run with the query and each node's id, text and score."""
    retriever = build_index().as_retriever(similarity_top_k=2)
    with capture(deterministic=True) as traces:
        nodes = retriever.retrieve("what is alpha?")
    assert [n.node.node_id for n in nodes] == ["doc-alpha", "doc-delta"]
    expected = retrieval("VectorIndexRetriever.retrieve", 2)
    expected["attributes"].update(rollups(2, tokens_in=3, tokens_out=0, cost=EMBED_COST))
    assert traces.tree(KEYS) == [expected]


def test_streaming_query_stays_open_until_its_stream_is_consumed(li):
    """The LLM call a streaming query makes lazily nests under it; the run ends with the stream."""
    engine = build_index().as_query_engine(streaming=True, similarity_top_k=2)
    with capture(deterministic=True) as traces:
        response = engine.query("what is alpha?")
        assert traces.runs() == []
        tokens = list(response.response_gen)
    assert "".join(tokens) == ANSWER
    tree = strip_prompts(traces.tree(KEYS))
    assert tree == [query_tree(llm_name="ScriptedLLM.stream", **{"trodo.llm.time_to_first_token_ms": 1.0})]


def test_abandoned_streaming_query_ends_closed_early(li):
    """A streaming response dropped unread still ends its spans, marked closed early, with no LLM span."""
    engine = build_index().as_query_engine(streaming=True, similarity_top_k=1)
    with capture(deterministic=True) as traces:
        response = engine.query("what is alpha?")
        del response
        gc.collect()
    closed = {"trodo.generator.closed_early": True}
    assert traces.tree(KEYS) == [
        node(
            "RetrieverQueryEngine.query",
            "chain",
            {
                "trodo.run.id": RUN,
                "input.value": QUERY,
                **closed,
                **rollups(4, tokens_in=3, tokens_out=0, cost=EMBED_COST),
            },
            retrieval("VectorIndexRetriever.retrieve", 1),
            node(
                "CompactAndRefine.synthesize", "chain", {"trodo.run.id": RUN, "input.value": QUERY, **closed}
            ),
        )
    ]


async def test_async_query_has_the_same_tree(li):
    """``aquery`` gives the same tree through the async spans."""
    engine = build_index().as_query_engine(similarity_top_k=2)
    with capture(deterministic=True) as traces:
        response = await engine.aquery("what is alpha?")
    assert str(response) == ANSWER
    assert strip_prompts(traces.tree(KEYS)) == [query_tree("a", llm_name="ScriptedLLM.apredict")]


async def test_async_streaming_query_is_one_llm_span(li):
    """An async stream over the LLM's sync stream (LlamaIndex's CustomLLM) is one LLM span."""
    engine = build_index().as_query_engine(streaming=True, similarity_top_k=2)
    with capture(deterministic=True) as traces:
        response = await engine.aquery("what is alpha?")
        tokens = [token async for token in response.async_response_gen()]
    assert "".join(tokens) == ANSWER
    tree = strip_prompts(traces.tree(KEYS))
    assert tree == [
        query_tree("a", llm_name="ScriptedLLM.astream", **{"trodo.llm.time_to_first_token_ms": 1.0})
    ]


async def test_concurrent_async_queries_keep_their_own_trees(li):
    """Twenty concurrent ``aquery`` calls are twenty runs, each with its own whole tree."""
    engine = build_index().as_query_engine(similarity_top_k=2)
    with capture(deterministic=True) as traces:
        answers = await asyncio.gather(*(engine.aquery("what is alpha?") for _ in range(20)))
    assert [str(a) for a in answers] == [ANSWER] * 20
    roots = traces.runs()
    assert len({root.run_id for root in roots}) == 20
    assert len({root.trace_id for root in roots}) == 20
    keys = tuple(k for k in KEYS if k != "trodo.run.id")
    expected = query_tree("a", llm_name="ScriptedLLM.apredict")
    strip_run_ids(expected)
    for root in roots:
        spans = traces.run_spans(root.run_id)
        assert {span.trace_id for span in spans} == {root.trace_id}
        assert strip_prompts(traces.tree(keys, run_id=root.run_id)) == [expected]


def strip_run_ids(tree: dict) -> None:
    tree["attributes"].pop("trodo.run.id", None)
    for child in tree["children"]:
        strip_run_ids(child)


class BrokenRetriever(BaseRetriever):
    """A retriever whose vector store is down."""

    def _retrieve(self, query_bundle: Any) -> list:
        raise ConnectionError("vector store is down")


def test_failing_retriever_marks_its_span_and_the_run(li):
    """The retriever's exception reaches the caller unchanged and is recorded on its span and the run."""
    engine = RetrieverQueryEngine.from_args(BrokenRetriever())
    with capture(deterministic=True) as traces, pytest.raises(ConnectionError, match="vector store is down"):
        engine.query("what is alpha?")
    error = {"error.type": "ConnectionError"}
    assert traces.tree(KEYS) == [
        node(
            "RetrieverQueryEngine.query",
            "chain",
            {
                "trodo.run.id": RUN,
                "input.value": QUERY,
                **error,
                "trodo.run.span_count": 2,
                "trodo.run.total_tokens_in": 0,
                "trodo.run.total_tokens_out": 0,
                "trodo.run.total_cost": 0.0,
                "trodo.run.status": "error",
                "trodo.run.error_count": 2,
            },
            node(
                "BrokenRetriever.retrieve",
                "retrieval",
                {"trodo.run.id": RUN, "input.value": QUERY, **error},
                status="ERROR",
            ),
            status="ERROR",
        )
    ]
    root = traces.runs()[0]
    assert root.attributes["trodo.run.error_summary"] == "ConnectionError: vector store is down"
    assert [event["name"] for event in traces.by_name("BrokenRetriever.retrieve").events] == ["exception"]


def test_query_inside_a_trodo_agent_joins_its_run(li):
    """Inside ``@trodo.agent`` the query is a chain span of the agent's run, not a run of its own."""
    engine = build_index().as_query_engine(similarity_top_k=2)

    @trodo.agent("support")
    def support(question: str) -> str:
        return str(engine.query(question))

    with capture(deterministic=True) as traces:
        assert support("what is alpha?") == ANSWER
    inner = query_tree()
    for key in rollups(5):
        inner["attributes"].pop(key)
    assert strip_prompts(traces.tree(KEYS)) == [
        node(
            "support",
            "run",
            {
                "trodo.run.id": RUN,
                "input.value": '{"question":"what is alpha?"}',
                "output.value": OUTPUT,
                **rollups(6),
            },
            inner,
        )
    ]


def test_streaming_chat_engine_is_a_chain_open_until_streamed(li):
    """A chat engine's stream, written to memory by LlamaIndex's thread, ends its run when streamed."""
    memory = ChatMemoryBuffer.from_defaults()  # the default memory opens an aiosqlite database
    engine = build_index().as_chat_engine(chat_mode="context", similarity_top_k=2, memory=memory)
    with capture(deterministic=True) as traces:
        response = engine.stream_chat("what is alpha?")
        assert "".join(response.response_gen) == ANSWER
        finished = threading.Event()
        for _ in range(200):
            if traces.runs():
                break
            finished.wait(0.01)
    [tree] = traces.tree(KEYS)
    assert tree["name"] == "ContextChatEngine.stream_chat"
    assert tree["attributes"] == {
        "trodo.run.id": RUN,
        "input.value": QUERY,
        "output.value": OUTPUT,
        **rollups(5),
    }
    synthesize = tree["children"][1]
    assert synthesize["children"][0]["attributes"]["trodo.llm.time_to_first_token_ms"] == 1.0
    assert strip_prompts([tree]) == [
        node(
            "ContextChatEngine.stream_chat",
            "chain",
            tree["attributes"],
            retrieval("VectorIndexRetriever.retrieve", 2),
            node(
                "CompactAndRefine.synthesize",
                "chain",
                {"trodo.run.id": RUN, "input.value": QUERY, "output.value": OUTPUT},
                llm("ScriptedLLM.stream", **{"trodo.llm.time_to_first_token_ms": 1.0}),
            ),
        )
    ]


class KeywordRerank(BaseNodePostprocessor):
    """Keeps the best node, reporting rerank events the way LlamaIndex's model rerankers do."""

    def _postprocess_nodes(self, nodes: list, query_bundle: Any = None) -> list:
        dispatcher = get_dispatcher(__name__)
        dispatcher.event(
            ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=1, model_name="keyword-rerank")
        )
        kept = nodes[:1]
        dispatcher.event(ReRankEndEvent(nodes=kept))
        return kept


def test_reranker_records_its_input_and_output_documents(li):
    """A reranker is a function span (OpenInference kind RERANKER) with its documents before and after."""
    engine = build_index().as_query_engine(similarity_top_k=2, node_postprocessors=[KeywordRerank()])
    rerank_keys = (
        "openinference.span.kind",
        "reranker.model_name",
        "reranker.top_k",
        "reranker.query",
        "reranker.input_documents.0.document.id",
        "reranker.input_documents.1.document.id",
        "reranker.input_documents.1.document.score",
        "reranker.output_documents.0.document.id",
        "reranker.output_documents.0.document.content",
        "reranker.output_documents.1.document.id",
        "trodo.retrieval.result_count",
        "input.value",
    )
    with capture(deterministic=True) as traces:
        engine.query("what is alpha?")
    tree = traces.tree(rerank_keys)[0]
    assert [child["name"] for child in tree["children"]] == [
        "VectorIndexRetriever.retrieve",
        "KeywordRerank.postprocess_nodes",
        "CompactAndRefine.synthesize",
    ]
    assert tree["children"][1] == node(
        "KeywordRerank.postprocess_nodes",
        "function",
        {
            "openinference.span.kind": "RERANKER",
            "input.value": QUERY,
            "reranker.model_name": "keyword-rerank",
            "reranker.top_k": 1,
            "reranker.query": "what is alpha?",
            "reranker.input_documents.0.document.id": "doc-alpha",
            "reranker.input_documents.1.document.id": "doc-delta",
            "reranker.input_documents.1.document.score": DELTA_SCORE,
            "reranker.output_documents.0.document.id": "doc-alpha",
            "reranker.output_documents.0.document.content": "alpha is the first letter of the greek alphabet",
            "trodo.retrieval.result_count": 1,
        },
    )


def test_llm_stream_ends_with_its_last_chunk_or_when_dropped(li):
    """A direct LLM stream is an llm run ending at its last chunk; one dropped unread ends closed early."""
    llm_object = Settings.llm
    with capture(deterministic=True) as traces:
        chunks = list(llm_object.stream_complete("say alpha"))
        unread = llm_object.stream_complete("say delta")
        assert len(traces.runs()) == 1
        del unread
        gc.collect()
    assert chunks[-1].text == ANSWER
    keys = ("input.value", "output.value", "gen_ai.usage.output_tokens", "trodo.llm.time_to_first_token_ms")
    keys += ("trodo.generator.closed_early", "trodo.run.status")
    assert traces.tree(keys) == [
        node(
            "ScriptedLLM.stream_complete",
            "llm",
            {
                "input.value": '"say alpha"',
                "output.value": OUTPUT,
                "gen_ai.usage.output_tokens": 6,
                "trodo.llm.time_to_first_token_ms": 1.0,
                "trodo.run.status": "ok",
            },
        ),
        node(
            "ScriptedLLM.stream_complete",
            "llm",
            {"input.value": '"say delta"', "trodo.generator.closed_early": True, "trodo.run.status": "ok"},
        ),
    ]
