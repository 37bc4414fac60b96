"""A fake Gemini API / Vertex AI server on 127.0.0.1 for offline tests (re-exported by ``trodo_trace.testing``).

It answers ``google-genai`` clients of both kinds: ``models/M:generateContent``,
``models/M:streamGenerateContent?alt=sse`` (server-sent events), ``:embedContent``,
``:batchEmbedContents`` and Vertex's ``:predict``, under the Gemini API paths (``/v1beta/models/...``)
and the Vertex ones (``/v1beta1/projects/P/locations/L/publishers/google/models/...``), with
function calls, usage metadata (cached and thinking tokens) and Google's error body::

    with FakeGemini() as fake:
        fake.reply("Paris.", usage=(20, 2))
        client = genai.Client(api_key="test", http_options={"base_url": fake.base_url})
        client.models.generate_content(model="gemini-2.5-flash", contents="Capital of France?")
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from ._testing_providers import FakeReply, ReceivedRequest, _FakeServer, _pieces

__all__ = ["FakeGemini"]

_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS"}


class FakeGemini(_FakeServer):
    """A fake Gemini API and Vertex AI endpoint. Give ``google-genai`` ``http_options={"base_url":
    fake.base_url}`` (Vertex clients too).

    Example:
        >>> from trodo_trace.testing import FakeGemini
        >>> with FakeGemini() as fake:
        ...     fake.base_url.startswith("http://127.0.0.1:")
        True
    """

    _api_name = "gemini"

    @property
    def base_url(self) -> str:
        return self.url

    def _handle(self, handler: BaseHTTPRequestHandler, request: ReceivedRequest) -> None:
        path = request.path.split("?")[0]
        body = request.body if isinstance(request.body, dict) else {}
        reply = self._next()
        if reply.status >= 400:
            status = _STATUS.get(reply.status, "INTERNAL")
            message = reply.error_message or f"fake error {reply.status}"
            self._error(
                handler, reply, {"error": {"code": reply.status, "message": message, "status": status}}
            )
            return
        model_path, _, method = path.rpartition(":")
        model = reply.model or model_path.rsplit("/", 1)[-1]
        if method == "generateContent":
            self._json(handler, 200, self._response(model, reply, reply.text, True))
        elif method == "streamGenerateContent":
            self._sse(handler, self._events(model, reply), reply.drop_after)
        elif method == "embedContent":
            usage = {"promptTokenCount": reply.input_tokens}
            self._json(handler, 200, {"embedding": {"values": [0.1, 0.2, 0.3]}, "usageMetadata": usage})
        elif method == "batchEmbedContents":
            count = len(body.get("requests") or ()) or 1
            embeddings = [{"values": [0.1, 0.2, 0.3]} for _ in range(count)]
            usage = {"promptTokenCount": reply.input_tokens}
            self._json(handler, 200, {"embeddings": embeddings, "usageMetadata": usage})
        elif method == "predict":
            instances = body.get("instances") or [{}]
            share = reply.input_tokens // len(instances)
            predictions = [
                {
                    "embeddings": {
                        "values": [0.1, 0.2, 0.3],
                        "statistics": {"token_count": share, "truncated": False},
                    }
                }
                for _ in instances
            ]
            self._json(handler, 200, {"predictions": predictions, "metadata": {"billableCharacterCount": 10}})
        else:
            self._json(
                handler, 404, {"error": {"code": 404, "message": f"no route {path}", "status": "NOT_FOUND"}}
            )

    @staticmethod
    def _usage(reply: FakeReply) -> dict[str, Any]:
        usage = {
            "promptTokenCount": reply.input_tokens,
            "candidatesTokenCount": reply.output_tokens - reply.reasoning_tokens,
            "totalTokenCount": reply.input_tokens + reply.output_tokens,
        }
        if reply.cached_tokens:
            usage["cachedContentTokenCount"] = reply.cached_tokens
        if reply.reasoning_tokens:
            usage["thoughtsTokenCount"] = reply.reasoning_tokens
        return usage

    def _response(self, model: str, reply: FakeReply, text: str | None, last: bool) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [{"text": text}] if text is not None else []
        if last:
            for index, call in enumerate(reply.tool_calls):
                parts.append(
                    {
                        "functionCall": {
                            "id": call.get("id") or f"call_{index}",
                            "name": call["name"],
                            "args": call.get("arguments", {}),
                        }
                    }
                )
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if last:
            reason = reply.finish_reason or "stop"
            candidate["finishReason"] = _FINISH.get(reason, reason)
        return {
            "candidates": [candidate],
            "usageMetadata": self._usage(reply) if last else {"promptTokenCount": reply.input_tokens},
            "modelVersion": model,
            "responseId": "resp-fake",
        }

    def _events(self, model: str, reply: FakeReply) -> list[str]:
        pieces: list[str | None] = list(_pieces(reply.text)) if reply.text else [None]
        return [
            f"data: {json.dumps(self._response(model, reply, piece, i == len(pieces) - 1))}\r\n\r\n"
            for i, piece in enumerate(pieces)
        ]
