"""The public tracing API (re-exported by ``trodo_trace``)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, cast, overload

from opentelemetry import trace as trace_api

from . import runtime as runtime_mod
from .core import spans
from .core.decorators import SpanSpec, record_error
from .core.tracing import TRACER, RunOptions
from .display.runview import RunResult

P = ParamSpec("P")
R = TypeVar("R")

#: The kinds ``trace`` and ``with_span`` accept (``run`` is an agent that starts a run).
SpanKind = Literal["run", "agent", "llm", "tool", "retrieval", "chain", "function"]


class KindHelper(Protocol):
    """``trodo.tool`` and its siblings: a decorator used bare (``@trodo.tool``) or with arguments
    (``@trodo.tool("name", ...)``), which then also is a context manager yielding a :class:`Span`."""

    @overload
    def __call__(self, name: Callable[P, R], /) -> Callable[P, R]: ...
    @overload
    def __call__(
        self,
        name: str | None = None,
        *,
        attributes: Mapping[str, Any] | None = None,
        capture_input: bool = True,
        capture_output: bool = True,
    ) -> SpanSpec: ...


def init(
    site_id: str | None = None,
    endpoint: str | None = None,
    *,
    auto_events: bool = False,
    batch_enabled: bool = True,
    batch_size: int = 50,
    batch_flush_interval_ms: int = 5000,
    traces_endpoint: str | None = None,
    logs_endpoint: str | None = None,
    protocol: Literal["http/protobuf", "http", "grpc"] | None = None,
    headers: Mapping[str, str] | str | None = None,
    service_name: str | None = None,
    store_path: str | None = None,
    store_max_bytes: int | None = None,
    store_max_age_days: float | None = None,
    enabled: bool | None = None,
    capture_content: bool | None = None,
    max_value_length: int | None = None,
    instrument: bool | Sequence[str] | str | None = None,
    redact_secrets: bool | None = None,
    mask: Callable[[Any], Any] | None = None,
    pricing: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    tracer_provider: trace_api.TracerProvider | None = None,
    propagate_threads: bool | None = None,
    schedule_delay_ms: int | None = None,
    max_export_batch_size: int | None = None,
    max_queue_size: int | None = None,
    max_queue_bytes: int | None = None,
    export_timeout_ms: int | None = None,
    spool_max_bytes: int | None = None,
    spool_dir: str | None = None,
    attempt_timeout_ms: int | None = None,
    max_request_bytes: int | None = None,
    compression: Literal["gzip", "none"] | None = None,
    certificate_file: str | None = None,
    client_certificate_file: str | None = None,
    client_key_file: str | None = None,
) -> None:
    """Configure tracing for this process (optional: the first span configures from the environment).

    Every option of the configuration table is a keyword here (docs/configuration.md lists them);
    ``None`` leaves an option to its environment variable, then its default.
    With no ``endpoint`` (argument, ``TRODO_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``) finished
    spans go to the local store (``TRODO_STORE``, default ``./.trodo/trodo.db``).

    Example:
        >>> import trodo_trace as trodo
        >>> trodo.init(service_name="support-bot", store_path="trodo-doc.db")

    Raises:
        TypeError: an unknown option or an argument of the wrong type.
        ValueError: a bad value, naming the argument (e.g. an endpoint that is not an http(s) URL).
    """
    # The parameters are the options table's names (tests/test_typing.py keeps them equal).
    arguments = dict(locals())
    runtime_mod.init(arguments)


def flush(timeout: float = 5.0) -> bool:
    """Deliver everything queued so far; ``True`` when it was all exported or stored in time.

    ``False`` as well when any span or event submitted before this call was lost since the previous
    ``flush()`` (or ``init()``) — refused by the collector, dropped, or failed to encode or store —
    even if the loss happened on the export thread before this call.

    Example:
        >>> import trodo_trace as trodo
        >>> _ = trodo.wrap_agent("triage", lambda run: "done")
        >>> trodo.flush(timeout=5.0)
        True
    """
    runtime = runtime_mod.current()
    return True if runtime is None else runtime.flush(timeout)


def shutdown(timeout: float = 5.0) -> None:
    """Flush (within ``timeout``), stop the workers and remove the exception hooks.

    Runs by itself at interpreter exit. To trace again afterwards, call :func:`init`.

    Example:
        >>> import trodo_trace as trodo
        >>> trodo.shutdown(timeout=5.0)
        >>> trodo.init()
    """
    runtime_mod.shutdown(timeout)


def get_tracer() -> trace_api.Tracer:
    """An OpenTelemetry tracer whose spans join the current trodo run.

    Example:
        >>> import trodo_trace as trodo
        >>> with trodo.agent("import-job"):
        ...     with trodo.get_tracer().start_as_current_span("parse") as span:
        ...         span.set_attribute("rows", 3)
    """
    return TRACER


def stats() -> dict[str, Any]:
    """Counts of spans started, exported, spooled, rejected, dropped and failed; queue depth; last error.

    Example:
        >>> import trodo_trace as trodo
        >>> _ = trodo.wrap_agent("triage", lambda run: "done")
        >>> trodo.flush()
        True
        >>> counts = trodo.stats()
        >>> counts["exported"] == counts["ended"]     # everything ended so far was delivered
        True
    """
    return runtime_mod.get().stats()


def _helper(kind: str, name: Any, options: dict[str, Any]) -> Any:
    if callable(name) and not isinstance(name, str):
        return SpanSpec(kind)(name)
    return SpanSpec(kind, name, **options)


@overload
def agent(name: Callable[P, R]) -> Callable[P, R]: ...
@overload
def agent(
    name: str | None = None,
    *,
    distinct_id: str | None = None,
    conversation_id: str | None = None,
    sub_run: bool = False,
    metadata: Mapping[str, Any] | None = None,
    attributes: Mapping[str, Any] | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
) -> SpanSpec: ...
def agent(
    name: Any = None,
    *,
    distinct_id: str | None = None,
    conversation_id: str | None = None,
    sub_run: bool = False,
    metadata: Mapping[str, Any] | None = None,
    attributes: Mapping[str, Any] | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
) -> Any:
    """Trace an agent: a run when none is active, else an agent stage (``sub_run=True`` starts a
    run whose ``parent_run_id`` is the current run).

    Example:
        >>> import trodo_trace as trodo
        >>> @trodo.agent("support-bot", distinct_id="user-42")
        ... def answer(question: str) -> str:
        ...     return "hi"
        >>> answer("hello")
        'hi'
    """
    _check_optional_str("distinct_id", distinct_id)
    _check_optional_str("conversation_id", conversation_id)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError("metadata must be a mapping")
    if not isinstance(sub_run, bool):
        raise TypeError("sub_run must be a bool")
    run_options = RunOptions(
        force=sub_run, distinct_id=distinct_id, conversation_id=conversation_id, metadata=metadata
    )
    if callable(name) and not isinstance(name, str):
        return SpanSpec("agent", run_options=run_options)(name)
    return SpanSpec(
        "agent",
        name,
        run_options=run_options,
        attributes=attributes,
        capture_input=capture_input,
        capture_output=capture_output,
    )


@overload
def llm(name: Callable[P, R]) -> Callable[P, R]: ...
@overload
def llm(
    name: str | None = None,
    *,
    model: str | None = None,
    provider: str | None = None,
    temperature: float | None = None,
    attributes: Mapping[str, Any] | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
) -> SpanSpec: ...
def llm(
    name: Any = None,
    *,
    model: str | None = None,
    provider: str | None = None,
    temperature: float | None = None,
    attributes: Mapping[str, Any] | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
) -> Any:
    """Trace an LLM call: model, provider, temperature, token usage and cost.

    Token usage is read from OpenAI-, Anthropic-, Gemini- and LangChain-shaped return values, or set
    with ``trodo.current_span().set_usage(...)``.

    Example:
        >>> import trodo_trace as trodo
        >>> @trodo.llm(model="gpt-4o-mini", provider="openai")
        ... def complete(prompt: str) -> dict:
        ...     return {"text": "ok", "usage": {"prompt_tokens": 12, "completion_tokens": 3}}
        >>> complete("hi")["text"]
        'ok'
    """
    _check_optional_str("model", model)
    _check_optional_str("provider", provider)
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, (int, float))
    ):
        raise TypeError("temperature must be a number")
    params = {
        k: v
        for k, v in (("model", model), ("provider", provider), ("temperature", temperature))
        if v is not None
    }
    if callable(name) and not isinstance(name, str):
        return SpanSpec("llm")(name)
    return SpanSpec(
        "llm",
        name,
        llm=params or None,
        attributes=attributes,
        capture_input=capture_input,
        capture_output=capture_output,
    )


def _simple(kind: str, doc: str) -> KindHelper:
    def helper(
        name: Any = None,
        *,
        attributes: Mapping[str, Any] | None = None,
        capture_input: bool = True,
        capture_output: bool = True,
    ) -> Any:
        return _helper(
            kind,
            name,
            {"attributes": attributes, "capture_input": capture_input, "capture_output": capture_output},
        )

    helper.__name__ = helper.__qualname__ = kind
    helper.__doc__ = doc
    return cast(KindHelper, helper)


tool = _simple(
    "tool",
    """Trace a tool call (``trodo.tool.name``, ``gen_ai.tool.name``).

    Example:
        >>> import trodo_trace as trodo
        >>> @trodo.tool
        ... def search(query: str) -> list[str]:
        ...     return ["a", "b"]
        >>> search("refunds")
        ['a', 'b']
    """,
)
retrieval = _simple(
    "retrieval",
    """Trace a retrieval: the query as input, the returned documents as ``retrieval.documents.N.*``.

    Example:
        >>> import trodo_trace as trodo
        >>> @trodo.retrieval
        ... def fetch(query: str) -> list[dict]:
        ...     return [{"id": "doc-1", "content": "...", "score": 0.9}]
        >>> fetch("refunds")[0]["id"]
        'doc-1'
    """,
)
chain = _simple(
    "chain",
    """Trace a step of a pipeline.

    Example:
        >>> import trodo_trace as trodo
        >>> @trodo.chain
        ... def rewrite(question: str) -> str:
        ...     return question.strip()
        >>> rewrite("  where is my order? ")
        'where is my order?'
    """,
)
function = _simple(
    "function",
    """Trace any function.

    Example:
        >>> import trodo_trace as trodo
        >>> @trodo.function
        ... def parse(text: str) -> dict:
        ...     return {"text": text}
        >>> parse("hi")
        {'text': 'hi'}
    """,
)


@overload
def trace(name: Callable[P, R]) -> Callable[P, R]: ...
@overload
def trace(
    name: str | None = None,
    kind: SpanKind = "function",
    *,
    attributes: Mapping[str, Any] | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
) -> SpanSpec: ...
def trace(
    name: Any = None,
    kind: str = "function",
    *,
    attributes: Mapping[str, Any] | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
) -> Any:
    """Trace with an explicit kind (``run``, ``agent``, ``llm``, ``tool``, ``retrieval``, ``chain``, ``function``).

    Example:
        >>> import trodo_trace as trodo
        >>> @trodo.trace("rank", kind="chain")
        ... def rank(items: list[int]) -> list[int]:
        ...     return sorted(items)
        >>> rank([3, 1, 2])
        [1, 2, 3]
    """
    if kind == "run":
        kind = "agent"
    return _helper(
        kind,
        name,
        {"attributes": attributes, "capture_input": capture_input, "capture_output": capture_output},
    )


def with_span(
    name: str, kind: SpanKind = "function", attributes: Mapping[str, Any] | None = None
) -> SpanSpec:
    """A span for a block of code: ``with trodo.with_span("load", kind="tool") as span: ...``.

    Example:
        >>> import trodo_trace as trodo
        >>> with trodo.with_span("load-config", kind="function", attributes={"path": "cfg.toml"}) as span:
        ...     span.set_output({"ok": True})
    """
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    return SpanSpec("agent" if kind == "run" else kind, name, attributes=attributes)


@overload
def wrap_agent(  # type: ignore[overload-overlap]
    name: str,
    fn: Callable[[spans.Run], Awaitable[R]],
    distinct_id: str | None = None,
    conversation_id: str | None = None,
    parent_run_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Awaitable[tuple[R, str]]: ...
@overload
def wrap_agent(
    name: str,
    fn: Callable[[spans.Run], R],
    distinct_id: str | None = None,
    conversation_id: str | None = None,
    parent_run_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[R, str]: ...
def wrap_agent(
    name: str,
    fn: Callable[[spans.Run], Any],
    distinct_id: str | None = None,
    conversation_id: str | None = None,
    parent_run_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Any:
    """Run ``fn(run)`` as a new run and return ``(result, run_id)`` (awaitable when ``fn`` is async).

    Inside another run the new run is a sub-run: its ``parent_run_id`` is the current run.
    The pair is a tuple that also displays the run's waterfall when it is a notebook cell's value.

    Example:
        >>> import trodo_trace as trodo
        >>> result, run_id = trodo.wrap_agent("triage", lambda run: run.set_input("hi") or "done")
        >>> result, len(run_id)
        ('done', 32)
    """
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    _check_optional_str("distinct_id", distinct_id)
    _check_optional_str("conversation_id", conversation_id)
    _check_optional_str("parent_run_id", parent_run_id)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError("metadata must be a mapping")
    if parent_run_id and (distinct_id is None or conversation_id is None) and current_run() is None:
        stored_user, stored_conversation = _stored_run_identity(parent_run_id)
        distinct_id = distinct_id if distinct_id is not None else stored_user
        conversation_id = conversation_id if conversation_id is not None else stored_conversation
    spec = SpanSpec(
        "agent",
        name,
        run_options=RunOptions(
            force=True,
            distinct_id=distinct_id,
            conversation_id=conversation_id,
            parent_run_id=parent_run_id,
            metadata=metadata,
        ),
    )
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None)):  # noqa: B004

        async def run_async() -> tuple[Any, str]:
            with spec as span:
                run = cast(spans.Run, span.run)
                result = await fn(run)
                _set_result(span, result)
            return RunResult(result, run)

        return run_async()
    with spec as span:
        run = cast(spans.Run, span.run)
        result = fn(run)
        _set_result(span, result)
    return RunResult(result, run)


def _set_result(span: spans.TrodoSpan, result: Any) -> None:
    if "output.value" not in span.attributes:
        span.set_output(result)


def current_run() -> spans.Run | None:
    """The run the current code is part of (``None`` outside any run).

    Example:
        >>> import trodo_trace as trodo
        >>> trodo.current_run() is None
        True
        >>> @trodo.agent("support-bot")
        ... def answer(question: str) -> str:
        ...     trodo.current_run().set_metadata(plan="pro")
        ...     return "hi"
        >>> answer("hello")
        'hi'
    """
    run = spans.run_from_context()
    return run if isinstance(run, spans.Run) else None


def current_span() -> spans.TrodoSpan | None:
    """The current trodo span (``None`` outside any traced code).

    Example:
        >>> import trodo_trace as trodo
        >>> trodo.current_span() is None
        True
        >>> @trodo.llm(model="gpt-4o-mini")
        ... def complete(prompt: str) -> str:
        ...     trodo.current_span().set_usage(input_tokens=10, output_tokens=2)
        ...     return "ok"
        >>> complete("hi")
        'ok'
    """
    return spans.span_from_context()


def last_run() -> spans.Run | None:
    """This process's most recent finished run.

    Example:
        >>> import trodo_trace as trodo
        >>> result, run_id = trodo.wrap_agent("triage", lambda run: "done")
        >>> trodo.last_run().run_id == run_id
        True
    """
    runtime = runtime_mod.current()
    return None if runtime is None else runtime.last_run


def _check_optional_str(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if value == "":
        raise ValueError(f"{name} must not be empty")


__all__ = ["record_error"]


def _stored_run_identity(run_id: str) -> tuple[str | None, str | None]:
    """The user and conversation of run ``run_id`` when this process's local store holds it (a
    sub-run started outside its parent, e.g. in a worker, inherits them); ``(None, None)`` otherwise."""
    from .store.local import LocalStore

    try:
        path = runtime_mod.get().store_path
        if not path.is_file():
            return None, None
        with LocalStore(path, create=False) as store:
            rows = store._query("SELECT distinct_id, conversation_id FROM runs WHERE run_id = ?", (run_id,))
    except Exception:  # the store is optional here: never fail the user's call
        return None, None
    if not rows:
        return None, None
    return rows[0]["distinct_id"], rows[0]["conversation_id"]
