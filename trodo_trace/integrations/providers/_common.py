"""What every provider module shares: the patch registry, the span of one provider call (or the
enclosing LLM span it merges into), the stream proxies, and small isolated readers.

Counted once: a provider call made while an LLM span of ``@trodo.llm`` or of the LangChain /
LlamaIndex handlers is current (for an embedding call: an embedding span, such as LlamaIndex's) does
not start a span of its own. It *merges* into that span:
attributes the span lacks (model, messages, parameters, response id...) are filled in, and its token
usage is written only when the span has none of its own (a second call in the same span adds to the
usage the first one wrote). So the run's rollups count each call once and the trace shows one LLM row.

Next to OpenTelemetry's own GenAI instrumentation (``opentelemetry-instrumentation-openai-v2``): its
wrapper always runs outside ours (when it was patched first, ours hands the call to it, see
:func:`genai_wrapper`), so its span is current when our span starts. Our span is then a child of the
span the call was made in, not of the instrumentation's span (it keeps the run); and when that span
belongs to the provider attached for dual export, ours takes its span id (*shadows* it, see
``_internal/export/dual.py``), so each backend shows the call once. Tokens are counted from our span
only: a joined foreign span never adds to rollups.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Container, Mapping
from contextvars import ContextVar
from typing import Any, cast

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api

from ..._internal.core import attrs as A
from ..._internal.core import spans as S
from ..._internal.core.errors import internal_error
from ..._internal.core.extract import Usage, extract_usage
from ..._internal.core.extract import token_count as count
from ..._internal.core.tracing import _SPAN_KEY, attach_span, current_context, detach, start_span
from ..._internal.export import dual

logger = logging.getLogger("trodo_trace")

#: Set while a patched provider method runs: a nested patched call (an SDK helper calling another
#: patched method) passes through, and the SDK's own OpenTelemetry call span is not started.
IN_CALL: ContextVar[bool] = ContextVar("trodo_provider_call", default=False)

MERGED_CALLS = "trodo.llm.provider_calls"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TOP_P = "gen_ai.request.top_p"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
CACHE_READ = "gen_ai.usage.cache_read_input_tokens"
CACHE_WRITE = "gen_ai.usage.cache_creation_input_tokens"
REASONING = "gen_ai.usage.reasoning_tokens"
INVOCATION_PARAMETERS = "llm.invocation_parameters"
HTTP_STATUS = "http.response.status_code"
STREAM_CLOSED_EARLY = "trodo.llm.stream.closed_early"
OI_INPUT = "llm.input_messages.{}.message.{}"
OI_OUTPUT = "llm.output_messages.{}.message.{}"
OI_TOOL_CALL = "llm.output_messages.{}.message.tool_calls.{}.tool_call.{}"
OI_INPUT_TOOL_CALL = "llm.input_messages.{}.message.tool_calls.{}.tool_call.{}"
OI_TOOL_SCHEMA = "llm.tools.{}.tool.json_schema"
OI_EMBEDDING_TEXT = "embedding.embeddings.{}.embedding.text"
OI_EMBEDDING_MODEL = "embedding.model_name"

_USAGE_KEYS = (A.USAGE_INPUT, A.USAGE_OUTPUT)


# -- patches ---------------------------------------------------------------------------------
class Patches:
    """The methods one provider module replaced, so ``uninstrument`` can put the originals back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._originals: list[tuple[Any, str, Any]] = []

    @property
    def active(self) -> bool:
        return bool(self._originals)

    def wrap(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        """Wrap ``owner.name`` (a class attribute) with ``wrapper`` (wrapt signature), once."""
        import wrapt

        original = owner.__dict__.get(name)
        if original is None or (isinstance(original, wrapt.FunctionWrapper) and _ours(original)):
            return
        wrapt.wrap_function_wrapper(owner, name, wrapper)
        patched = owner.__dict__.get(name)
        if patched is not None:
            patched._self_trodo_patch = True  # "_self_": kept on the wrapper, not the SDK's function
        with self._lock:
            self._originals.append((owner, name, original))

    def restore(self) -> None:
        with self._lock:
            originals, self._originals = self._originals, []
        for owner, name, original in reversed(originals):
            try:
                setattr(owner, name, original)
            except Exception:
                internal_error("provider uninstrument")


def _ours(function: Any) -> bool:
    return bool(getattr(function, "_self_trodo_patch", False))


def runtime() -> Any:
    rt = S.RUNTIME
    if rt:
        return rt
    from ..._internal import runtime as runtime_mod

    return runtime_mod.get()


def should_trace() -> bool:
    """False inside another patched call, or when tracing is off."""
    if IN_CALL.get():
        return False
    try:
        return bool(runtime().enabled)
    except Exception:
        internal_error("provider runtime")
        return False


# -- readers (each isolated by its caller) --------------------------------------------------------
#: Per type: whether it is a ``Mapping`` (the ABC check is slow and a type's answer does not change).
_IS_MAPPING: dict[type, bool] = {dict: True}
#: Types that are their own plain value (exact types: a str or int subclass goes the long way).
_SCALARS = frozenset({str, int, float, bool})


def _is_mapping(value: Any) -> bool:
    cls = type(value)
    known = _IS_MAPPING.get(cls)
    if known is None:
        known = _IS_MAPPING[cls] = isinstance(value, Mapping)
    return known


def get(obj: Any, key: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if type(obj) is dict or _is_mapping(obj):
        return obj.get(key, default)
    return getattr(obj, key, default)


def given(value: Any) -> bool:
    """False for ``None`` and the SDKs' ``NOT_GIVEN`` / ``omit`` sentinels."""
    if value is None:
        return False
    cls = type(value)
    return cls in _SCALARS or cls.__name__ not in ("NotGiven", "Omit")


def to_plain(value: Any, depth: int = 0) -> Any:
    """A JSON-able copy of a request value (pydantic models, iterables of dicts), sentinels dropped."""
    if depth > 20:
        return repr(value)
    if value is None or type(value) in _SCALARS or isinstance(value, (str, int, float, bool)):
        return value
    if type(value) is dict or _is_mapping(value):
        plain = {}
        for k, v in value.items():
            if v is None:
                continue
            key = k if type(k) is str else str(k)
            if type(v) in _SCALARS:
                plain[key] = v
            elif given(v):
                plain[key] = to_plain(v, depth + 1)
        return plain
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json", exclude_none=True)
        except Exception:
            pass
    if isinstance(value, type):
        schema = getattr(value, "model_json_schema", None)
        return {"type": value.__name__, "schema": schema()} if callable(schema) else value.__name__
    if isinstance(value, (list, tuple)):
        return [to_plain(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return repr(value)


def parameters(kwargs: Mapping[str, Any], leave_out: Container[str]) -> dict[str, Any]:
    """The request's keyword arguments as plain values, without ``None``, the SDKs' sentinels and
    the keys in ``leave_out`` (those written as attributes of their own)."""
    found: dict[str, Any] = {}
    for key, value in kwargs.items():
        if value is None or key in leave_out:
            continue
        if type(value) in _SCALARS:
            found[key] = value
        elif given(value):
            found[key] = to_plain(value)
    return found


#: ``json.dumps(value, default=repr, ensure_ascii=False, sort_keys=True)``, without building an
#: encoder per call.
_ENCODER = json.JSONEncoder(default=repr, ensure_ascii=False, sort_keys=True)


def to_json(value: Any) -> str:
    return _ENCODER.encode(value)


def usage_of(result: Any, shape: str = "") -> Usage | None:
    """``extract_usage(result)`` for an SDK response that keeps its token usage in ``usage``.

    ``shape`` reads the block of one known provider directly: ``"openai"`` (``prompt_tokens`` /
    ``completion_tokens`` and their details) or ``"anthropic"`` (``input_tokens`` / ``output_tokens``
    and cache counts); a block that is not of that shape is read by ``extract_usage``.
    """
    block = get(result, "usage")
    if block is None:
        return None
    if shape == "openai":
        prompt, completion = count(get(block, "prompt_tokens")), count(get(block, "completion_tokens"))
        if prompt is not None or completion is not None:
            cached = count(get(get(block, "prompt_tokens_details"), "cached_tokens"))
            reasoning = count(get(get(block, "completion_tokens_details"), "reasoning_tokens"))
            return Usage(prompt, completion, cached, None, reasoning)
    elif shape == "anthropic":
        input_tokens, output_tokens = count(get(block, "input_tokens")), count(get(block, "output_tokens"))
        cache_read = count(get(block, "cache_read_input_tokens"))
        cache_write = count(get(block, "cache_creation_input_tokens"))
        if (input_tokens is not None or output_tokens is not None) and (
            cache_read is not None or cache_write is not None
        ):
            total_in = (input_tokens or 0) + (cache_read or 0) + (cache_write or 0)
            return Usage(total_in, output_tokens, cache_read, cache_write, None)
    return extract_usage({"usage": block})


def text_of(content: Any) -> str | None:
    """Message content as text: a string as is, a list of parts as their texts joined (other parts as JSON)."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        pieces = []
        for part in content:
            text = get(part, "text")
            if isinstance(text, str):
                pieces.append(text)
            elif isinstance(part, str):
                pieces.append(part)
            else:
                pieces.append(to_json(to_plain(part)))
        return "\n".join(pieces)
    return to_json(to_plain(content))


def materialise(kwargs: dict[str, Any], key: str) -> None:
    """Turn a one-shot iterable argument (a generator of messages) into a list the SDK can still read."""
    value = kwargs.get(key)
    if value is not None and not isinstance(value, (str, bytes, list, tuple, Mapping)):
        try:
            kwargs[key] = list(value)
        except TypeError:
            pass


# -- one provider call -----------------------------------------------------------------------
class Call:
    """Where one provider call records itself: its own span, or the enclosing LLM span it merges into."""

    __slots__ = ("_ended", "_lock", "capture", "first_token_ns", "own", "runtime", "span", "start_ns")

    def __init__(self, span: S.TrodoSpan, own: bool, rt: Any):
        self.span = span
        self.own = own
        self.runtime = rt
        self.capture = bool(rt.capture_content)
        self.start_ns = S.now_ns()
        self.first_token_ns: int | None = None
        self._ended = False
        self._lock = threading.Lock()

    @classmethod
    def start(
        cls,
        name: str,
        kind: str,
        attributes: dict[str, Any],
        merge: bool = True,
        parent: otel_context.Context | None = None,
    ) -> Call:
        """Start the call's span under the current context (``parent``: the context the call was
        made in, when a GenAI instrumentation's span came in between), or merge into the current
        LLM span."""
        rt = runtime()
        shadowed: int | None = None
        ctx = current_context()
        outer = ctx.get(_SPAN_KEY)
        if (
            outer is not None
            and not isinstance(outer, S.TrodoSpan)
            and isinstance(outer, trace_api.Span)
            and outer.is_recording()
            and dual.is_genai_span(outer)
        ):
            span_id = outer.get_span_context().span_id
            started_in = dual.genai_started_in(span_id)
            if started_in is not None:
                parent, shadowed = started_in, span_id
        if parent is not None:
            ctx = parent
        current = ctx.get(_SPAN_KEY)
        if not isinstance(current, S.TrodoSpan):
            current = None
        if merge and current is not None and current.end_ns is None and _merges(current, attributes):
            if shadowed is not None:
                dual.shadow(shadowed, same_id=False)  # the enclosing LLM span stands for the call
            call = cls(current, False, rt)
            call.set_many(attributes)
            with call._lock:
                current.attributes[MERGED_CALLS] = (current.attributes.get(MERGED_CALLS) or 0) + 1
            return call
        span = start_span(name, kind, attributes, ctx=ctx)
        if shadowed is not None:
            span.span_id = shadowed  # the app's provider keeps the GenAI span, trodo's backend this one
            dual.shadow(shadowed, same_id=True)
        return cls(span, True, rt)

    # -- writing --------------------------------------------------------------------------------
    def set(self, key: str, value: Any) -> None:
        if value is None or self.span.end_ns is not None:
            return
        attributes = self.span.attributes
        if self.own or key not in attributes:
            attributes[key] = value

    def set_many(self, attributes: Mapping[str, Any]) -> None:
        span_attributes = self.span.attributes
        if self.span.end_ns is not None:
            return
        if self.own:
            for key, value in attributes.items():
                if value is not None:
                    span_attributes[key] = value
            return
        for key, value in attributes.items():
            if value is not None and key not in span_attributes:
                span_attributes[key] = value

    def content(self, key: str, value: Any) -> None:
        """A message attribute: written only when content is captured."""
        if self.capture and value is not None:
            self.set(key, value)

    def capture_value(self, key: str, mime: str, value: Any) -> None:
        """``input.value`` / ``output.value`` (JSON), when content is captured and the key is free."""
        if not self.capture or self.span.end_ns is not None:
            return
        if not self.own and key in self.span.attributes:
            return
        try:
            self.runtime.capture(self.span, key, mime, value)
        except Exception:
            internal_error("provider capture")

    def model(self, request_model: Any, provider: str, oi_provider: str) -> None:
        if isinstance(request_model, str) and request_model:
            self.set(A.REQUEST_MODEL, request_model)
            self.set(A.OI_MODEL, request_model)
        self.set(A.PROVIDER, provider)
        self.set(A.OI_PROVIDER, oi_provider)

    def usage(self, usage: Usage | None) -> None:
        """Token usage, counted once (see the module docstring)."""
        if usage is None or self.span.end_ns is not None:
            return
        attributes = self.span.attributes
        if self.own:
            A.write_usage(attributes, *usage)
        else:
            with self._lock:
                calls = attributes.get(MERGED_CALLS) or 1
                has_own = any(key in attributes for key in _USAGE_KEYS)
                if has_own and calls <= 1:
                    return  # the enclosing span already has the usage of this very call
                if has_own:
                    usage = Usage(*(_add(attributes.get(key), value) for key, value in _usage_pairs(usage)))
                A.write_usage(attributes, *usage)
        if usage.cache_read:
            self.set(CACHE_READ, attributes.get(A.OI_CACHE_READ))
        if usage.cache_write:
            self.set(CACHE_WRITE, attributes.get(A.OI_CACHE_WRITE))
        if usage.reasoning:
            self.set(REASONING, attributes.get(A.OI_REASONING))

    def first_token(self) -> None:
        if self.first_token_ns is None:
            self.first_token_ns = S.now_ns()
            self.set(A.TTFT_MS, round((self.first_token_ns - self.start_ns) / 1e6, 3))

    def error(self, exc: BaseException) -> None:
        """Record the SDK's exception (the caller re-raises it unchanged)."""
        status = get(exc, "status_code")
        if isinstance(status, int):
            self.set(HTTP_STATUS, status)
        if self.own and isinstance(exc, Exception):
            self.span.record_error(exc)

    def end(self) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        if self.own:
            self.span.end()

    # -- guarded steps ------------------------------------------------------------------------------
    def guard(self, what: str, function: Callable[..., Any], *args: Any) -> None:
        """Run one extractor; a shape it does not know drops its attributes, never the call."""
        try:
            function(self, *args)
        except Exception:
            internal_error(f"provider {what}")


def genai_wrapper(wrapped: Any) -> Callable[..., Any] | None:
    """OpenTelemetry's GenAI wrapper when it sits right inside ours (it patched the method first)."""
    wrapper: Any = getattr(wrapped, "_self_wrapper", None)
    module = getattr(wrapper, "__module__", None)
    if callable(wrapper) and isinstance(module, str) and module.startswith(dual.GENAI_SCOPES):
        return cast("Callable[..., Any]", wrapper)
    return None


def _merges(current: S.TrodoSpan, attributes: Mapping[str, Any]) -> bool:
    """Whether a call merges into the current span: a chat call into an LLM span, an embedding call
    into an embedding span (a framework's, e.g. LlamaIndex's, that counts the same tokens)."""
    if attributes.get(A.OI_KIND) == "EMBEDDING":
        return current.attributes.get(A.OI_KIND) == "EMBEDDING"
    return current.kind == "llm"


def _usage_pairs(usage: Usage) -> list[tuple[str, int | None]]:
    return [
        (A.USAGE_INPUT, usage.input_tokens),
        (A.USAGE_OUTPUT, usage.output_tokens),
        (A.OI_CACHE_READ, usage.cache_read),
        (A.OI_CACHE_WRITE, usage.cache_write),
        (A.OI_REASONING, usage.reasoning),
    ]


def _add(old: Any, new: int | None) -> int | None:
    if new is None:
        return old if isinstance(old, int) else None
    return (old if isinstance(old, int) else 0) + new


class use_call:
    """Context manager: the call's own span is current (so HTTP spans nest under it) and nested
    patched calls pass through."""

    __slots__ = ("call", "flag", "token")

    def __init__(self, call: Call):
        self.call = call

    def __enter__(self) -> Call:
        self.flag = IN_CALL.set(True)
        self.token = attach_span(self.call.span) if self.call.own else None
        return self.call

    def __exit__(self, *exc: Any) -> None:
        if self.token is not None:
            detach(self.token)
        IN_CALL.reset(self.flag)


# -- streams -----------------------------------------------------------------------------------
def stream_proxy_classes() -> tuple[type, type]:
    """The sync and async stream proxies (built on first use: wrapt is imported lazily)."""
    global _PROXIES
    if _PROXIES is None:
        _PROXIES = _build_proxies()
    return _PROXIES


_PROXIES: tuple[type, type] | None = None


class StreamState:
    """What a stream proxy reports to: ``on_item`` per event, ``on_end`` once."""

    def __init__(self, call: Call, on_item: Callable[[Any], None], on_end: Callable[[], None]):
        self.call = call
        self._on_item = on_item
        self._on_end = on_end
        self.items = 0
        self.done = False

    def item(self, item: Any) -> None:
        self.items += 1
        try:
            self._on_item(item)
        except Exception:
            internal_error("provider stream event")

    def finish(self, error: BaseException | None = None, closed_early: bool = False) -> None:
        if self.done:
            return
        self.done = True
        call = self.call
        try:
            self._on_end()
            if closed_early:
                call.set(STREAM_CLOSED_EARLY, True)
            if error is not None:
                call.error(error)
        except Exception:
            internal_error("provider stream end")
        finally:
            call.end()


def _build_proxies() -> tuple[type, type]:
    import wrapt

    class StreamProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]
        """The SDK's stream with its whole API; the span ends on exhaustion, close, exit or GC."""

        def __init__(self, wrapped: Any, state: StreamState):
            super().__init__(wrapped)
            self._self_state = state

        def __iter__(self) -> Any:
            return self

        def __next__(self) -> Any:
            state = self._self_state
            try:
                item = next(self.__wrapped__)
            except StopIteration:
                state.finish()
                raise
            except BaseException as exc:
                state.finish(exc)
                raise
            state.item(item)
            return item

        def close(self) -> Any:
            try:
                return self.__wrapped__.close()
            finally:
                self._self_state.finish(closed_early=True)

        def __enter__(self) -> Any:
            self.__wrapped__.__enter__()
            return self

        def __exit__(self, *exc: Any) -> Any:
            try:
                return self.__wrapped__.__exit__(*exc)
            finally:
                self._self_state.finish(exc[1] if exc and exc[1] is not None else None, closed_early=True)

        def __del__(self) -> None:
            state = getattr(self, "_self_state", None)
            if state is not None and not state.done:
                state.finish(closed_early=True)

    class AsyncStreamProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]
        """The async twin of :class:`StreamProxy`."""

        def __init__(self, wrapped: Any, state: StreamState):
            super().__init__(wrapped)
            self._self_state = state

        def __aiter__(self) -> Any:
            return self

        async def __anext__(self) -> Any:
            state = self._self_state
            try:
                item = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                state.finish()
                raise
            except BaseException as exc:
                state.finish(exc)
                raise
            state.item(item)
            return item

        async def close(self) -> Any:
            try:
                return await self.__wrapped__.close()
            finally:
                self._self_state.finish(closed_early=True)

        async def __aenter__(self) -> Any:
            await self.__wrapped__.__aenter__()
            return self

        async def __aexit__(self, *exc: Any) -> Any:
            try:
                return await self.__wrapped__.__aexit__(*exc)
            finally:
                self._self_state.finish(exc[1] if exc and exc[1] is not None else None, closed_early=True)

        def __del__(self) -> None:
            state = getattr(self, "_self_state", None)
            if state is not None and not state.done:
                state.finish(closed_early=True)

    return StreamProxy, AsyncStreamProxy


def wrap_stream(stream: Any, state: StreamState, is_async: bool) -> Any:
    sync_proxy, async_proxy = stream_proxy_classes()
    return (async_proxy if is_async else sync_proxy)(stream, state)
