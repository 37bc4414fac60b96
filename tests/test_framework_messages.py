"""LangChain and LlamaIndex LLM spans carry OpenInference messages, tool calls, tool schemas and
invocation parameters; LangChain tags, retriever document metadata and LlamaIndex's doc_id are kept;
LlamaIndex embedding spans are OpenInference EMBEDDING. Provider instrumentation is off here, so
every attribute comes from the framework handler itself."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from llama_index.core import VectorStoreIndex
from llama_index.core.llms import ChatMessage
from llama_index.core.schema import TextNode
from provider_fakes import fake_openai, messages_of  # noqa: F401
from test_langchain_fakes import KeywordRetriever
from test_llamaindex_models import KeywordEmbedding, li_fixture, no_network_fixture  # noqa: F401

import trodo_trace as trodo
from trodo_trace.callbacks.langchain import TrodoCallbackHandler
from trodo_trace.testing import capture


@pytest.fixture(autouse=True)
def _no_provider_spans():
    """The handlers alone: provider SDK instrumentation off."""
    trodo.init(instrument=False)


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


def test_langchain_llm_span_messages_tools_parameters_and_tags(fake_openai):
    """ChatOpenAI with a bound tool: input/output messages (with the tool call), the tool's schema,
    invocation parameters and the invocation's tags on the handler's LLM span."""
    fake_openai.reply(
        None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_7"}]
    )
    model = ChatOpenAI(
        model="gpt-4o-mini", base_url=fake_openai.base_url, api_key="k", max_retries=0, temperature=0.1
    )
    handler = TrodoCallbackHandler()
    with capture() as traces:
        model.bind_tools([get_weather]).invoke(
            [("system", "Be brief."), ("user", "Weather in Paris?")],
            config={"callbacks": [handler], "tags": ["prod", "weather"]},
        )
    (span,) = [s for s in traces.spans if s.kind == "llm"]
    assert span.name == "ChatOpenAI"
    assert messages_of(span.attributes) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert messages_of(span.attributes, "output") == [
        {
            "role": "assistant",
            "tool_calls.0.tool_call.function.name": "get_weather",
            "tool_calls.0.tool_call.function.arguments": '{"city": "Paris"}',
            "tool_calls.0.tool_call.id": "call_7",
        }
    ]
    schema = json.loads(span.attributes["llm.tools.0.tool.json_schema"])
    assert schema["function"]["name"] == "get_weather"
    parameters = json.loads(span.attributes["llm.invocation_parameters"])
    assert (parameters["model"], parameters["temperature"]) == ("gpt-4o-mini", 0.1)
    assert "tools" not in parameters
    assert span.attributes["tag.tags"] == ("prod", "weather")


def test_langchain_content_off_keeps_parameters_only(fake_openai):
    """capture_content=False: no message or tool schema attribute, invocation parameters stay."""
    trodo.init(instrument=False, capture_content=False)
    model = ChatOpenAI(model="gpt-4o-mini", base_url=fake_openai.base_url, api_key="k", max_retries=0)
    with capture() as traces:
        model.bind_tools([get_weather]).invoke("Weather?", config={"callbacks": [TrodoCallbackHandler()]})
    (span,) = traces.spans
    assert not [
        k for k in span.attributes if k.startswith(("llm.input_messages", "llm.output_messages", "llm.tools"))
    ]
    assert "llm.invocation_parameters" in span.attributes


def test_langchain_invocation_parameters_json_is_sorted():
    """``llm.invocation_parameters`` is sorted-key JSON (the same text for the same parameters); a
    value JSON cannot encode is written as its repr; private keys and secrets are left out."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    class Model(FakeListChatModel):
        def _get_invocation_params(self, stop: Any = None, **kwargs: Any) -> dict[str, Any]:
            return {
                "zeta": 1,
                "alpha": {"b": [1.5, None, "é"], "a": True},
                "when": {2, 1},
                "api_key": "sk-secret",
                "_private": 3,
            }

    with capture() as traces:
        Model(responses=["ok"]).invoke("hi", config={"callbacks": [TrodoCallbackHandler()]})
    (span,) = traces.spans
    assert span.attributes["llm.invocation_parameters"] == (
        '{"alpha": {"a": true, "b": [1.5, null, "é"]}, "when": "{1, 2}", "zeta": 1}'
    )
    assert messages_of(span.attributes) == [{"role": "user", "content": "hi"}]


def test_langchain_retriever_documents_keep_metadata():
    """A LangChain retriever's documents keep their metadata as retrieval.documents.N.document.metadata."""
    retriever = KeywordRetriever(
        documents=[Document(page_content="Paris weather report", metadata={"source": "wiki", "page": 3})]
    )
    with capture() as traces:
        retriever.invoke("paris weather", config={"callbacks": [TrodoCallbackHandler()], "tags": ["kb"]})
    (span,) = traces.spans
    assert json.loads(span.attributes["retrieval.documents.0.document.metadata"]) == {
        "source": "wiki",
        "page": 3,
    }
    assert span.attributes["tag.tags"] == ("kb",)


def test_llamaindex_llm_span_messages_and_parameters(li, fake_openai):
    """llama-index-llms-openai: input and output messages and invocation parameters on the LLM span."""
    llama_openai = pytest.importorskip("llama_index.llms.openai")
    fake_openai.reply("Sunny.")
    llm = llama_openai.OpenAI(model="gpt-4o-mini", api_base=fake_openai.base_url, api_key="k", max_retries=0)
    with capture() as traces:
        llm.chat(
            [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Weather?")]
        )
    (span,) = [s for s in traces.spans if s.kind == "llm"]
    assert messages_of(span.attributes) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
    ]
    assert messages_of(span.attributes, "output") == [{"role": "assistant", "content": "Sunny."}]
    assert json.loads(span.attributes["llm.invocation_parameters"])["model"] == "gpt-4o-mini"


def test_llamaindex_embedding_kind_and_node_metadata(li):
    """LlamaIndex embedding spans are OpenInference EMBEDDING; retrieved nodes keep metadata and doc_id."""
    node = TextNode(id_="n1", text="Paris is sunny", metadata={"city": "Paris"})
    node.relationships = {}
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo

    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id="doc-42")
    with capture() as traces:
        index = VectorStoreIndex(nodes=[node], embed_model=KeywordEmbedding())
        index.as_retriever(similarity_top_k=1).retrieve("sunny Paris")
    embedding = [s for s in traces.spans if s.attributes.get("gen_ai.operation.name") == "embeddings"]
    assert embedding and {s.attributes["openinference.span.kind"] for s in embedding} == {"EMBEDDING"}
    retrieval = next(s for s in traces.spans if s.kind == "retrieval")
    metadata = json.loads(retrieval.attributes["retrieval.documents.0.document.metadata"])
    assert metadata == {"city": "Paris", "doc_id": "doc-42"}


def test_llamaindex_index_construction_is_one_run(li):
    """Building an index outside any run embeds its nodes in one embedding run, not a run per node."""
    from llama_index.core import Document as LlamaDocument

    documents = [LlamaDocument(text=f"document {i} about Paris weather") for i in range(5)]
    with capture() as traces:
        VectorStoreIndex.from_documents(documents, embed_model=KeywordEmbedding(embed_batch_size=2))
    (run,) = traces.runs()
    assert run.attributes["openinference.span.kind"] == "EMBEDDING"
    assert run.attributes["trodo.run.span_count"] == 1
