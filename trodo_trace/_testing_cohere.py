"""A fake Cohere v2 API on 127.0.0.1 for offline tests (re-exported by ``trodo_trace.testing``).

It speaks what the ``cohere`` SDK's ``ClientV2`` parses: ``/v2/chat`` (JSON, and with
``"stream": true`` the v2 event stream: ``message-start``, ``content-*``, ``tool-plan-delta``,
``tool-call-*``, ``message-end``), ``/v2/embed`` and ``/v2/rerank``, and Cohere's error bodies::

    with FakeCohere() as fake:
        fake.reply("Paris.", usage=(20, 2))
        client = cohere.ClientV2(api_key="test", base_url=fake.base_url)
        client.chat(model="command-a-03-2025", messages=[{"role": "user", "content": "Capital?"}])

Scripting (``reply``, ``fail``, ``requests``) is the same as ``FakeOpenAI``'s. A rerank scores the
documents by how many query words they contain; it takes the next scripted reply only when that is
an error (``fail``), so a reply scripted for a chat is not used up by a rerank before it.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from ._testing_providers import FakeReply, ReceivedRequest, _FakeServer, _pieces

__all__ = ["FakeCohere"]


class FakeCohere(_FakeServer):
    """A fake Cohere v2 API: ``/v2/chat`` (JSON and event streams), ``/v2/embed``, ``/v2/rerank``.

    Example:
        >>> from trodo_trace.testing import FakeCohere
        >>> with FakeCohere() as fake:
        ...     fake.base_url.startswith("http://127.0.0.1:")
        True
    """

    _api_name = "cohere"

    @property
    def base_url(self) -> str:
        return self.url

    def _handle(self, handler: BaseHTTPRequestHandler, request: ReceivedRequest) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        path = request.path.split("?")[0]
        reply = self._next_error() if path.endswith("/v2/rerank") else self._next()
        if reply.status >= 400:
            message = reply.error_message or f"fake error {reply.status}"
            self._error(handler, reply, {"id": "err-fake", "message": message})
            return
        if path.endswith("/v2/chat"):
            if body.get("stream"):
                self._sse(handler, self._events(reply), reply.drop_after)
            else:
                self._json(handler, 200, self._chat(reply))
        elif path.endswith("/v2/embed"):
            self._json(handler, 200, self._embed(body, reply))
        elif path.endswith("/v2/rerank"):
            self._json(handler, 200, self._rerank(body))
        else:
            self._json(handler, 404, {"id": "err-fake", "message": f"no route {path}"})

    def _next_error(self) -> FakeReply:
        with self._lock:
            if self._replies and self._replies[0].status >= 400:
                return self._replies.popleft()
        return FakeReply()

    # -- chat ------------------------------------------------------------------------------------
    @staticmethod
    def _usage(reply: FakeReply) -> dict[str, Any]:
        tokens = {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens}
        return {"billed_units": dict(tokens), "tokens": dict(tokens)}

    @staticmethod
    def _finish(reply: FakeReply) -> str:
        return reply.finish_reason or ("TOOL_CALL" if reply.tool_calls else "COMPLETE")

    @staticmethod
    def _tool_calls(reply: FakeReply) -> list[dict[str, Any]]:
        return [
            {
                "id": call.get("id") or f"call_{index}",
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call.get("arguments", {}))},
            }
            for index, call in enumerate(reply.tool_calls)
        ]

    def _chat(self, reply: FakeReply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant"}
        if reply.tool_calls:
            message["tool_plan"] = reply.text or ""
            message["tool_calls"] = self._tool_calls(reply)
        elif reply.text is not None:
            message["content"] = [{"type": "text", "text": reply.text}]
        return {
            "id": "chat-fake",
            "finish_reason": self._finish(reply),
            "message": message,
            "usage": self._usage(reply),
        }

    def _events(self, reply: FakeReply) -> list[str]:
        def event(kind: str, **data: Any) -> str:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

        start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
        events = [event("message-start", id="chat-fake", delta={"message": start})]
        if reply.tool_calls:
            for piece in _pieces(reply.text) if reply.text else []:
                events.append(event("tool-plan-delta", delta={"message": {"tool_plan": piece}}))
            for index, call in enumerate(self._tool_calls(reply)):
                opening = dict(call, function={"name": call["function"]["name"], "arguments": ""})
                events.append(
                    event("tool-call-start", index=index, delta={"message": {"tool_calls": opening}})
                )
                arguments = call["function"]["arguments"]
                half = len(arguments) // 2
                for part in (arguments[:half], arguments[half:]):
                    delta = {"message": {"tool_calls": {"function": {"arguments": part}}}}
                    events.append(event("tool-call-delta", index=index, delta=delta))
                events.append(event("tool-call-end", index=index))
        elif reply.text is not None:
            opening = {"message": {"content": {"type": "text", "text": ""}}}
            events.append(event("content-start", index=0, delta=opening))
            for piece in _pieces(reply.text):
                events.append(
                    event("content-delta", index=0, delta={"message": {"content": {"text": piece}}})
                )
            events.append(event("content-end", index=0))
        end = {"finish_reason": self._finish(reply), "usage": self._usage(reply)}
        events.append(event("message-end", delta=end))
        return events

    # -- embed and rerank --------------------------------------------------------------------------
    @staticmethod
    def _embed(body: dict[str, Any], reply: FakeReply) -> dict[str, Any]:
        texts = body.get("texts") or []
        dimensions = body.get("output_dimension") or 8
        vectors = [
            [round(0.1 * ((index + j) % 10), 3) for j in range(dimensions)] for index in range(len(texts))
        ]
        kinds = body.get("embedding_types") or ["float"]
        return {
            "id": "embed-fake",
            "response_type": "embeddings_by_type",
            "embeddings": {kind: vectors for kind in kinds},
            "texts": texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": reply.input_tokens}},
        }

    @staticmethod
    def _rerank(body: dict[str, Any]) -> dict[str, Any]:
        words = set(str(body.get("query") or "").lower().split())
        documents = [str(d.get("text") if isinstance(d, dict) else d) for d in body.get("documents") or []]
        scored = []
        for index, document in enumerate(documents):
            hits = len(words & set(document.lower().replace(".", " ").split()))
            scored.append((round(hits / (len(words) or 1), 4), index))
        scored.sort(key=lambda pair: (-pair[0], pair[1]))
        top = body.get("top_n") or len(scored)
        return {
            "id": "rerank-fake",
            "results": [{"index": index, "relevance_score": score} for score, index in scored[:top]],
            "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
        }
