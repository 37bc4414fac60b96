"""Process-wide state: configuration, the export pipeline, and the hooks spans call when they end.

Built once, at ``init()`` or by the first span (from the environment). Nothing here runs on the
application thread except :meth:`Runtime.on_end` (a few dict reads and a deque append) and
:meth:`Runtime.capture` (serialising a captured value).
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from . import lifecycle
from .config import Config, default_store_path, resolve
from .core import attrs
from .core import spans as spans_mod
from .core.cost import add_llm_cost
from .core.counter import Counter
from .core.errors import internal_error, log_once
from .core.values import to_json

if TYPE_CHECKING:
    from .export.delivery import SignalDelivery
    from .store.spill import StoreSpill

# The OpenTelemetry SDK, the pipeline, pricing and privacy modules load when the first runtime is
# built (``init()`` or the first span), not at ``import trodo_trace``.

logger = logging.getLogger("trodo_trace")


def __getattr__(name: str) -> Any:
    if name == "SCOPE":
        from .export.resource import SCOPE

        return SCOPE
    raise AttributeError(name)


class Runtime:
    """Everything ``init()`` builds."""

    def __init__(self, config: Config):
        from .core.pricing import PricingTable
        from .export.convert import to_readable
        from .export.pipeline import Pipeline
        from .export.redact import Scrubber, redact_secrets
        from .export.resource import SCOPE, build_resource

        self._to_readable = to_readable
        self._scope = SCOPE
        self.config = config
        self.enabled: bool = config.enabled
        self.capture_content: bool = config.capture_content
        self.max_value_length: int = config.max_value_length
        self.mask: Callable[[Any], Any] | None = config.mask
        self.pricing = PricingTable.bundled().with_overrides(config.pricing)
        self.resource = build_resource(config)
        self.listeners: list[Callable[[spans_mod.TrodoSpan], None]] = []
        self.redact: Callable[[str], str] | None = redact_secrets if config.redact_secrets else None
        self.scrubber = Scrubber(
            capture_content=self.capture_content,
            mask=self.mask,
            redact=self.redact,
            max_value_length=self.max_value_length,
        )
        self.forward_spans: Callable[[list[Any]], None] | None = None
        if config.tracer_provider is not None:
            from .export.dual import attach_provider

            self.forward_spans = attach_provider(config.tracer_provider)
        self.last_run: spans_mod.Run | None = None
        # In IPython/Jupyter a finished run is exported at once (a later cell or the CLI sees it);
        # elsewhere spans wait for the batch interval, so servers keep their batching.
        self.wake_on_run_end: bool = in_ipython()
        self.started_counter = Counter()
        self.store_path = _store_path(config)
        self.store_spill: StoreSpill | None = None  # set by _build_exporter for the local store
        #: The local store takes our finished spans as they are (no ``ReadableSpan`` built for it).
        self.store_takes_spans = False
        self.exporter_description, export, on_shutdown = _build_exporter(self)
        # An exporter that also offers the pipeline hooks (the OTLP delivery: overflow to its spool,
        # idle-time spool sending, shutdown leftovers) is wired to them and reports its own counts.
        self.span_delivery: SignalDelivery | None = (
            cast("SignalDelivery", export) if hasattr(export, "pipeline_hooks") else None
        )
        hooks: dict[str, Any] = {"on_shutdown": on_shutdown}
        if self.span_delivery is not None:
            hooks.update(self.span_delivery.pipeline_hooks())
        if self.store_spill is not None:
            hooks.update(self.store_spill.pipeline_hooks())
        self.pipeline = Pipeline(
            export,
            convert=self.convert_spans,
            batch_size=config.max_export_batch_size,
            interval_s=config.schedule_delay_ms / 1000.0,
            max_queue=config.max_queue_size,
            name="trodo-span-export",
            size=span_bytes,
            max_bytes=config.max_queue_bytes,
            max_item_bytes=max_span_bytes(config.max_value_length),
            **hooks,
        )
        # OTLP export writes our spans' protobuf bytes directly (export.encode); the local store
        # and dual export take the SDK's ReadableSpan.
        self._span_writer: Any = None
        if self.span_delivery is not None:
            from .export.encode import SpanWriter

            self._span_writer = SpanWriter(self.resource, SCOPE)
        if self.span_delivery is not None:
            self.span_delivery.item_size = span_bytes
            self.span_delivery.max_buffer_bytes = config.max_queue_bytes
            self.span_delivery.bind(self.pipeline)
        self.extensions: list[Any] = []  # objects with flush(timeout)/shutdown(timeout)/stats()
        if self.store_spill is not None:
            self.extensions.append(self.store_spill)
        self._dropped_at_flush = 0

    def convert_spans(self, batch: list[Any]) -> list[Any]:
        """Finished spans ready to export (export thread): ours are scrubbed and converted (to OTLP
        bytes for the OTLP export, else to ``ReadableSpan``; the local store takes them as they are),
        and handed to the app's TracerProvider in dual export; spans from that provider pass as they
        are."""
        resource, scrubber = self.resource, self.scrubber
        scrub = scrubber.span if scrubber.active else None
        write = self._span_writer.span if self._span_writer is not None else None
        forward = self.forward_spans is not None
        store_takes = self.store_takes_spans
        out = []
        ours = []
        for item in batch:
            if isinstance(item, spans_mod.TrodoSpan):
                if scrub is not None:
                    scrub(item)
                if write is not None or store_takes:
                    out.append(write(item) if write is not None else item)
                    if forward:
                        ours.append(self._to_readable(item, resource, self._scope))
                    continue
                readable = self._to_readable(item, resource, self._scope)
                ours.append(readable)
                out.append(readable)
            else:
                out.append(item)
        if self.forward_spans is not None and ours:
            try:
                self.forward_spans(ours)
            except Exception:
                internal_error("dual export")
        return out

    # -- hooks called by spans -----------------------------------------------------------
    def span_started(self) -> None:
        self.started_counter.increment()

    def capture(self, span: spans_mod.TrodoSpan, key: str, mime_key: str, value: Any) -> None:
        """Serialise a captured value onto ``span`` (masked and redacted) unless content is off."""
        if not self.capture_content:
            return
        attributes = span.attributes
        if self.mask is None:
            attributes[key] = to_json(value, self.max_value_length)
        else:
            attributes[key] = self.serialize(value)
        attributes[mime_key] = attrs.JSON_MIME

    def serialize(self, value: Any) -> str:
        mask = self.mask
        if mask is not None:
            try:
                value = mask(value)
            except Exception:
                log_once("mask-failed", "trodo_trace: the mask function raised; the value is masked whole")
                return '"<masked>"'
        # Secret redaction of this text happens on the export thread (redact.Scrubber), not here.
        return to_json(value, self.max_value_length)

    def on_end(self, span: spans_mod.TrodoSpan) -> None:
        if span.fork_generation != spans_mod.fork_generation or not self.enabled:
            return  # started before a fork (the parent process exports it), or tracing is off
        attributes = span.attributes
        if span.kind == "llm" and attrs.LLM_COST not in attributes:
            add_llm_cost(self.pricing, attributes)
        run = span.run
        wake = False
        if run is not None and run.local:
            run.account(span)
            if run.root is span:  # a local run with this root is a Run (a JoinedRun's root is None)
                run = cast(spans_mod.Run, run)
                run.finish()
                self.last_run = run
                wake = self.wake_on_run_end
        for listener in self.listeners:
            try:
                listener(span)
            except Exception:
                internal_error("span listener")
        self.pipeline.submit(span)
        if wake:
            self.pipeline.flush(0.0)  # a zero-deadline flush only wakes the export worker

    # -- lifecycle ---------------------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0.0)
        ok = True
        for extension in list(self.extensions):
            try:
                ok = extension.flush(timeout) and ok
            except Exception:
                internal_error("extension flush")
        ok = self.pipeline.flush(max(0.0, deadline - time.monotonic())) and ok
        if self.span_delivery is not None:
            ok = self.span_delivery.flush(max(0.0, deadline - time.monotonic())) and ok
        lost = self._lost()
        if lost != self._dropped_at_flush:  # something was lost since the last flush (or init)
            self._dropped_at_flush = lost
            ok = False
        return ok

    def _lost(self) -> int:
        """Spans and events that will never be delivered: failed, rejected or dropped, so far."""
        stats = self.stats()
        return sum(
            value
            for key in _LOSS_KEYS
            if isinstance(value := stats.get(key), int) and not isinstance(value, bool)
        )

    def shutdown(self, timeout: float) -> None:
        timeout = max(timeout, 0.0)
        deadline = time.monotonic() + timeout
        for extension in list(self.extensions):
            try:
                extension.shutdown(timeout)
            except Exception:
                internal_error("extension shutdown")
        delivery = self.span_delivery
        if delivery is None:
            self.pipeline.shutdown(max(0.0, deadline - time.monotonic()))
            return
        # Deliver (queue, then spool) with most of the time, keeping enough to write what is still
        # queued to the spool if the collector does not take it in time.
        pipeline = self.pipeline

        def reserve() -> float:
            stats = pipeline.stats()
            backlog = stats["queue_depth"] + stats["in_flight"]
            return min(0.9 * timeout, max(min(0.25 * timeout, 1.0), delivery.spool_seconds(backlog)))

        while pipeline.pending():
            left = deadline - reserve() - time.monotonic()
            if left <= 0:
                break
            pipeline.flush(min(left, 0.05))
        delivery.flush(max(0.0, deadline - reserve() - time.monotonic()))
        pipeline.shutdown(max(0.0, deadline - time.monotonic()), reserve=reserve())

    def stats(self) -> dict[str, Any]:
        pipeline = self.pipeline.stats()
        result: dict[str, Any] = {
            "started": self.started_counter.value,
            "ended": pipeline["queued"] + pipeline["overflowed"],
            "exported": pipeline["exported"],
            "failed": pipeline["failed"],
            "spooled": 0,
            "rejected": 0,
            "dropped": pipeline["dropped"],
            "queue_depth": pipeline["queue_depth"],
            "in_flight": pipeline["in_flight"],
            "last_error": pipeline["last_error"],
            "exporter": self.exporter_description,
        }
        if self.span_delivery is not None:
            delivery = self.span_delivery.stats()
            result.update(
                {key: value for key, value in delivery.items() if key not in ("dropped", "overflow_depth")}
            )
            result["dropped"] += delivery["dropped"]
            result["failed"] += pipeline["lost"]  # items the pipeline could not convert
            result["queue_depth"] += delivery["overflow_depth"]
            if delivery["last_error"] is None:
                result["last_error"] = pipeline["last_error"]
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
        if self.span_delivery is not None:
            self.span_delivery.after_fork_in_child()
        self._dropped_at_flush = 0
        self.started_counter = Counter()
        for extension in list(self.extensions):
            hook = getattr(extension, "after_fork_in_child", None)
            if hook is not None:
                hook()


_SPAN_OVERHEAD = 1024
_INPUT, _OUTPUT = attrs.INPUT_VALUE, attrs.OUTPUT_VALUE


def span_bytes(span: Any) -> int:
    """About how much memory a queued span holds: its captured input and output text plus a fixed
    overhead (two dictionary lookups: cheap enough for the application thread)."""
    try:
        get = span.attributes.get
        text_in, text_out = get(_INPUT), get(_OUTPUT)
    except AttributeError:
        return _SPAN_OVERHEAD
    return (
        _SPAN_OVERHEAD
        + (len(text_in) if text_in.__class__ is str else 0)
        + (len(text_out) if text_out.__class__ is str else 0)
    )


def max_span_bytes(max_value_length: int) -> int:
    """The most :func:`span_bytes` says of a span whose input and output were captured (each cut at
    ``max_value_length`` characters, plus the truncation marker)."""
    return _SPAN_OVERHEAD + 2 * (max_value_length + 64)


def in_ipython() -> bool:
    """True inside an IPython shell or a Jupyter kernel."""
    module = sys.modules.get("IPython")
    if module is None:
        return False
    try:
        return module.get_ipython() is not None
    except Exception:
        return False


def _store_path(config: Config) -> Path:
    path = Path(config.store_path) if config.store_path else default_store_path()
    return path.expanduser().absolute()


def _build_exporter(runtime: Runtime) -> tuple[str, Callable[..., Any], Callable[[], None] | None]:
    config = runtime.config
    if config.endpoint or config.traces_endpoint:
        from .export.otlp import span_export

        return span_export(runtime)
    from .export.hub import new_owner
    from .export.spool import Spool
    from .store.local import LocalStore, LocalStoreExporter
    from .store.spill import StoreSpill

    store = LocalStore(runtime.store_path)
    exporter = LocalStoreExporter(
        store,
        max_bytes=config.store_max_bytes,
        max_age_days=config.store_max_age_days,
        resource=runtime.resource,
    )
    runtime.store_takes_spans = True
    if config.spool_max_bytes > 0:
        # Spans the writer cannot take yet wait in a spool of this store's own (never sent anywhere).
        root = (
            Path(config.spool_dir).expanduser() if config.spool_dir else runtime.store_path.parent / "spool"
        )
        key = hashlib.sha256(str(runtime.store_path).encode()).hexdigest()[:16]
        spool = Spool(
            root.absolute() / f"store-{key}",
            config.spool_max_bytes,
            new_owner(),
            f"local store {runtime.store_path}",
        )
        runtime.store_spill = StoreSpill(
            store,
            spool,
            runtime.convert_spans,
            batch_size=config.max_export_batch_size,
            resource=runtime.resource,
        )
    return f"local store {runtime.store_path}", exporter.export, exporter.shutdown


_LOSS_KEYS = ("failed", "rejected", "dropped", "events_failed", "events_rejected", "events_dropped")

# -- the process-wide instance -------------------------------------------------------------
_lock = threading.RLock()
_runtime: Runtime | None = None
EXIT_TIMEOUT_S = 10.0


def get() -> Runtime:
    """The runtime, built from the environment on first use."""
    runtime = _runtime
    if runtime is None:
        created = None
        with _lock:
            if _runtime is None:
                created = Runtime(resolve({}))
                _install(created)
            runtime = _runtime
        if created is not None:
            _run_init_hooks(created)
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
    _run_init_hooks(new)
    return new


def _run_init_hooks(runtime: Runtime) -> None:
    for hook in list(INIT_HOOKS):
        try:
            hook(runtime)
        except Exception:
            internal_error("init hook")


#: Called with the new runtime after every init (events, auto events, thread propagation).
INIT_HOOKS: list[Callable[[Runtime], None]] = []
#: Called before the runtime shuts down (restores exception hooks and such).
SHUTDOWN_HOOKS: list[Callable[[Runtime], None]] = []


def _install(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime
    spans_mod.RUNTIME = runtime
    lifecycle.install(_at_exit, _after_fork_in_child)


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
        for hook in list(SHUTDOWN_HOOKS):
            try:
                hook(old)
            except Exception:
                internal_error("shutdown hook")
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
    lifecycle.hook_multiprocessing()


# The first span builds the runtime through this (the span layer never imports this module).
spans_mod.BUILD_RUNTIME = get
