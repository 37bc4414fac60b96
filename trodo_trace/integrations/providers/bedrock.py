"""Amazon Bedrock through boto3/botocore: ``bedrock-runtime``'s ``converse``, ``converse_stream``,
``invoke_model`` and ``invoke_model_with_response_stream``.

botocore's ``BaseClient._make_api_call`` is patched, so every client, made before or after, is
covered; a call of any other AWS service, or another Bedrock operation, passes straight through.
``invoke_model`` bodies are read in the model family's own format (Anthropic, Amazon Nova, Meta
Llama, Mistral; embedding models as embedding spans); token counts come from the body or, for
formats without usage, Bedrock's ``x-amzn-bedrock-*-token-count`` headers / invocation metrics.
"""

from __future__ import annotations

import importlib
import io
import json
from typing import Any

from ..._internal.core import attrs as A
from ..._internal.core.extract import Usage
from . import _common as C
from . import anthropic as anthropic_format
from ._fields import reader

PATCHES = C.Patches()
PROVIDER = "aws.bedrock"
OI_PROVIDER = "aws"
SERVICE = "bedrock-runtime"
#: botocore operation name -> (span name, streamed)
OPERATIONS = {
    "Converse": ("bedrock.converse", False),
    "ConverseStream": ("bedrock.converse", True),
    "InvokeModel": ("bedrock.invoke_model", False),
    "InvokeModelWithResponseStream": ("bedrock.invoke_model", True),
}
_NOT_PARAMETERS = frozenset(
    {"messages", "system", "toolConfig", "tools", "prompt", "inputText", "texts", "body"}
)


def instrument() -> None:
    """Patch the installed ``botocore`` (idempotent)."""
    try:
        client = importlib.import_module("botocore.client")
    except ImportError:
        return
    owner = getattr(client, "BaseClient", None)
    if owner is not None and "_make_api_call" in owner.__dict__:
        PATCHES.wrap(owner, "_make_api_call", _make_api_call)


def uninstrument() -> None:
    PATCHES.restore()


def _service(client: Any) -> Any:
    try:
        return client.meta.service_model.service_name
    except Exception:
        return None


def _make_api_call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    operation = args[0] if args else kwargs.get("operation_name")
    target = OPERATIONS.get(operation) if isinstance(operation, str) else None
    if target is None or _service(instance) != SERVICE or not C.should_trace():
        return wrapped(*args, **kwargs)
    params = args[1] if len(args) > 1 else kwargs.get("api_params")
    params = params if isinstance(params, dict) else {}
    span_name, streamed = target
    converse = span_name == "bedrock.converse"
    body = {} if converse else _json_body(params.get("body"))
    embedding = not converse and "embed" in str(params.get("modelId", "")).lower()
    if embedding:
        kind, attributes = "function", {A.OI_KIND: "EMBEDDING", A.GEN_AI_OPERATION: "embeddings"}
    else:
        kind, attributes = "llm", {A.GEN_AI_OPERATION: "chat"}
    call = C.Call.start(span_name, kind, attributes)
    call.guard("request", _request, params, body, converse, embedding)
    try:
        with C.use_call(call):
            result = wrapped(*args, **kwargs)
    except BaseException as exc:
        call.guard("error status", _error_status, exc)
        call.error(exc)
        call.end()
        raise
    if streamed:
        key = "stream" if converse else "body"
        stream = result.get(key) if isinstance(result, dict) else None
        if stream is None:
            call.end()
            return result
        state = _converse_stream(call) if converse else _invoke_stream(call, str(params.get("modelId", "")))
        call.guard("response id", _response_id, result, None)
        result[key] = _wrap_event_stream(stream, state)
        return result
    if converse:
        call.guard("response", _converse_response, result)
    else:
        data = _read_body(result)
        call.guard("response", _invoke_response, result, data, str(params.get("modelId", "")), embedding)
    call.end()
    return result


def _error_status(call: C.Call, exc: BaseException) -> None:
    response = getattr(exc, "response", None)
    status = C.get(C.get(response, "ResponseMetadata"), "HTTPStatusCode")
    if isinstance(status, int):
        call.set(C.HTTP_STATUS, status)


def _json_body(body: Any) -> dict[str, Any]:
    try:
        if isinstance(body, (bytes, bytearray, str)):
            parsed = json.loads(body)
            return parsed if isinstance(parsed, dict) else {}
    except ValueError:
        pass
    return {}


def _read_body(result: Any) -> bytes | None:
    """Read ``invoke_model``'s body and put an unread copy back for the caller."""
    body = result.get("body") if isinstance(result, dict) else None
    if body is None or not hasattr(body, "read"):
        return None
    try:
        from botocore.response import StreamingBody  # type: ignore[import-untyped]

        data: bytes = body.read()
        result["body"] = StreamingBody(io.BytesIO(data), len(data))
        return data
    except Exception:
        return None


# -- request -------------------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _request(
    call: C.Call, params: dict[str, Any], body: dict[str, Any], converse: bool, embedding: bool
) -> None:
    model = params.get("modelId")
    call.model(model, PROVIDER, OI_PROVIDER)
    source = params if converse else body
    config = reader(source.get("inferenceConfig") or source.get("textGenerationConfig") or {})
    temperature = _number(source.get("temperature", config("temperature")))
    if temperature is not None:
        call.set(A.TEMPERATURE, temperature)
    for value in (
        config("maxTokens"),
        config("max_new_tokens"),
        config("maxTokenCount"),
        source.get("max_tokens"),
        source.get("max_gen_len"),
    ):
        if isinstance(value, int) and not isinstance(value, bool):
            call.set(C.REQUEST_MAX_TOKENS, value)
            break
    top_p = _number(source.get("top_p", config("topP")))
    if top_p is not None:
        call.set(C.REQUEST_TOP_P, top_p)
    parameters = {
        k: v if type(v) is str else C.to_plain(v) for k, v in source.items() if k not in _NOT_PARAMETERS
    }
    if not converse:
        parameters["modelId"] = model
    call.set(C.INVOCATION_PARAMETERS, C.to_json(parameters))
    if embedding:
        call.set(C.OI_EMBEDDING_MODEL, model)
        texts = source.get("texts") or ([source["inputText"]] if "inputText" in source else [])
        for index, text in enumerate(texts):
            call.content(C.OI_EMBEDDING_TEXT.format(index), text if isinstance(text, str) else None)
        call.capture_value(A.INPUT_VALUE, A.INPUT_MIME, {"input": texts})
        return
    tools = C.get(C.get(source, "toolConfig"), "tools") or source.get("tools") or []
    for index, tool in enumerate(tools):
        call.content(C.OI_TOOL_SCHEMA.format(index), C.to_json(C.to_plain(C.get(tool, "toolSpec") or tool)))
    messages: list[dict[str, Any]] = []
    system = source.get("system")
    if system:
        messages.append(
            {"role": "system", "content": _blocks_text(system) if isinstance(system, list) else system}
        )
    if isinstance(source.get("prompt"), str):
        messages.append({"role": "user", "content": source["prompt"]})
    anthropic_body = not converse and ("anthropic_version" in source or "anthropic" in str(model))
    for message in source.get("messages") or ():
        plain = C.to_plain(message)
        messages.append(plain if anthropic_body else _converse_message(plain))
    for index, message in enumerate(messages):
        if anthropic_body:
            anthropic_format._input_message(call, index, message)
        else:
            _input_message(call, index, message)
    call.capture_value(A.INPUT_VALUE, A.INPUT_MIME, {"messages": messages})


def _blocks_text(blocks: Any) -> str | None:
    texts = [C.get(b, "text") for b in blocks or () if isinstance(C.get(b, "text"), str)]
    return "\n".join(texts) if texts else None


def _converse_message(message: Any) -> dict[str, Any]:
    """A Converse / Nova message (content blocks) as an OpenAI-style message."""
    get = reader(message)
    content = get("content")
    if not isinstance(content, list):
        return {"role": get("role"), "content": content}
    texts, tool_calls, others = [], [], []
    for block in content:
        part = reader(block)
        text = part("text")
        if isinstance(text, str):
            texts.append(text)
        elif part("toolUse") is not None:
            use = part("toolUse")
            tool_calls.append(
                {
                    "id": C.get(use, "toolUseId"),
                    "function": {"name": C.get(use, "name"), "arguments": C.to_json(C.get(use, "input"))},
                }
            )
        else:
            others.append(C.to_json(block))
    out: dict[str, Any] = {"role": get("role"), "content": "\n".join(texts + others) or None}
    if tool_calls:
        out["tool_calls"] = tool_calls
    return out


def _input_message(call: C.Call, index: int, message: dict[str, Any]) -> None:
    call.content(C.OI_INPUT.format(index, "role"), message.get("role"))
    call.content(C.OI_INPUT.format(index, "content"), message.get("content"))
    for position, tool in enumerate(message.get("tool_calls") or ()):
        function = tool["function"]
        call.content(C.OI_INPUT_TOOL_CALL.format(index, position, "function.name"), function["name"])
        call.content(
            C.OI_INPUT_TOOL_CALL.format(index, position, "function.arguments"), function["arguments"]
        )


# -- responses -----------------------------------------------------------------------------------
def _output(call: C.Call, message: dict[str, Any]) -> None:
    call.content(C.OI_OUTPUT.format(0, "role"), message.get("role") or "assistant")
    call.content(C.OI_OUTPUT.format(0, "content"), message.get("content"))
    for position, tool in enumerate(message.get("tool_calls") or ()):
        function = tool["function"]
        call.content(C.OI_TOOL_CALL.format(0, position, "function.name"), function["name"])
        call.content(C.OI_TOOL_CALL.format(0, position, "function.arguments"), function["arguments"])
        if isinstance(tool.get("id"), str):
            call.content(C.OI_TOOL_CALL.format(0, position, "id"), tool["id"])
    shown = {k: v for k, v in message.items() if v is not None}
    shown.setdefault("role", "assistant")
    call.capture_value(A.OUTPUT_VALUE, A.OUTPUT_MIME, shown)


def _converse_usage(usage: Any) -> Usage | None:
    """Converse / Nova usage: ``inputTokens`` leaves out cache reads and writes."""
    if usage is None:
        return None
    get = reader(usage)
    read = get("cacheReadInputTokens")
    read = get("cacheReadInputTokenCount") if read is None else read
    write = get("cacheWriteInputTokens")
    write = get("cacheWriteInputTokenCount") if write is None else write
    read = read if isinstance(read, int) else None
    write = write if isinstance(write, int) else None
    tokens_in = get("inputTokens")
    tokens_out = get("outputTokens")
    if not isinstance(tokens_in, int) and not isinstance(tokens_out, int):
        return None
    total_in = (tokens_in or 0) + (read or 0) + (write or 0) if isinstance(tokens_in, int) else None
    return Usage(total_in, tokens_out if isinstance(tokens_out, int) else None, read, write, None)


def _response_id(call: C.Call, result: Any, body_id: Any) -> None:
    request_id = C.get(C.get(result, "ResponseMetadata"), "RequestId")
    value = body_id if isinstance(body_id, str) else request_id
    if isinstance(value, str) and value:
        call.set(C.RESPONSE_ID, value)


def _converse_response(call: C.Call, result: Any) -> None:
    _response_id(call, result, None)
    reason = C.get(result, "stopReason")
    if isinstance(reason, str):
        call.set(C.FINISH_REASONS, [reason])
    call.usage(_converse_usage(C.get(result, "usage")))
    _output(call, _converse_message(C.get(C.get(result, "output"), "message") or {}))


def _header_usage(result: Any) -> Usage | None:
    headers = C.get(C.get(result, "ResponseMetadata"), "HTTPHeaders") or {}
    tokens_in = headers.get("x-amzn-bedrock-input-token-count")
    tokens_out = headers.get("x-amzn-bedrock-output-token-count")
    if tokens_in is None and tokens_out is None:
        return None
    return Usage(int(tokens_in) if tokens_in else None, int(tokens_out) if tokens_out else None)


def _invoke_response(call: C.Call, result: Any, data: bytes | None, model: str, embedding: bool) -> None:
    body = _json_body(data)
    header_usage = _header_usage(result)
    if embedding:
        _response_id(call, result, None)
        call.usage(
            Usage(header_usage.input_tokens if header_usage else body.get("inputTextTokenCount"), None)
        )
        vectors = body.get("embeddings") or ([body["embedding"]] if "embedding" in body else [])
        summary: dict[str, Any] = {"embeddings": len(vectors)}
        if vectors and hasattr(vectors[0], "__len__"):
            summary["dimensions"] = len(vectors[0])
        call.capture_value(A.OUTPUT_VALUE, A.OUTPUT_MIME, summary)
        _embedding_cost(call)
        return
    if body.get("type") == "message" or ("stop_reason" in body and "content" in body):  # Anthropic
        _response_id(call, result, body.get("id"))
        anthropic_format._response(call, body)
        call.usage(header_usage if C.get(body, "usage") is None else None)
        return
    _response_id(call, result, body.get("id"))
    if "output" in body:  # Nova
        _finish(call, body.get("stopReason"))
        call.usage(_converse_usage(body.get("usage")) or header_usage)
        _output(call, _converse_message(C.get(body.get("output"), "message") or {}))
        return
    if "generation" in body:  # Llama
        _finish(call, body.get("stop_reason"))
        tokens_in, tokens_out = body.get("prompt_token_count"), body.get("generation_token_count")
        call.usage(Usage(tokens_in, tokens_out) if isinstance(tokens_in, int) else header_usage)
        _output(call, {"role": "assistant", "content": body.get("generation")})
        return
    first = (body.get("outputs") or body.get("choices") or [{}])[0]  # Mistral
    text = C.get(first, "text", C.get(C.get(first, "message"), "content"))
    _finish(call, C.get(first, "stop_reason", C.get(first, "finish_reason")))
    call.usage(header_usage)
    _output(call, {"role": "assistant", "content": text})


def _finish(call: C.Call, reason: Any) -> None:
    if isinstance(reason, str):
        call.set(C.FINISH_REASONS, [reason])


def _embedding_cost(call: C.Call) -> None:
    attributes = call.span.attributes
    tokens = attributes.get(A.USAGE_INPUT)
    model = attributes.get(A.REQUEST_MODEL)
    if call.own and isinstance(tokens, int) and model:
        cost = call.runtime.pricing.cost(model, PROVIDER, input_tokens=tokens)
        if cost is not None:
            call.set(A.LLM_COST, cost)


# -- streams ---------------------------------------------------------------------------------
def _converse_stream(call: C.Call) -> C.StreamState:
    """Accumulate ConverseStream events into the Converse response they spell."""
    blocks: dict[int, dict[str, Any]] = {}
    seen: dict[str, Any] = {"role": "assistant"}

    def on_item(event: Any) -> None:
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            use = C.get(C.get(start, "start"), "toolUse")
            if use is not None:
                blocks[C.get(start, "contentBlockIndex") or 0] = {"toolUse": dict(use), "partial": []}
        elif "contentBlockDelta" in event:
            call.first_token()
            delta = event["contentBlockDelta"]
            block = blocks.setdefault(C.get(delta, "contentBlockIndex") or 0, {"text": ""})
            change = C.get(delta, "delta") or {}
            if isinstance(C.get(change, "text"), str):
                block["text"] = (block.get("text") or "") + change["text"]
            elif C.get(change, "toolUse") is not None:
                block.setdefault("partial", []).append(C.get(change["toolUse"], "input") or "")
        elif "messageStart" in event:
            seen["role"] = C.get(event["messageStart"], "role") or "assistant"
        elif "messageStop" in event:
            seen["stopReason"] = C.get(event["messageStop"], "stopReason")
        elif "metadata" in event:
            seen["usage"] = C.get(event["metadata"], "usage")

    def on_end() -> None:
        content = []
        for _, block in sorted(blocks.items()):
            pieces = block.pop("partial", None)
            if "toolUse" in block:
                text = "".join(pieces or ())
                try:
                    block["toolUse"]["input"] = json.loads(text) if text else {}
                except ValueError:
                    block["toolUse"]["input"] = text
            content.append(block)
        response = {
            "output": {"message": {"role": seen["role"], "content": content}},
            "stopReason": seen.get("stopReason"),
            "usage": seen.get("usage"),
        }
        call.guard("stream response", _converse_stream_end, response)

    return C.StreamState(call, on_item, on_end)


def _converse_stream_end(call: C.Call, response: dict[str, Any]) -> None:
    _finish(call, response.get("stopReason"))
    call.usage(_converse_usage(response.get("usage")))
    _output(call, _converse_message(response["output"]["message"]))


def _invoke_stream(call: C.Call, model: str) -> C.StreamState:
    """Accumulate ``invoke_model_with_response_stream`` chunks of any of the four formats."""
    texts: list[str] = []
    seen: dict[str, Any] = {}

    def on_item(event: Any) -> None:
        chunk = _json_body(C.get(C.get(event, "chunk"), "bytes"))
        text = _chunk_text(chunk)
        if text:
            call.first_token()
            texts.append(text)
        message = chunk.get("message") if chunk.get("type") == "message_start" else None
        if message is not None:
            seen.update({k: message[k] for k in ("id", "model") if isinstance(message.get(k), str)})
            seen["anthropic_usage"] = message.get("usage")
        reason = _chunk_stop(chunk)
        if isinstance(reason, str):
            seen["stop"] = reason
        if chunk.get("type") == "message_delta":
            seen["anthropic_out"] = C.get(chunk.get("usage"), "output_tokens")
        if "metadata" in chunk:
            seen["nova_usage"] = C.get(chunk["metadata"], "usage")
        metrics = chunk.get("amazon-bedrock-invocationMetrics")
        if isinstance(metrics, dict):
            seen["metrics"] = metrics

    def on_end() -> None:
        call.guard("stream response", _invoke_stream_end, texts, seen)

    return C.StreamState(call, on_item, on_end)


def _chunk_text(chunk: dict[str, Any]) -> Any:
    if chunk.get("type") == "content_block_delta":
        return C.get(chunk.get("delta"), "text")
    if "contentBlockDelta" in chunk:
        return C.get(C.get(chunk["contentBlockDelta"], "delta"), "text")
    if "generation" in chunk:
        return chunk["generation"]
    first = (chunk.get("outputs") or chunk.get("choices") or [None])[0]
    return C.get(first, "text", C.get(C.get(first, "message"), "content")) if first is not None else None


def _chunk_stop(chunk: dict[str, Any]) -> Any:
    if chunk.get("type") == "message_delta":
        return C.get(chunk.get("delta"), "stop_reason")
    if "messageStop" in chunk:
        return C.get(chunk["messageStop"], "stopReason")
    first = (chunk.get("outputs") or chunk.get("choices") or [chunk])[0]
    return C.get(first, "stop_reason")


def _invoke_stream_end(call: C.Call, texts: list[str], seen: dict[str, Any]) -> None:
    if isinstance(seen.get("id"), str):
        call.set(C.RESPONSE_ID, seen["id"])
    if isinstance(seen.get("model"), str):
        call.set(A.RESPONSE_MODEL, seen["model"])
    _finish(call, seen.get("stop"))
    metrics = seen.get("metrics") or {}
    usage = _converse_usage(seen.get("nova_usage"))
    if usage is None and metrics:
        usage = Usage(metrics.get("inputTokenCount"), metrics.get("outputTokenCount"))
    if usage is None and seen.get("anthropic_usage") is not None:
        usage = Usage(C.get(seen["anthropic_usage"], "input_tokens"), seen.get("anthropic_out"))
    call.usage(usage)
    _output(call, {"role": "assistant", "content": "".join(texts) if texts else None})


def _wrap_event_stream(stream: Any, state: C.StreamState) -> Any:
    return _event_stream_proxy()(stream, state)


_PROXY: Any = None


def _event_stream_proxy() -> Any:
    """botocore's ``EventStream`` is iterable (not an iterator): the proxy's ``__iter__`` reports
    each event; the span ends on exhaustion, an error, ``close()``, a broken-off loop or GC."""
    global _PROXY
    if _PROXY is not None:
        return _PROXY
    import wrapt

    class EventStreamProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]
        def __init__(self, wrapped: Any, state: C.StreamState):
            super().__init__(wrapped)
            self._self_state = state

        def __iter__(self) -> Any:
            state = self._self_state
            try:
                for event in self.__wrapped__:
                    state.item(event)
                    yield event
            except GeneratorExit:
                state.finish(closed_early=True)
                raise
            except BaseException as exc:
                state.finish(exc)
                raise
            state.finish()

        def close(self) -> Any:
            try:
                return self.__wrapped__.close()
            finally:
                self._self_state.finish(closed_early=True)

        def __del__(self) -> None:
            state = getattr(self, "_self_state", None)
            if state is not None and not state.done:
                state.finish(closed_early=True)
                try:  # nobody can read it any more: give the connection back
                    self.__wrapped__.close()
                except Exception:
                    pass

    _PROXY = EventStreamProxy
    return _PROXY
