"""One factory for every kind's decorator and context manager.

``@trodo.tool`` / ``@trodo.tool("name", ...)`` wrap sync, async, generator and async-generator
functions (each with its own wrapper) and methods; ``with trodo.tool("name") as span`` opens a span
for a block. The user's exceptions are recorded and re-raised untouched; SDK failures are logged
once and the user's call goes on.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar, cast, overload

from opentelemetry import trace as trace_api

from . import attrs, spans
from .errors import internal_error
from .extract import extract_documents, extract_response_model, extract_usage
from .tracing import (
    RunOptions,
    attach,
    attach_span,
    base_attributes,
    check_kind,
    detach,
    open_span,
    start_span,
)
from .values import to_json

_set_span = trace_api.set_span_in_context
GENERATOR_ITEM_LIMIT = 100
_LLM_PARAMS = ("model", "provider", "temperature")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _Signature:
    """What the wrapper needs to capture arguments by name, computed once per function."""

    __slots__ = ("defaults", "params", "skip_first", "varargs")

    def __init__(self, fn: Callable[..., Any]):
        self.params: tuple[str, ...] = ()
        self.varargs: str | None = None
        self.skip_first = False
        self.defaults: dict[str, Any] = {}
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            return
        params = []
        for parameter in signature.parameters.values():
            if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
                params.append(parameter.name)
            elif parameter.kind is parameter.VAR_POSITIONAL:
                self.varargs = parameter.name
            if parameter.name in _LLM_PARAMS and parameter.default is not parameter.empty:
                self.defaults[parameter.name] = parameter.default
        self.params = tuple(params)
        self.skip_first = bool(params) and params[0] in ("self", "cls")

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        params = self.params
        bound = dict(zip(params, args, strict=False))
        if self.skip_first and bound:
            del bound[params[0]]
        if len(args) > len(params):
            bound[self.varargs or "args"] = args[len(params) :]
        if kwargs:
            bound.update(kwargs)
        return bound


class SpanSpec:
    """A kind plus its options: a decorator for functions and a (sync or async) context manager."""

    __slots__ = (
        "_active",
        "attributes",
        "capture_input",
        "capture_output",
        "kind",
        "llm",
        "name",
        "run_options",
    )

    def __init__(
        self,
        kind: str,
        name: str | None = None,
        *,
        attributes: Mapping[str, Any] | None = None,
        run_options: RunOptions | None = None,
        llm: dict[str, Any] | None = None,
        capture_input: bool = True,
        capture_output: bool = True,
    ):
        self.kind = check_kind(kind)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        if name == "":
            raise ValueError("name must not be empty")
        if attributes is not None and not isinstance(attributes, Mapping):
            raise TypeError("attributes must be a mapping")
        self.name = name
        self.attributes = dict(attributes) if attributes else None
        self.run_options = run_options
        self.llm = llm
        self.capture_input = capture_input
        self.capture_output = capture_output
        self._active: ContextVar[tuple[tuple[spans.TrodoSpan, object], ...]] | None = None

    # -- span lifecycle shared by every form -------------------------------------------------
    def static_attributes(self, name: str) -> dict[str, Any] | None:
        """The attributes every span of this spec and name starts with (computed once per function)."""
        attributes = dict(self.attributes or {})
        if self.kind == "tool":
            attributes.update({attrs.TOOL_NAME: name, attrs.GEN_AI_TOOL_NAME: name, attrs.OI_TOOL_NAME: name})
        elif self.kind == "llm":
            attributes[attrs.GEN_AI_OPERATION] = "chat"
            if self.llm:
                _write_llm_params(attributes, self.llm)
        return attributes or None

    def _start(self, name: str) -> spans.TrodoSpan:
        return start_span(name, self.kind, self.static_attributes(name), self.run_options)

    # -- decorator ---------------------------------------------------------------------------
    # One generic signature types every form: a coroutine function keeps returning a coroutine of the
    # same type, a generator function a generator of the same items (the wrapper chosen at runtime
    # is the matching one), and the parameters are the function's own.
    @overload
    def __call__(self, fn: staticmethod[P, R]) -> staticmethod[P, R]: ...
    @overload
    def __call__(self, fn: classmethod[T, P, R]) -> classmethod[T, P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Any) -> Any:
        if isinstance(fn, (staticmethod, classmethod)):
            return type(fn)(self(fn.__func__))
        if not callable(fn):
            raise TypeError(f"@trodo.{self.kind} decorates functions, got {type(fn).__name__}")
        return _wrap(self, fn)

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> spans.TrodoSpan:
        try:
            runtime = spans.RUNTIME or spans.get_runtime()
            span = self._start(self.name or self.kind) if runtime.enabled else spans.NonRecordingSpan()
        except Exception:
            internal_error("span start")
            span = spans.NonRecordingSpan()
        token = attach_span(span)
        if self._active is None:
            self._active = ContextVar("trodo_active_spec", default=())
        self._active.set((*self._active.get(), (span, token)))
        return span

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        assert self._active is not None
        stack = self._active.get()
        if not stack:
            return
        span, token = stack[-1]
        self._active.set(stack[:-1])
        try:
            if exc is not None:
                record_error(span, exc)
        finally:
            detach(token)  # type: ignore[arg-type]
            span.end()

    async def __aenter__(self) -> spans.TrodoSpan:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


def _write_llm_params(attributes: dict[str, Any], params: Mapping[str, Any]) -> None:
    model = params.get("model")
    if isinstance(model, str) and model:
        attrs.write_model(
            attributes, model, params.get("provider") if isinstance(params.get("provider"), str) else None
        )
    elif isinstance(params.get("provider"), str):
        attributes[attrs.PROVIDER] = attributes[attrs.OI_PROVIDER] = params["provider"]
    temperature = params.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        attributes[attrs.TEMPERATURE] = float(temperature)


def record_error(span: spans.TrodoSpan, exc: BaseException) -> None:
    """Record the user's exception (a cancellation is marked as such; ``GeneratorExit`` is not an error)."""
    try:
        if isinstance(exc, GeneratorExit):
            span.attributes[attrs.GENERATOR_CLOSED_EARLY] = True
            return
        if isinstance(exc, SystemExit) and exc.code in (None, 0):
            return
        if _is_cancellation(exc):
            span.attributes[attrs.CANCELLED] = True
        span.record_error(exc)
    except Exception:
        internal_error("record error")


def _is_cancellation(exc: BaseException) -> bool:
    """An asyncio cancellation (asyncio is not imported for this: without it, nothing was cancelled)."""
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)


def record_llm_result(span: spans.TrodoSpan, result: Any) -> None:
    attributes = span.attributes
    if attrs.USAGE_INPUT not in attributes and attrs.USAGE_OUTPUT not in attributes:
        usage = extract_usage(result)
        if usage is not None:
            attrs.write_usage(attributes, *usage)
    model = extract_response_model(result)
    if model:
        attributes[attrs.RESPONSE_MODEL] = model
        if attrs.REQUEST_MODEL not in attributes:
            attrs.write_model(attributes, model, None)


def record_documents(span: spans.TrodoSpan, result: Any) -> None:
    documents = extract_documents(result)
    if documents is None:
        return
    attributes = span.attributes
    attributes[attrs.RETRIEVAL_COUNT] = len(documents)
    if not spans.RUNTIME.capture_content:
        for index, document in enumerate(documents):
            if document.id is not None:
                attributes[attrs.RETRIEVAL_DOC.format(index, "id")] = document.id
        return
    limit = spans.RUNTIME.max_value_length
    for index, document in enumerate(documents):
        if document.id is not None:
            attributes[attrs.RETRIEVAL_DOC.format(index, "id")] = document.id
        if document.content is not None:
            content = document.content
            if len(content) > limit:
                content = content[:limit] + f"…[truncated: {len(content)} chars total]"
            attributes[attrs.RETRIEVAL_DOC.format(index, "content")] = content
        if document.score is not None:
            attributes[attrs.RETRIEVAL_DOC.format(index, "score")] = document.score
        if document.metadata:
            attributes[attrs.RETRIEVAL_DOC.format(index, "metadata")] = to_json(document.metadata, limit)


class _Plan:
    """What every call of one decorated function starts from (computed once, when decorating)."""

    __slots__ = ("is_llm", "name", "signature", "spec", "static", "static_defaults")

    def __init__(self, spec: SpanSpec, name: str, fn: Callable[..., Any]):
        self.spec = spec
        self.name = name
        self.signature = _Signature(fn)
        self.is_llm = spec.kind == "llm"
        #: The span's first attributes: its kind's, the spec's and the function's.
        self.static = base_attributes(spec.kind, spec.static_attributes(name))
        #: An LLM span's first attributes when the call passes none of model, provider and
        #: temperature: the static ones plus the function's defaults for them.
        self.static_defaults = self.static
        if self.is_llm:
            params = _llm_params(spec, self.signature.defaults)
            if params is not None:
                self.static_defaults = self.static.copy()
                _write_llm_params(self.static_defaults, params)


def _llm_params(spec: SpanSpec, params: dict[str, Any]) -> dict[str, Any] | None:
    """What an LLM call's model, provider and temperature (given or defaulted) write over the spec's
    own: ``None`` when the call has none of them."""
    if not params:
        return None
    llm = spec.llm or {}
    return {**llm, **{k: v for k, v in params.items() if k not in llm or v is not None}}


def _enter(plan: _Plan, args: tuple[Any, ...], kwargs: dict[str, Any]) -> spans.TrodoSpan | None:
    """Start the span of one call; ``None`` when tracing is off or the SDK failed (the call goes on)."""
    try:
        runtime = spans.RUNTIME or spans.get_runtime()
        if not runtime.enabled:
            return None
        spec = plan.spec
        capture = spec.capture_input and runtime.capture_content
        if not (capture or plan.is_llm):
            return open_span(plan.name, spec.kind, plan.static.copy(), spec.run_options)
        signature = plan.signature
        bound = signature.bind(args, kwargs)
        static, params = plan.static, None
        if plan.is_llm:
            if "model" in bound or "provider" in bound or "temperature" in bound:
                given = {**signature.defaults, **{k: bound[k] for k in _LLM_PARAMS if k in bound}}
                params = _llm_params(spec, given)
            else:
                static = plan.static_defaults
        attributes = static.copy()
        if params is not None:
            _write_llm_params(attributes, params)
        if capture:  # before the span opens: a failure here (no stack left) starts no span at all
            attributes[attrs.INPUT_VALUE] = runtime.serialize(bound)
            attributes[attrs.INPUT_MIME] = attrs.JSON_MIME
        return open_span(plan.name, spec.kind, attributes, spec.run_options)
    except Exception:
        internal_error("span start")
        return None


def _wrap(spec: SpanSpec, fn: Callable[P, R]) -> Callable[P, R]:
    plan = _Plan(spec, spec.name or getattr(fn, "__name__", None) or spec.kind, fn)

    if inspect.isasyncgenfunction(fn):

        async def async_gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            state = _GeneratorState.begin(plan, args, kwargs)
            agen = fn(*args, **kwargs)
            if state is None:
                async for item in agen:
                    yield item
                return
            method, value = agen.asend, None
            while True:
                token = attach(state.ctx)
                try:
                    item = await method(value)
                except StopAsyncIteration:
                    state.finish(None)
                    return
                except BaseException as exc:
                    state.fail(exc)
                    raise
                finally:
                    detach(token)
                state.item(item)
                try:
                    value = yield item
                    method = agen.asend
                except GeneratorExit:
                    state.close_early()
                    await agen.aclose()
                    raise
                except BaseException as exc:
                    method, value = agen.athrow, exc

        wrapper: Callable[..., Any] = async_gen_wrapper

    elif inspect.iscoroutinefunction(fn):

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            span = _enter(plan, args, kwargs)
            if span is None:
                return await fn(*args, **kwargs)
            token = None
            try:
                token = attach_span(span)  # no stack left for it: the span ends with the error
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                try:
                    _fail(token, span, exc)
                except RecursionError:  # no stack left even to call _fail: a wrapper further up ends it
                    _UNENDED.append((span, exc))
                raise
            try:
                detach(token)
                _finish(plan, span, result)
            except RecursionError:
                _UNENDED.append((span, None))
            return result

        wrapper = async_wrapper

    elif inspect.isgeneratorfunction(fn):

        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            state = _GeneratorState.begin(plan, args, kwargs)
            gen = fn(*args, **kwargs)
            if state is None:
                return (yield from gen)
            method, value = gen.send, None
            while True:
                token = attach(state.ctx)
                try:
                    item = method(value)
                except StopIteration as stop:
                    state.finish(stop.value)
                    return stop.value
                except BaseException as exc:
                    state.fail(exc)
                    raise
                finally:
                    detach(token)
                state.item(item)
                try:
                    value = yield item
                    method = gen.send
                except GeneratorExit:
                    state.close_early()
                    gen.close()
                    raise
                except BaseException as exc:
                    method, value = gen.throw, exc

        wrapper = gen_wrapper

    else:

        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            span = _enter(plan, args, kwargs)
            if span is None:
                return fn(*args, **kwargs)
            token = None
            try:
                token = attach_span(span)  # no stack left for it: the span ends with the error
                result = fn(*args, **kwargs)
            except BaseException as exc:
                try:
                    _fail(token, span, exc)
                except RecursionError:  # no stack left even to call _fail: a wrapper further up ends it
                    _UNENDED.append((span, exc))
                raise
            try:
                detach(token)
                _finish(plan, span, result)
            except RecursionError:
                _UNENDED.append((span, None))
            return result

        wrapper = sync_wrapper

    functools.update_wrapper(wrapper, fn)
    wrapper.__trodo_kind__ = spec.kind  # type: ignore[attr-defined]
    # The wrapper picked above takes the same arguments and returns what ``fn`` returns (a coroutine,
    # a generator or an async generator for those kinds of function).
    return cast("Callable[P, R]", wrapper)


#: Spans whose wrapper had no stack left to end them (deep recursion hit ``RecursionError``):
#: the next wrapper up, which has room, records the error and ends them.
_UNENDED: list[tuple[spans.TrodoSpan, BaseException | None]] = []


def _fail(token: Any, span: spans.TrodoSpan, exc: BaseException) -> None:
    """The user's call raised ``exc``: restore the context, record the error, end the span."""
    try:
        if token is not None:
            detach(token)
        if _UNENDED:
            _end_unended()
        record_error(span, exc)
        span.end()
    except RecursionError:
        _UNENDED.append((span, exc))


def _end_unended() -> None:
    while _UNENDED:
        try:
            span, exc = _UNENDED.pop()
        except IndexError:
            return
        try:
            if exc is not None and span.end_ns is None:
                record_error(span, exc)
            span.end()
        except RecursionError:
            _UNENDED.append((span, None))
            return


def _finish(plan: _Plan, span: spans.TrodoSpan, result: Any) -> None:
    """The user's call returned ``result``: record the output (and an LLM's usage, a retriever's
    documents), end the span."""
    try:
        if _UNENDED:
            _end_unended()
        spec = plan.spec
        if spec.capture_output and attrs.OUTPUT_VALUE not in span.attributes:
            spans.RUNTIME.capture(span, attrs.OUTPUT_VALUE, attrs.OUTPUT_MIME, result)
        if plan.is_llm:
            record_llm_result(span, result)
        elif spec.kind == "retrieval":
            record_documents(span, result)
    except RecursionError:
        pass  # the span still ends, without its output
    except Exception:
        internal_error("span finish")
    try:
        span.end()
    except RecursionError:
        _UNENDED.append((span, None))


class _GeneratorState:
    """A generator's span: open from the first step until exhausted, closed or abandoned."""

    __slots__ = ("ctx", "first_ns", "items", "more", "span", "spec")

    def __init__(self, spec: SpanSpec, span: spans.TrodoSpan):
        self.spec = spec
        self.span = span
        self.ctx = _set_span(span)
        self.items: list[Any] = []
        self.more = 0
        self.first_ns: int | None = None

    @classmethod
    def begin(cls, plan: _Plan, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _GeneratorState | None:
        span = _enter(plan, args, kwargs)
        return None if span is None else cls(plan.spec, span)

    def item(self, item: Any) -> None:
        if self.first_ns is None:
            self.first_ns = spans.now_ns()
            if self.spec.kind == "llm":
                self.span.attributes[attrs.TTFT_MS] = round((self.first_ns - self.span.start_ns) / 1e6, 3)
        if len(self.items) < GENERATOR_ITEM_LIMIT:
            self.items.append(item)
        else:
            self.more += 1

    def _output(self) -> Any:
        items = self.items
        if items and all(isinstance(item, str) for item in items) and not self.more:
            return "".join(items)
        if self.more:
            return [*items, f"…[+{self.more} more items]"]
        return items

    def _record(self) -> None:
        spec, span = self.spec, self.span
        attributes = span.attributes
        attributes[attrs.GENERATOR_ITEMS] = len(self.items) + self.more
        if spec.capture_output and attrs.OUTPUT_VALUE not in attributes:
            spans.RUNTIME.capture(span, attrs.OUTPUT_VALUE, attrs.OUTPUT_MIME, self._output())
        if spec.kind == "llm":
            for item in reversed(self.items):
                if extract_usage(item) is not None or extract_response_model(item):
                    record_llm_result(span, item)
                    break
        elif spec.kind == "retrieval":
            record_documents(span, self.items)

    def finish(self, value: Any) -> None:
        try:
            self._record()
        except Exception:
            internal_error("generator finish")
        self.span.end()

    def fail(self, exc: BaseException) -> None:
        try:
            self._record()
        except Exception:
            internal_error("generator finish")
        record_error(self.span, exc)
        self.span.end()

    def close_early(self) -> None:
        try:
            self.span.attributes[attrs.GENERATOR_CLOSED_EARLY] = True
            self._record()
        except Exception:
            internal_error("generator close")
        self.span.end()
