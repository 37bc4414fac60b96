"""A fake Amazon Bedrock Runtime on 127.0.0.1 for offline tests (re-exported by ``trodo_trace.testing``).

It speaks the wire format boto3 parses: JSON for ``converse`` and ``invoke_model``, AWS event-stream
binary frames (with their CRCs) for ``converse_stream`` and ``invoke_model_with_response_stream``,
and the REST-JSON error shape (``x-amzn-errortype`` header). ``invoke_model`` bodies follow the
model family named by the model id: Anthropic (``anthropic.``), Amazon Nova (``amazon.nova``),
Meta Llama (``meta.``), Mistral (``mistral.``), and embedding models (``...embed...``)::

    with FakeBedrock() as fake:
        fake.reply("Paris.", usage=(20, 2))
        client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=fake.url,
                              aws_access_key_id="test", aws_secret_access_key="test")
        client.converse(modelId="amazon.nova-lite-v1:0", messages=[...])
"""

from __future__ import annotations

import base64
import json
import struct
from binascii import crc32
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

from ._testing_providers import FakeReply, ReceivedRequest, _FakeServer

__all__ = ["FakeBedrock", "event_stream_frame"]

_ERROR_CODES = {429: "ThrottlingException", 400: "ValidationException", 500: "InternalServerException"}


def event_stream_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (lengths + CRC), string headers, payload, message CRC."""
    encoded = b""
    for name, value in headers.items():
        key, data = name.encode(), value.encode()
        encoded += bytes([len(key)]) + key + b"\x07" + struct.pack("!H", len(data)) + data
    prelude = struct.pack("!II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    prelude += struct.pack("!I", crc32(prelude) & 0xFFFFFFFF)
    message = prelude + encoded + payload
    return message + struct.pack("!I", crc32(message) & 0xFFFFFFFF)


def _event(event_type: str, body: Any) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return event_stream_frame(headers, json.dumps(body).encode())


class FakeBedrock(_FakeServer):
    """A fake Bedrock Runtime: ``/model/ID/converse``, ``/converse-stream``, ``/invoke`` and
    ``/invoke-with-response-stream``. Give boto3 ``endpoint_url=fake.url``.

    ``fail(429)`` answers ``ThrottlingException`` (``fail(400, code="ThrottlingException")`` too),
    ``fail(500)`` ``InternalServerException``; ``reply(..., drop_after=N)`` cuts a stream after N frames.

    Example:
        >>> from trodo_trace.testing import FakeBedrock
        >>> with FakeBedrock() as fake:
        ...     fake.url.startswith("http://127.0.0.1:")
        True
    """

    _api_name = "bedrock"

    def __init__(self) -> None:
        super().__init__()
        self._codes: list[str | None] = []

    @property
    def base_url(self) -> str:
        return self.url

    def fail(
        self,
        status: int = 500,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        """Queue an error reply: ``status`` with Bedrock's error type (``code``, default by status)."""
        with self._lock:
            self._codes.append(code)
        super().fail(status, message, retry_after=retry_after)

    def _handle(self, handler: BaseHTTPRequestHandler, request: ReceivedRequest) -> None:
        path = unquote(request.path.split("?")[0])
        parts = path.strip("/").split("/")
        reply = self._next()
        if reply.status >= 400:
            with self._lock:
                code = (self._codes.pop(0) if self._codes else None) or _ERROR_CODES.get(
                    reply.status, "InternalServerException"
                )
            message = reply.error_message or f"fake error {reply.status}"
            self._json(handler, reply.status, {"message": message}, {"x-amzn-errortype": f"{code}:"})
            return
        if len(parts) < 3 or parts[0] != "model":
            self._json(
                handler, 404, {"message": f"no route {path}"}, {"x-amzn-errortype": "UnknownOperation:"}
            )
            return
        model, operation = "/".join(parts[1:-1]), parts[-1]
        body = request.body if isinstance(request.body, dict) else {}
        if operation == "converse":
            self._json(handler, 200, self._converse(reply), {"x-amzn-requestid": "req-fake"})
        elif operation == "converse-stream":
            self._frames(handler, self._converse_events(reply), reply.drop_after)
        elif operation == "invoke":
            data = json.dumps(_invoke_body(model, body, reply)).encode()
            handler.send_response(200)
            for key, value in (
                ("content-type", "application/json"),
                ("content-length", str(len(data))),
                ("x-amzn-requestid", "req-fake"),
                ("x-amzn-bedrock-input-token-count", str(reply.input_tokens)),
                ("x-amzn-bedrock-output-token-count", str(0 if "embed" in model else reply.output_tokens)),
                ("connection", "close"),
            ):
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        elif operation == "invoke-with-response-stream":
            chunks = _invoke_chunks(model, body, reply)
            frames = [
                _event("chunk", {"bytes": base64.b64encode(json.dumps(c).encode()).decode()}) for c in chunks
            ]
            self._frames(handler, frames, reply.drop_after)
        else:
            self._json(
                handler, 404, {"message": f"no route {path}"}, {"x-amzn-errortype": "UnknownOperation:"}
            )

    @staticmethod
    def _frames(handler: BaseHTTPRequestHandler, frames: list[bytes], drop_after: int | None) -> None:
        handler.send_response(200)
        handler.send_header("content-type", "application/vnd.amazon.eventstream")
        handler.send_header("x-amzn-requestid", "req-fake")
        handler.send_header("transfer-encoding", "chunked")
        handler.send_header("connection", "close")
        handler.end_headers()
        for index, frame in enumerate(frames):
            if drop_after is not None and index >= drop_after:
                handler.wfile.flush()
                handler.connection.shutdown(2)
                return
            handler.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
            handler.wfile.flush()
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()

    # -- converse ----------------------------------------------------------------------------
    @staticmethod
    def _usage(reply: FakeReply) -> dict[str, Any]:
        usage = {  # inputTokens leaves out the cached prompt tokens, as Bedrock's does
            "inputTokens": reply.input_tokens - reply.cached_tokens - reply.cache_write_tokens,
            "outputTokens": reply.output_tokens,
            "totalTokens": reply.input_tokens + reply.output_tokens,
        }
        if reply.cached_tokens:
            usage["cacheReadInputTokens"] = reply.cached_tokens
        if reply.cache_write_tokens:
            usage["cacheWriteInputTokens"] = reply.cache_write_tokens
        return usage

    @staticmethod
    def _stop(reply: FakeReply) -> str:
        return reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn")

    def _converse(self, reply: FakeReply) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if reply.text is not None:
            content.append({"text": reply.text})
        for index, call in enumerate(reply.tool_calls):
            content.append(
                {
                    "toolUse": {
                        "toolUseId": call.get("id") or f"tooluse_{index}",
                        "name": call["name"],
                        "input": call.get("arguments", {}),
                    }
                }
            )
        return {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": self._stop(reply),
            "usage": self._usage(reply),
            "metrics": {"latencyMs": 12},
        }

    def _converse_events(self, reply: FakeReply) -> list[bytes]:
        frames = [_event("messageStart", {"role": "assistant"})]
        index = 0
        if reply.text is not None:
            for piece in _pieces(reply.text):
                frames.append(_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}))
            frames.append(_event("contentBlockStop", {"contentBlockIndex": 0}))
            index = 1
        for position, call in enumerate(reply.tool_calls):
            block = index + position
            start = {"toolUse": {"toolUseId": call.get("id") or f"tooluse_{position}", "name": call["name"]}}
            frames.append(_event("contentBlockStart", {"contentBlockIndex": block, "start": start}))
            arguments = json.dumps(call.get("arguments", {}))
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                delta = {"contentBlockIndex": block, "delta": {"toolUse": {"input": piece}}}
                frames.append(_event("contentBlockDelta", delta))
            frames.append(_event("contentBlockStop", {"contentBlockIndex": block}))
        frames.append(_event("messageStop", {"stopReason": self._stop(reply)}))
        frames.append(_event("metadata", {"usage": self._usage(reply), "metrics": {"latencyMs": 12}}))
        return frames


def _pieces(text: str, size: int = 3) -> list[str]:
    words = text.split(" ")
    return [
        " ".join(words[i : i + size]) + (" " if i + size < len(words) else "")
        for i in range(0, len(words), size)
    ]


def _family(model: str) -> str:
    name = model.lower()
    for family in ("anthropic", "nova", "llama", "mistral"):
        if family in name:
            return family
    return "embed" if "embed" in name else "anthropic"


def _metrics(reply: FakeReply) -> dict[str, int]:
    return {
        "inputTokenCount": reply.input_tokens,
        "outputTokenCount": reply.output_tokens,
        "invocationLatency": 12,
        "firstByteLatency": 5,
    }


def _invoke_body(model: str, request: dict[str, Any], reply: FakeReply) -> dict[str, Any]:
    """The response body of ``invoke_model`` in the model family's own format."""
    family = "embed" if "embed" in model.lower() else _family(model)
    stop = reply.finish_reason
    if family == "embed":
        return {"embedding": [0.1, 0.2, 0.3], "inputTextTokenCount": reply.input_tokens}
    if family == "anthropic":
        content: list[dict[str, Any]] = []
        if reply.text is not None:
            content.append({"type": "text", "text": reply.text})
        for index, call in enumerate(reply.tool_calls):
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id") or f"toolu_{index}",
                    "name": call["name"],
                    "input": call.get("arguments", {}),
                }
            )
        usage = {
            "input_tokens": reply.input_tokens - reply.cached_tokens,
            "output_tokens": reply.output_tokens,
        }
        if reply.cached_tokens:
            usage["cache_read_input_tokens"] = reply.cached_tokens
        return {
            "id": "msg_bdrk_fake",
            "type": "message",
            "role": "assistant",
            "model": reply.model or model.split(".", 1)[-1],
            "content": content,
            "stop_reason": stop or ("tool_use" if reply.tool_calls else "end_turn"),
            "stop_sequence": None,
            "usage": usage,
        }
    if family == "nova":
        parts: list[dict[str, Any]] = [{"text": reply.text}] if reply.text is not None else []
        for index, call in enumerate(reply.tool_calls):
            parts.append(
                {
                    "toolUse": {
                        "toolUseId": call.get("id") or f"tooluse_{index}",
                        "name": call["name"],
                        "input": call.get("arguments", {}),
                    }
                }
            )
        return {
            "output": {"message": {"role": "assistant", "content": parts}},
            "stopReason": stop or ("tool_use" if reply.tool_calls else "end_turn"),
            "usage": {
                "inputTokens": reply.input_tokens,
                "outputTokens": reply.output_tokens,
                "totalTokens": reply.input_tokens + reply.output_tokens,
            },
        }
    if family == "llama":
        return {
            "generation": reply.text or "",
            "prompt_token_count": reply.input_tokens,
            "generation_token_count": reply.output_tokens,
            "stop_reason": stop or "stop",
        }
    if "messages" in request:  # Mistral's chat format
        return {
            "id": "mistral-fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "stop_reason": stop or "stop",
                }
            ],
        }
    return {"outputs": [{"text": reply.text or "", "stop_reason": stop or "stop"}]}


def _invoke_chunks(model: str, request: dict[str, Any], reply: FakeReply) -> list[dict[str, Any]]:
    """The JSON chunks of ``invoke_model_with_response_stream`` in the model family's format; the
    last carries ``amazon-bedrock-invocationMetrics`` as Bedrock's do."""
    family = _family(model)
    pieces = _pieces(reply.text or "")
    stop = reply.finish_reason
    chunks: list[dict[str, Any]]
    if family == "anthropic":
        chunks = [
            {
                "type": "message_start",
                "message": {
                    "id": "msg_bdrk_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": reply.model or model.split(".", 1)[-1],
                    "content": [],
                    "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
                },
            },
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            *(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
                for p in pieces
            ),
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop or "end_turn"},
                "usage": {"output_tokens": reply.output_tokens},
            },
            {"type": "message_stop"},
        ]
    elif family == "nova":
        chunks = [
            {"messageStart": {"role": "assistant"}},
            *({"contentBlockDelta": {"delta": {"text": p}, "contentBlockIndex": 0}} for p in pieces),
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"messageStop": {"stopReason": stop or "end_turn"}},
            {"metadata": {"usage": {"inputTokens": reply.input_tokens, "outputTokens": reply.output_tokens}}},
        ]
    elif family == "llama":
        chunks = [
            {
                "generation": p,
                "prompt_token_count": reply.input_tokens if i == 0 else None,
                "generation_token_count": i + 1,
                "stop_reason": None,
            }
            for i, p in enumerate(pieces)
        ]
        chunks.append(
            {
                "generation": "",
                "prompt_token_count": None,
                "generation_token_count": reply.output_tokens,
                "stop_reason": stop or "stop",
            }
        )
    elif "messages" in request:
        chunks = [
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": p}, "stop_reason": None}]}
            for p in pieces
        ]
        chunks.append(
            {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": ""},
                        "stop_reason": stop or "stop",
                    }
                ]
            }
        )
    else:
        chunks = [{"outputs": [{"text": p, "stop_reason": None}]} for p in pieces]
        chunks.append({"outputs": [{"text": "", "stop_reason": stop or "stop"}]})
    chunks[-1]["amazon-bedrock-invocationMetrics"] = _metrics(reply)
    return chunks
