"""Models and fixtures shared by the LlamaIndex tests (this module holds no tests).

Everything runs offline on real llama-index-core: a keyword-counting embedding, an LLM that
answers from a script and reports token usage in its raw response the way OpenAI's API does, a
function-calling LLM that asks for a tool and then answers, and nodes written here. The
``li`` fixture points ``Settings`` at them (restored afterwards), uses a whitespace tokenizer
(so no tiktoken file is loaded) and attaches a fresh handler; ``no_network`` makes any socket
connection outside loopback fail.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import llama_index.core
import pytest
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    CustomLLM,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.schema import TextNode
from llama_index.core.utils import set_global_tokenizer

from trodo_trace.callbacks.llamaindex import TrodoLlamaIndexHandler

VOCABULARY = ("alpha", "beta", "gamma", "delta")
ANSWER = "Alpha is the first letter."
USAGE = {"prompt_tokens": 40, "completion_tokens": 6}
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"

NODES = (
    ("doc-alpha", "alpha is the first letter of the greek alphabet"),
    ("doc-delta", "delta is the fourth letter"),
    ("doc-gamma", "gamma gamma rays are light"),
)


class KeywordEmbedding(BaseEmbedding):
    """Embeds a text as the counts of a few keywords (plus a constant, so no vector is zero)."""

    model_name: str = "text-embedding-3-small"

    @staticmethod
    def _vector(text: str) -> list[float]:
        lowered = text.lower()
        return [float(lowered.count(word)) for word in VOCABULARY] + [0.5]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)


class ScriptedLLM(CustomLLM):
    """Completes every prompt with ``ANSWER`` and reports ``USAGE`` in its raw response;
    streams the answer word by word, the usage on the last chunk (as OpenAI streams do)."""

    model: str = "gpt-4o-mini"
    temperature: float = 0.1

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=ANSWER, raw={"model": RESPONSE_MODEL, "usage": dict(USAGE)})

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        words = ANSWER.split(" ")

        def chunks() -> Iterator[CompletionResponse]:
            text = ""
            for index, word in enumerate(words):
                delta = word if index == 0 else " " + word
                text += delta
                last = index == len(words) - 1
                raw = {"model": RESPONSE_MODEL, "usage": dict(USAGE) if last else None}
                yield CompletionResponse(text=text, delta=delta, raw=raw)

        return chunks()


class ToolCallingLLM(FunctionCallingLLM):
    """Asks for the ``weather`` tool until a tool result is in the conversation, then answers."""

    model: str = "gpt-4o-mini"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model, is_function_calling_model=True)

    @staticmethod
    def _reply(messages: Any) -> ChatResponse:
        if any(message.role.value == "tool" for message in messages):
            message = ChatMessage(role="assistant", content="It is sunny in Paris.")
            usage = {"prompt_tokens": 30, "completion_tokens": 6}
        else:
            call = {"id": "call-1", "name": "weather", "args": {"city": "Paris"}}
            message = ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": [call]})
            usage = {"prompt_tokens": 20, "completion_tokens": 8}
        return ChatResponse(message=message, raw={"model": RESPONSE_MODEL, "usage": usage})

    @llm_chat_callback()
    def chat(self, messages: Any, **kwargs: Any) -> ChatResponse:
        return self._reply(messages)

    @llm_chat_callback()
    async def achat(self, messages: Any, **kwargs: Any) -> ChatResponse:
        return self._reply(messages)

    @llm_chat_callback()
    def stream_chat(self, messages: Any, **kwargs: Any) -> Any:
        reply = self._reply(messages)

        def chunks() -> Iterator[ChatResponse]:
            yield reply

        return chunks()

    @llm_chat_callback()
    async def astream_chat(self, messages: Any, **kwargs: Any) -> Any:
        reply = self._reply(messages)

        async def chunks() -> Any:
            yield reply

        return chunks()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise NotImplementedError

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise NotImplementedError

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _prepare_chat_with_tools(
        self, tools: Any, user_msg: Any = None, chat_history: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(ChatMessage(role="user", content=str(user_msg)))
        kwargs.pop("verbose", None)
        kwargs.pop("allow_parallel_tool_calls", None)
        kwargs.pop("tool_required", None)
        return {"messages": messages, **kwargs}

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        calls = response.message.additional_kwargs.get("tool_calls", [])
        return [ToolSelection(tool_id=c["id"], tool_name=c["name"], tool_kwargs=c["args"]) for c in calls]


def build_index() -> VectorStoreIndex:
    return VectorStoreIndex(nodes=[TextNode(id_=node_id, text=text) for node_id, text in NODES])


@pytest.fixture(name="no_network", autouse=True)
def no_network_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection outside loopback fails (no model, tokenizer or corpus download)."""
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
            raise OSError(f"network access in a test: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture(name="li")
def li_fixture() -> Iterator[TrodoLlamaIndexHandler]:
    """Offline models in ``Settings`` and a freshly attached handler; both undone afterwards."""
    saved = (Settings._llm, Settings._embed_model, llama_index.core.global_tokenizer)
    Settings.llm = ScriptedLLM()
    Settings.embed_model = KeywordEmbedding()
    set_global_tokenizer(str.split)
    handler = TrodoLlamaIndexHandler().attach()
    try:
        yield handler
    finally:
        handler.detach()
        Settings._llm, Settings._embed_model, llama_index.core.global_tokenizer = saved
    assert handler.internal_errors == 0


def test_llm_settings_are_read_from_fields_properties_and_extras():
    """The LLM request fields the handler reads (model, temperature, parameters) come from a
    pydantic field, a property or an extra value alike; a name the object lacks reads as missing."""
    from pydantic import BaseModel, ConfigDict

    from trodo_trace.callbacks._llamaindex_extract import attr, llm_parameters, llm_request

    class Settings_(BaseModel):
        model_config = ConfigDict(extra="allow")
        temperature: float = 0.2

        @property
        def model(self) -> str:
            return "gpt-4o-mini"

    class Plain:
        def __init__(self) -> None:
            self.model_name = "plain-model"

        def __getattr__(self, name: str) -> Any:
            if name == "top_p":
                return 0.5
            raise AttributeError(name)

    settings = Settings_(max_tokens=64)
    assert llm_request(settings) == ("gpt-4o-mini", 0.2)
    assert llm_parameters(settings, {"class_name": "X", "context_window": 10}) == {
        "context_window": 10,
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 64,
    }
    assert attr(settings, "top_p") is None and attr(settings, "__pydantic_extra__") == {"max_tokens": 64}
    assert llm_request(Plain()) == ("plain-model", None)
    assert attr(Plain(), "top_p") == 0.5 and attr(Plain(), "missing") is None
