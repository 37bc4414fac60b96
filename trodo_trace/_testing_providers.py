"""Fake OpenAI and Anthropic servers on 127.0.0.1 for offline tests (re-exported by ``trodo_trace.testing``).

Each speaks its API's wire format closely enough for the real SDKs: JSON bodies, server-sent event
streams (with usage chunks), tool calls, and the error bodies of rate limits and server errors. Script
the next replies, then point a client at ``base_url``::

    with FakeOpenAI() as fake:
        fake.reply("Paris.", usage=(20, 2))
        client = openai.OpenAI(base_url=fake.base_url, api_key="test")
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])

A reply that is not scripted is ``"Hello from the fake server."`` with 10 input and 5 output tokens.
``fake.requests`` lists what the server received (path, headers, JSON body).
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeAnthropic", "FakeOpenAI", "FakeReply", "ReceivedRequest"]

DEFAULT_TEXT = "Hello from the fake server."


@dataclass
class FakeReply:
    """One scripted reply: text and/or tool calls, usage, or an error."""

    text: str | None = DEFAULT_TEXT
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int = 10
    output_tokens: int = 5
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    model: str | None = None
    finish_reason: str | None = None
    status: int = 200
    retry_after: float | None = None
    error_message: str | None = None
    drop_after: int | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class ReceivedRequest:
    """A request the fake server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class _FakeServer:
    """The shared machinery: a threaded HTTP server, the reply queue, the request log."""

    _api_name = "fake"

    def __init__(self) -> None:
        self._replies: deque[FakeReply] = deque()
        self._lock = threading.Lock()
        self.requests: list[ReceivedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting --------------------------------------------------------------------------
    def reply(
        self,
        text: str | None = DEFAULT_TEXT,
        *,
        tool_calls: list[dict[str, Any]] | None = None,
        usage: tuple[int, int] | None = None,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        model: str | None = None,
        finish_reason: str | None = None,
        drop_after: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Queue the next successful reply.

        Args:
            text: The assistant's text (``None`` for a reply with tool calls only).
            tool_calls: ``[{"name": ..., "arguments": {...}, "id": optional}]``.
            usage: ``(input_tokens, output_tokens)``; cached tokens are part of the input.
            cached_tokens: Prompt tokens read from the cache.
            cache_write_tokens: Prompt tokens written to the cache (Anthropic).
            reasoning_tokens: Output tokens spent reasoning (OpenAI).
            model: The model the response names (default: the requested one).
            finish_reason: Default ``stop``/``tool_calls`` (OpenAI), ``end_turn``/``tool_use`` (Anthropic).
            drop_after: For a streamed reply, close the connection after this many events.
            delay: Seconds to wait before answering (to provoke client timeouts).
        """
        input_tokens, output_tokens = usage or (10, 5)
        self._queue(
            FakeReply(
                text=text,
                tool_calls=list(tool_calls or []),
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cached_tokens=cached_tokens,
                cache_write_tokens=cache_write_tokens,
                reasoning_tokens=reasoning_tokens,
                model=model,
                finish_reason=finish_reason,
                drop_after=drop_after,
                delay=delay,
            )
        )

    def fail(
        self, status: int = 500, message: str | None = None, *, retry_after: float | None = None
    ) -> None:
        """Queue an error reply: ``status`` with the API's error body (and ``retry-after`` when given)."""
        self._queue(FakeReply(status=status, error_message=message, retry_after=retry_after))

    def _queue(self, reply: FakeReply) -> None:
        with self._lock:
            self._replies.append(reply)

    def _next(self) -> FakeReply:
        with self._lock:
            reply = self._replies.popleft() if self._replies else FakeReply()
        if reply.delay:
            time.sleep(reply.delay)
        return reply

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The URL to give the SDK client (``base_url=``)."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (Azure clients take this as ``azure_endpoint``)."""
        if self._server is None:
            raise RuntimeError("the fake server is not started; use it as a context manager")
        host, port = self._server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}"

    def start(self) -> _FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                request = ReceivedRequest(
                    "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with fake._lock:
                    fake.requests.append(request)
                self.close_connection = True
                try:
                    fake._handle(self, request)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout, a closed stream)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"fake-{self._api_name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- responding ---------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, request: ReceivedRequest) -> None:
        raise NotImplementedError

    @staticmethod
    def _json(
        handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(data)))
        handler.send_header("connection", "close")
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def _sse(handler: BaseHTTPRequestHandler, events: list[str], drop_after: int | None) -> None:
        """Send ``events`` as a chunked event stream; ``drop_after`` cuts the connection mid-body."""
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("transfer-encoding", "chunked")
        handler.send_header("connection", "close")
        handler.end_headers()
        for index, event in enumerate(events):
            if drop_after is not None and index >= drop_after:
                handler.wfile.flush()
                handler.connection.shutdown(2)  # no closing chunk: the client sees a broken body
                return
            data = event.encode()
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()

    def _error(self, handler: BaseHTTPRequestHandler, reply: FakeReply, body: Any) -> None:
        headers = {}
        if reply.retry_after is not None:
            headers["retry-after"] = f"{reply.retry_after:g}"
        self._json(handler, reply.status, body, headers)


def _pieces(text: str, size: int = 3) -> list[str]:
    words = text.split(" ")
    return [
        " ".join(words[i : i + size]) + (" " if i + size < len(words) else "")
        for i in range(0, len(words), size)
    ]


class FakeOpenAI(_FakeServer):
    """A fake OpenAI API: ``/chat/completions``, ``/responses``, ``/embeddings`` (also Azure's
    ``/openai/deployments/NAME/...`` paths).

    Example:
        >>> from trodo_trace.testing import FakeOpenAI
        >>> with FakeOpenAI() as fake:
        ...     fake.base_url.startswith("http://127.0.0.1:")
        True
    """

    _api_name = "openai"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def _handle(self, handler: BaseHTTPRequestHandler, request: ReceivedRequest) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        path = request.path.split("?")[0]
        deployment = None
        if "/deployments/" in path:
            deployment = path.split("/deployments/")[1].split("/")[0]
        reply = self._next()
        if reply.status >= 400:
            kind = {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(reply.status, "server_error")
            message = reply.error_message or f"fake error {reply.status}"
            self._error(
                handler, reply, {"error": {"message": message, "type": kind, "param": None, "code": kind}}
            )
            return
        model = reply.model or body.get("model") or deployment or "gpt-4o-mini"
        if path.endswith("/embeddings"):
            self._json(handler, 200, self._embeddings(body, model, reply))
        elif path.endswith("/responses"):
            if body.get("stream"):
                self._sse(handler, self._responses_events(model, reply), reply.drop_after)
            else:
                self._json(handler, 200, self._response(model, reply))
        elif path.endswith("/chat/completions"):
            if body.get("stream"):
                usage = (body.get("stream_options") or {}).get("include_usage")
                self._sse(handler, self._chat_events(model, reply, bool(usage)), reply.drop_after)
            else:
                self._json(handler, 200, self._chat(model, reply))
        else:
            self._json(handler, 404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    # -- chat completions -------------------------------------------------------------------------
    @staticmethod
    def _usage(reply: FakeReply) -> dict[str, Any]:
        return {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens, "audio_tokens": 0},
        }

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

    def _chat(self, model: str, reply: FakeReply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = self._tool_calls(reply)
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop"),
                }
            ],
            "usage": self._usage(reply),
            "system_fingerprint": "fp_fake",
        }

    def _chat_events(self, model: str, reply: FakeReply, include_usage: bool) -> list[str]:
        def chunk(
            delta: dict[str, Any], finish: str | None = None, usage: Any = None, choices: bool = True
        ) -> str:
            data: dict[str, Any] = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
                if choices
                else [],
            }
            if include_usage:
                data["usage"] = usage
            return f"data: {json.dumps(data)}\n\n"

        events = [chunk({"role": "assistant", "content": ""})]
        for piece in _pieces(reply.text) if reply.text else []:
            events.append(chunk({"content": piece}))
        for index, call in enumerate(self._tool_calls(reply)):
            function = call["function"]
            events.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": function["name"], "arguments": ""},
                            }
                        ]
                    }
                )
            )
            arguments = function["arguments"]
            half = len(arguments) // 2
            for part in (arguments[:half], arguments[half:]):
                events.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]}))
        events.append(chunk({}, reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")))
        if include_usage:
            events.append(chunk({}, usage=self._usage(reply), choices=False))
        events.append("data: [DONE]\n\n")
        return events

    # -- responses ------------------------------------------------------------------------------
    def _response(self, model: str, reply: FakeReply, status: str = "completed") -> dict[str, Any]:
        output: list[dict[str, Any]] = []
        if reply.text is not None:
            output.append(
                {
                    "id": "msg_fake",
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
                }
            )
        for index, call in enumerate(reply.tool_calls):
            output.append(
                {
                    "id": f"fc_{index}",
                    "type": "function_call",
                    "status": "completed",
                    "call_id": call.get("id") or f"call_{index}",
                    "name": call["name"],
                    "arguments": json.dumps(call.get("arguments", {})),
                }
            )
        return {
            "id": "resp_fake",
            "object": "response",
            "created_at": 1_700_000_000,
            "status": status,
            "model": model,
            "output": output if status == "completed" else [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": reply.input_tokens,
                "input_tokens_details": {"cached_tokens": reply.cached_tokens},
                "output_tokens": reply.output_tokens,
                "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
                "total_tokens": reply.input_tokens + reply.output_tokens,
            }
            if status == "completed"
            else None,
        }

    def _responses_events(self, model: str, reply: FakeReply) -> list[str]:
        sequence = iter(range(1_000_000))

        def event(kind: str, **data: Any) -> str:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': next(sequence), **data})}\n\n"

        started = self._response(model, reply, status="in_progress")
        events = [
            event("response.created", response=started),
            event("response.in_progress", response=started),
        ]
        if reply.text is not None:
            item = {
                "id": "msg_fake",
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            events.append(event("response.output_item.added", output_index=0, item=item))
            part = {"type": "output_text", "text": "", "annotations": []}
            events.append(
                event(
                    "response.content_part.added",
                    item_id="msg_fake",
                    output_index=0,
                    content_index=0,
                    part=part,
                )
            )
            for piece in _pieces(reply.text):
                events.append(
                    event(
                        "response.output_text.delta",
                        item_id="msg_fake",
                        output_index=0,
                        content_index=0,
                        delta=piece,
                        logprobs=[],
                    )
                )
            events.append(
                event(
                    "response.output_text.done",
                    item_id="msg_fake",
                    output_index=0,
                    content_index=0,
                    text=reply.text,
                    logprobs=[],
                )
            )
            final = self._response(model, reply)["output"][0]
            events.append(
                event(
                    "response.content_part.done",
                    item_id="msg_fake",
                    output_index=0,
                    content_index=0,
                    part=final["content"][0],
                )
            )
            events.append(event("response.output_item.done", output_index=0, item=final))
        events.append(event("response.completed", response=self._response(model, reply)))
        return events

    # -- embeddings ----------------------------------------------------------------------------
    @staticmethod
    def _embeddings(body: dict[str, Any], model: str, reply: FakeReply) -> dict[str, Any]:
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else 1
        dimensions = body.get("dimensions") or 8
        data = []
        for index in range(count):
            vector = [round(0.1 * ((index + j) % 10), 3) for j in range(dimensions)]
            if body.get("encoding_format") == "base64":
                encoded: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            else:
                encoded = vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": reply.input_tokens, "total_tokens": reply.input_tokens},
        }


class FakeAnthropic(_FakeServer):
    """A fake Anthropic Messages API (``/v1/messages``, JSON and event streams).

    Example:
        >>> from trodo_trace.testing import FakeAnthropic
        >>> with FakeAnthropic() as fake:
        ...     fake.base_url.startswith("http://127.0.0.1:")
        True
    """

    _api_name = "anthropic"

    @property
    def base_url(self) -> str:
        return self.url

    def _handle(self, handler: BaseHTTPRequestHandler, request: ReceivedRequest) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        reply = self._next()
        if reply.status >= 400:
            kind = {
                429: "rate_limit_error",
                400: "invalid_request_error",
                401: "authentication_error",
                529: "overloaded_error",
            }.get(reply.status, "api_error")
            message = reply.error_message or f"fake error {reply.status}"
            self._error(handler, reply, {"type": "error", "error": {"type": kind, "message": message}})
            return
        if not request.path.split("?")[0].endswith("/v1/messages"):
            self._json(
                handler, 404, {"type": "error", "error": {"type": "not_found_error", "message": "no route"}}
            )
            return
        model = reply.model or body.get("model") or "claude-haiku-4-5"
        if body.get("stream"):
            self._sse(handler, self._events(model, reply), reply.drop_after)
        else:
            self._json(handler, 200, self._message(model, reply))

    @staticmethod
    def _usage(reply: FakeReply, output_tokens: int | None = None) -> dict[str, Any]:
        uncached = reply.input_tokens - reply.cached_tokens - reply.cache_write_tokens
        return {
            "input_tokens": max(uncached, 0),
            "cache_read_input_tokens": reply.cached_tokens,
            "cache_creation_input_tokens": reply.cache_write_tokens,
            "output_tokens": reply.output_tokens if output_tokens is None else output_tokens,
        }

    @staticmethod
    def _blocks(reply: FakeReply) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if reply.text is not None:
            blocks.append({"type": "text", "text": reply.text})
        for index, call in enumerate(reply.tool_calls):
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.get("id") or f"toolu_{index}",
                    "name": call["name"],
                    "input": call.get("arguments", {}),
                }
            )
        return blocks

    def _message(self, model: str, reply: FakeReply) -> dict[str, Any]:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": self._blocks(reply),
            "stop_reason": reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn"),
            "stop_sequence": None,
            "usage": self._usage(reply),
        }

    def _events(self, model: str, reply: FakeReply) -> list[str]:
        def event(kind: str, **data: Any) -> str:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

        start = dict(self._message(model, reply), content=[], stop_reason=None, usage=self._usage(reply, 1))
        events = [event("message_start", message=start)]
        for index, block in enumerate(self._blocks(reply)):
            if block["type"] == "text":
                events.append(
                    event("content_block_start", index=index, content_block={"type": "text", "text": ""})
                )
                for piece in _pieces(block["text"]):
                    events.append(
                        event("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
                    )
            else:
                events.append(event("content_block_start", index=index, content_block=dict(block, input={})))
                arguments = json.dumps(block["input"])
                half = len(arguments) // 2
                for part in (arguments[:half], arguments[half:]):
                    events.append(
                        event(
                            "content_block_delta",
                            index=index,
                            delta={"type": "input_json_delta", "partial_json": part},
                        )
                    )
            events.append(event("content_block_stop", index=index))
        stop = reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn")
        events.append(
            event(
                "message_delta",
                delta={"stop_reason": stop, "stop_sequence": None},
                usage={"output_tokens": reply.output_tokens},
            )
        )
        events.append(event("message_stop"))
        return events
