"""Real LangChain objects the LangChain tests share: a scripted chat model that calls tools and
reports usage, a retriever, tools, and helpers to compare whole span trees. Holds no tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import tool

import trodo_trace as trodo

USAGE = {"input_tokens": 100, "output_tokens": 20, "total_tokens": 120}
USAGE_DETAILED = {
    "input_tokens": 200,
    "output_tokens": 50,
    "total_tokens": 250,
    "input_token_details": {"cache_read": 80},
    "output_token_details": {"reasoning": 30},
}


class ScriptedChatModel(BaseChatModel):
    """A chat model that answers from the conversation, statelessly (safe under concurrency).

    With tools bound and a human message last, it calls ``tool_name`` with the message text;
    after a tool message it answers ``"answer: <tool output>"``; otherwise it echoes.
    """

    model_name: str = "gpt-4o-mini"
    temperature: float = 0.2
    tool_name: str | None = None
    usage: dict[str, Any] | None = None
    fail_with: str | None = None
    report_tokens: bool = True

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "openai"
        params["ls_model_name"] = self.model_name
        params["ls_temperature"] = self.temperature
        return params

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        names = [getattr(t, "name", None) for t in tools]
        return self.model_copy(update={"tool_name": names[0] if names else None})

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        if self.fail_with:
            raise RuntimeError(self.fail_with)
        last = messages[-1]
        meta = {"model_name": f"{self.model_name}-2024-07-18", "finish_reason": "stop"}
        usage = self.usage or USAGE
        if isinstance(last, ToolMessage):
            return AIMessage(content=f"answer: {last.content}", usage_metadata=usage, response_metadata=meta)
        if self.tool_name and isinstance(last, HumanMessage):
            call = {"name": self.tool_name, "args": {"query": str(last.content)}, "id": "call_1"}
            return AIMessage(
                content="",
                tool_calls=[call],
                usage_metadata=usage,
                response_metadata={**meta, "finish_reason": "tool_calls"},
            )
        return AIMessage(content=f"echo: {last.content}", usage_metadata=usage, response_metadata=meta)

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._reply(messages)
        words = str(reply.content).split(" ")
        for index, word in enumerate(words):
            text = word if index == len(words) - 1 else word + " "
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
            if run_manager and self.report_tokens:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk
        chunks = [
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
            for i, c in enumerate(reply.tool_calls)
        ]
        last = AIMessageChunk(content="", usage_metadata=reply.usage_metadata, tool_call_chunks=chunks)
        last.response_metadata = dict(reply.response_metadata)
        yield ChatGenerationChunk(message=last)


class KeywordRetriever(BaseRetriever):
    """Returns the stored documents sharing a word of four letters or more with the query."""

    documents: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        words = {word for word in query.lower().split() if len(word) > 3}
        return [d for d in self.documents if words & set(d.page_content.lower().split())]


@trodo.tool
def normalise(text: str) -> str:
    """A decorated helper called from inside LangChain tools."""
    return text.strip().lower()


@tool
def search(query: str) -> str:
    """Search the knowledge base."""
    return f"found {normalise(query)}"


@tool
def broken(query: str) -> str:
    """A tool that always fails."""
    raise ValueError(f"cannot handle {query}")


def sort_children(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trees whose siblings ran in parallel: siblings ordered by content instead of start time."""
    for node in nodes:
        sort_children(node["children"])
    nodes.sort(key=lambda node: json.dumps(node, sort_keys=True))
    return nodes


def node(
    name: str, kind: str, *children: dict[str, Any], status: str = "OK", attrs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One expected node of ``Capture.tree(keys)``."""
    return {
        "name": name,
        "kind": kind,
        "status": status,
        "attributes": attrs or {},
        "children": list(children),
    }
