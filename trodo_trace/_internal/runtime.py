"""Process-wide state: configuration, the export pipeline, and the hooks spans call when they end.

Built once, at ``init()`` or by the first span (from the environment). Nothing here runs on the
application thread except :meth:`Runtime.on_end` (a few dict reads and a deque append) and
:meth:`Runtime.capture` (serialising a captured value).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from . import attrs as A
from . import spans as spans_mod
from .config import Config, resolve
from .convert import to_readable
from .errors import internal_error, log_once
from .pipeline import Pipeline, counter_value
from .pricing import PricingTable
from .serialize import to_json

logger = logging.getLogger("trodo_trace")

try:
    from importlib.metadata import version as _dist_version

    VERSION = _dist_version("trodo-trace")
except Exception:  # pragma: no cover - running from a source tree
    VERSION = "0.0.0"

SCOPE = InstrumentationScope("trodo_trace", VERSION)


class Runtime:
    """Everything ``init()`` builds."""

    def __init__(self, config: Config):
        self.config = config
        self.enabled: bool = config.enabled
        self.capture_content: bool = config.capture_content
        self.max_value_length: int = config.max_value_length
        self.mask: Callable[[Any], Any] | None = config.mask
        self.pricing = PricingTable.bundled().with_overrides(config.pricing)
        self.resource = _resource(config)
        self.listeners: list[Callable[[spans_mod.TrodoSpan], None]] = []
        self.redact: Callable[[str], str] | None = None
        self.last_run: spans_mod.Run | None = None
        self.started_counter = itertools.count()
        self.store_path = _store_path(config)
        self.exporter_description, export, on_shutdown = _build_exporter(self)
        resource = self.resource
        self.pipeline = Pipeline(
            export,
            convert=lambda batch: [to_readable(span, resource, SCOPE) for span in batch],
            batch_size=config.max_export_batch_size,
            interval_s=config.schedule_delay_ms / 1000.0,
            max_queue=config.max_queue_size,
            on_shutdown=on_shutdown,
            name="trodo-span-export",
        )
        self.extensions: list[Any] = []  # objects with flush(timeout)/shutdown(timeout)/stats()

    # -- hooks called by spans -----------------------------------------------------------
    def span_started(self) -> None:
        next(self.started_counter)

    def capture(self, span: spans_mod.TrodoSpan, key: str, mime_key: str, value: Any) -> None:
        """Serialise a captured value onto ``span`` (masked and redacted) unless content is off."""
        if not self.capture_content:
            return
        span.attributes[key] = self.serialize(value)
        span.attributes[mime_key] = A.JSON_MIME

    def serialize(self, value: Any) -> str:
        mask = self.mask
        if mask is not None:
            try:
                value = mask(value)
            except Exception:
                log_once("mask-failed", "trodo_trace: the mask function raised; the value is masked whole")
                return '"<masked>"'
        text = value if isinstance(value, str) and mask is not None else to_json(value, self.max_value_length)
        if self.redact is not None:
            text = self.redact(text)
        return text

    def on_end(self, span: spans_mod.TrodoSpan) -> None:
        if span.fork_generation != spans_mod.fork_generation or not self.enabled:
            return  # started before a fork (the parent process exports it), or tracing is off
        attributes = span.attributes
        if span.kind == "llm" and A.LLM_COST not in attributes:
            self._cost(attributes)
        run = span.run
        if run is not None and run.local:
            run.account(span)
            if run.root is span:
                run.finish()
                self.last_run = run
        for listener in self.listeners:
            try:
                listener(span)
            except Exception:
                internal_error("span listener")
        self.pipeline.submit(span)

    def _cost(self, attributes: dict[str, Any]) -> None:
        tokens_in = attributes.get(A.USAGE_INPUT)
        tokens_out = attributes.get(A.USAGE_OUTPUT)
        if tokens_in is None and tokens_out is None:
            return
        model = attributes.get(A.RESPONSE_MODEL) or attributes.get(A.REQUEST_MODEL)
        if not model:
            return
        cost = self.pricing.cost(
            model,
            attributes.get(A.PROVIDER),
            input_tokens=tokens_in or 0,
            output_tokens=tokens_out or 0,
            cache_read_tokens=attributes.get(A.OI_CACHE_READ) or 0,
            cache_write_tokens=attributes.get(A.OI_CACHE_WRITE) or 0,
        )
        if cost is not None:
            attributes[A.LLM_COST] = cost

    # -- lifecycle ---------------------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        ok = True
        for extension in list(self.extensions):
            try:
                ok = extension.flush(timeout) and ok
            except Exception:
                internal_error("extension flush")
        return self.pipeline.flush(timeout) and ok

    def shutdown(self, timeout: float) -> None:
        for extension in list(self.extensions):
            try:
                extension.shutdown(timeout)
            except Exception:
                internal_error("extension shutdown")
        self.pipeline.shutdown(timeout)

    def stats(self) -> dict[str, Any]:
        pipeline = self.pipeline.stats()
        result: dict[str, Any] = {
            "started": counter_value(self.started_counter),
            "ended": pipeline["queued"] + pipeline["overflowed"],
            "exported": pipeline["exported"],
            "failed": pipeline["failed"],
            "spooled": 0,
            "rejected": 0,
            "dropped": pipeline["dropped"],
            "queue_depth": pipeline["queue_depth"],
            "last_error": pipeline["last_error"],
            "exporter": self.exporter_description,
        }
        for extension in list(self.extensions):
            try:
                extra = extension.stats()
            except Exception:
                internal_error("extension stats")
                continue
            for key, value in extra.items():
                if isinstance(value, int) and isinstance(result.get(key), int):
                    result[key] += value
                else:
                    result[key] = value
        return result

    def after_fork_in_child(self) -> None:
        self.pipeline.after_fork_in_child()
        self.started_counter = itertools.count()
        for extension in list(self.extensions):
            hook = getattr(extension, "after_fork_in_child", None)
            if hook is not None:
                hook()


def _resource(config: Config) -> Resource:
    attributes: dict[str, Any] = {}
    if config.service_name:
        attributes["service.name"] = config.service_name
    if config.site_id:
        attributes["trodo.site_id"] = config.site_id
    return Resource.create(attributes)


def _store_path(config: Config) -> Path:
    from .store import default_store_path

    path = Path(config.store_path) if config.store_path else default_store_path()
    return path.expanduser().absolute()


#: Builders of span exporters by kind; the OTLP export module registers itself here.
EXPORTER_FACTORIES: dict[
    str, Callable[[Runtime], tuple[str, Callable[..., Any], Callable[[], None] | None]]
] = {}


def _build_exporter(runtime: Runtime) -> tuple[str, Callable[..., Any], Callable[[], None] | None]:
    config = runtime.config
    if config.endpoint or config.traces_endpoint:
        from . import otlp  # noqa: F401  (registers the "otlp" factory)

        return EXPORTER_FACTORIES["otlp"](runtime)
    from .store import LocalStore, LocalStoreExporter

    exporter = LocalStoreExporter(LocalStore(runtime.store_path))
    return f"local store {runtime.store_path}", exporter.export, exporter.shutdown


# -- the process-wide instance -------------------------------------------------------------
_lock = threading.RLock()
_runtime: Runtime | None = None
_atexit_registered = False
EXIT_TIMEOUT_S = 10.0


def get() -> Runtime:
    """The runtime, built from the environment on first use."""
    runtime = _runtime
    if runtime is None:
        with _lock:
            if _runtime is None:
                _install(Runtime(resolve({})))
            runtime = _runtime
    assert runtime is not None
    return runtime


def current() -> Runtime | None:
    return _runtime


def init(arguments: Mapping[str, Any]) -> Runtime:
    config = resolve(arguments)
    with _lock:
        old = _runtime
        new = Runtime(config)
        if old is not None:
            new.listeners.extend(old.listeners)
        _install(new)
    if old is not None:
        old.shutdown(5.0)
    for hook in list(INIT_HOOKS):
        try:
            hook(new)
        except Exception:
            internal_error("init hook")
    return new


#: Called with the new runtime after every init (events, auto events, thread propagation).
INIT_HOOKS: list[Callable[[Runtime], None]] = []
#: Called before the runtime shuts down (restores exception hooks and such).
SHUTDOWN_HOOKS: list[Callable[[Runtime], None]] = []


def _install(runtime: Runtime) -> None:
    global _runtime, _atexit_registered
    _runtime = runtime
    spans_mod.RUNTIME = runtime
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)


def shutdown(timeout: float) -> None:
    runtime = _runtime
    if runtime is None:
        return
    for hook in list(SHUTDOWN_HOOKS):
        try:
            hook(runtime)
        except Exception:
            internal_error("shutdown hook")
    runtime.shutdown(timeout)


def reset_for_tests() -> None:
    """Forget the runtime (the next span builds a new one from the environment)."""
    global _runtime
    with _lock:
        old = _runtime
        _runtime = None
        spans_mod.RUNTIME = None
    if old is not None:
        old.shutdown(5.0)


def _at_exit() -> None:
    runtime = _runtime
    if runtime is None:
        return
    try:
        shutdown(EXIT_TIMEOUT_S)
    except Exception:  # pragma: no cover - interpreter teardown
        pass


def _after_fork_in_child() -> None:
    spans_mod.fork_generation += 1
    runtime = _runtime
    if runtime is not None:
        try:
            runtime.after_fork_in_child()
        except Exception:
            internal_error("after fork")
