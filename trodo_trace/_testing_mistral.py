"""A fake Mistral API on 127.0.0.1 for offline tests (re-exported by ``trodo_trace.testing``).

It speaks what the ``mistralai`` SDK parses: ``/v1/chat/completions`` (JSON, and with
``"stream": true`` server-sent ``data:`` chunks with the usage in the last one, then ``[DONE]``),
``/v1/embeddings``, and Mistral's error bodies::

    with FakeMistral() as fake:
        fake.reply("Paris.", usage=(20, 2))
        client = Mistral(api_key="test", server_url=fake.base_url)
        client.chat.complete(model="mistral-small-latest", messages=[{"role": "user", "content": "Capital?"}])

Scripting (``reply``, ``fail``, ``requests``) is the same as ``FakeOpenAI``'s.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from ._testing_providers import FakeReply, ReceivedRequest, _FakeServer, _pieces

__all__ = ["FakeMistral"]


class FakeMistral(_FakeServer):
    """A fake Mistral API: ``/v1/chat/completions`` (JSON and event streams), ``/v1/embeddings``.

    Example:
        >>> from trodo_trace.testing import FakeMistral
        >>> with FakeMistral() as fake:
        ...     fake.base_url.startswith("http://127.0.0.1:")
        True
    """

    _api_name = "mistral"

    @property
    def base_url(self) -> str:
        return self.url

    def _handle(self, handler: BaseHTTPRequestHandler, request: ReceivedRequest) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        path = request.path.split("?")[0]
        reply = self._next()
        if reply.status >= 400:
            kind = {429: "rate_limited", 401: "unauthorized"}.get(reply.status, "internal_error")
            message = reply.error_message or f"fake error {reply.status}"
            error = {
                "object": "error",
                "message": message,
                "type": kind,
                "param": None,
                "code": str(reply.status),
            }
            self._error(handler, reply, error)
            return
        model = reply.model or body.get("model") or "mistral-small-latest"
        if path.endswith("/v1/chat/completions"):
            if body.get("stream"):
                self._sse(handler, self._events(model, reply), reply.drop_after)
            else:
                self._json(handler, 200, self._chat(model, reply))
        elif path.endswith("/v1/embeddings"):
            self._json(handler, 200, self._embeddings(body, model, reply))
        else:
            self._json(handler, 404, {"object": "error", "message": f"no route {path}", "type": "not_found"})

    @staticmethod
    def _usage(reply: FakeReply) -> dict[str, Any]:
        return {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }

    @staticmethod
    def _tool_calls(reply: FakeReply) -> list[dict[str, Any]]:
        return [
            {
                "id": call.get("id") or f"call{index:05d}",
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call.get("arguments", {}))},
                "index": index,
            }
            for index, call in enumerate(reply.tool_calls)
        ]

    @staticmethod
    def _finish(reply: FakeReply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    def _chat(self, model: str, reply: FakeReply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or "", "tool_calls": None}
        if reply.tool_calls:
            message["tool_calls"] = self._tool_calls(reply)
        return {
            "id": "cmpl-fake",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish(reply)}],
            "usage": self._usage(reply),
        }

    def _events(self, model: str, reply: FakeReply) -> list[str]:
        def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> str:
            data: dict[str, Any] = {
                "id": "cmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage is not None:
                data["usage"] = usage
            return f"data: {json.dumps(data)}\n\n"

        events = [chunk({"role": "assistant", "content": ""})]
        for piece in _pieces(reply.text) if reply.text else []:
            events.append(chunk({"content": piece}))
        if reply.tool_calls:
            events.append(chunk({"tool_calls": self._tool_calls(reply)}))  # Mistral sends them whole
        events.append(chunk({"content": ""}, self._finish(reply), self._usage(reply)))
        events.append("data: [DONE]\n\n")
        return events

    @staticmethod
    def _embeddings(body: dict[str, Any], model: str, reply: FakeReply) -> dict[str, Any]:
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": [round(0.1 * ((index + j) % 10), 3) for j in range(8)],
            }
            for index in range(count)
        ]
        usage = {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": 0,
            "total_tokens": reply.input_tokens,
        }
        return {"id": "embd-fake", "object": "list", "data": data, "model": model, "usage": usage}
