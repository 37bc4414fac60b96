"""Configuration: one table of options, read in one place.

Precedence: argument > ``TRODO_*`` variable > standard ``OTEL_*`` variable > default.
Bad arguments raise ``ValueError``/``TypeError`` naming the argument; bad environment
values warn once and fall back to the default.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

logger = logging.getLogger("trodo_trace")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be a boolean, got {value!r}")


def _parse_int(minimum: int) -> Callable[[Any, str], int]:
    def parse(value: Any, name: str) -> int:
        if isinstance(value, bool):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an integer, got {value!r}") from None
        if number < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {number}")
        return number

    return parse


def _parse_str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    return value


def _parse_days(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number of days, got {value!r}")
    try:
        days = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of days, got {value!r}") from None
    if not days > 0 or days == float("inf"):
        raise ValueError(f"{name} must be a positive number of days, got {value!r}")
    return days


def _parse_endpoint(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a URL string, got {type(value).__name__}")
    parsed = urlparse(value.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(
            f"{name} must be an http(s) URL such as http://127.0.0.1:4318, got one for host "
            f"{_host_hint(value)!r} (the rest is not shown: it may hold credentials)"
        )
    return value.strip().rstrip("/")


def _host_hint(value: str) -> str:
    """The host part of a (possibly malformed) URL: no scheme, user info, path or query."""
    text = value.strip().rsplit("@", 1)[-1]
    if "//" in text:
        text = text.split("//", 1)[1]
    return text.split("/", 1)[0].split("?", 1)[0][:100]


def _parse_protocol(value: Any, name: str) -> str:
    text = _parse_str(value, name).strip().lower()
    if text in ("http/protobuf", "http"):
        return "http/protobuf"
    if text == "grpc":
        return "grpc"
    raise ValueError(f"{name} must be 'http/protobuf' or 'grpc', got {value!r}")


def _parse_compression(value: Any, name: str) -> str:
    text = _parse_str(value, name).strip().lower()
    if text in ("gzip", "none"):
        return text
    raise ValueError(f"{name} must be 'gzip' or 'none', got {value!r}")


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _check_header(key: str, value: str, name: str) -> tuple[str, str]:
    """A valid (name, value) pair; the error names the header, never its value (often a secret)."""
    if not _HEADER_NAME.fullmatch(key):
        raise ValueError(f"{name}: {key[:64]!r} is not a valid header name")
    if any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F or ord(ch) > 0xFF for ch in value):
        raise ValueError(
            f"{name}: the value of header {key!r} contains a control or non-Latin-1 character "
            "(a newline read from a file?); the value is not shown"
        )
    return key, value


def _parse_headers(value: Any, name: str) -> dict[str, str]:
    if isinstance(value, Mapping):
        headers = {}
        for k, v in value.items():
            key, val = _check_header(str(k).strip().lower(), v if isinstance(v, str) else str(v), name)
            headers[key] = val
        return headers
    if isinstance(value, str):
        from urllib.parse import unquote

        headers = {}
        for index, part in enumerate(value.split(","), 1):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(
                    f"{name}: entry {index} has no '=' (the entry is not shown: it may hold a secret)"
                )
            key, _, val = part.partition("=")
            key, val = _check_header(unquote(key).strip().lower(), unquote(val).strip(), name)
            headers[key] = val
        return headers
    raise TypeError(f"{name} must be a mapping or 'k=v,k2=v2' text, got {type(value).__name__}")


def _parse_callable_or_none(value: Any, name: str) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
    return value


def _parse_any(value: Any, name: str) -> Any:
    return value


def _parse_provider_hosts(value: Any, name: str) -> dict[str, str]:
    """``{"host[:port]": "provider"}``, or ``host[:port]=provider`` pairs separated by commas."""
    if value is None:
        return {}
    if isinstance(value, str):
        pairs: dict[str, str] = {}
        for index, part in enumerate(value.split(","), 1):
            if not part.strip():
                continue
            host, sep, provider = part.partition("=")
            if not sep or not host.strip() or not provider.strip():
                raise ValueError(f"{name}: entry {index} ({part.strip()!r}) is not 'host[:port]=provider'")
            pairs[host.strip().lower()] = provider.strip()
        return pairs
    if isinstance(value, Mapping):
        checked: dict[str, str] = {}
        for host, provider in value.items():
            if not isinstance(host, str) or not host.strip():
                raise ValueError(f"{name}: host names must be non-empty strings, got {host!r}")
            if not isinstance(provider, str) or not provider.strip():
                raise ValueError(
                    f"{name}: the provider of {host!r} must be a non-empty string, got {provider!r}"
                )
            checked[host.strip().lower()] = provider.strip()
        return checked
    raise TypeError(f"{name} must be a mapping of host to provider or 'host=provider,...' text")


def _parse_pricing(value: Any, name: str) -> Any:
    if value is None or isinstance(value, (Mapping, str, os.PathLike)):
        return value
    raise TypeError(f"{name} must be a mapping of model prices or a path to a JSON file")


_PROVIDERS: tuple[str, ...] = ("openai", "anthropic")
_PROVIDERS += ("bedrock", "gemini")
_PROVIDERS += ("cohere", "mistral", "litellm")


def _parse_instrument(value: Any, name: str) -> bool | tuple[str, ...]:
    """True (every installed provider SDK), False (none) or the provider names to instrument."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("none", "false", "off", "0", ""):
            return False
        if text in ("all", "true", "on", "1"):
            return True
        value = [part for part in text.split(",") if part.strip()]
    if isinstance(value, (list, tuple, set, frozenset)):
        names = []
        for item in value:
            key = str(item).strip().lower() if isinstance(item, str) else item
            if key not in _PROVIDERS:
                raise ValueError(f"{name}: unknown provider {item!r}; supported: {', '.join(_PROVIDERS)}")
            if key not in names:
                names.append(key)
        return tuple(names)
    raise TypeError(f"{name} must be a bool, a list of provider names or 'none', got {type(value).__name__}")


@dataclass(frozen=True)
class Option:
    """One configuration option: its argument name, environment variables and default."""

    name: str
    env: tuple[str, ...]
    default: Any
    parse: Callable[[Any, str], Any]
    doc: str


OPTIONS: tuple[Option, ...] = (
    Option(
        "site_id", ("TRODO_SITE_ID",), None, _parse_str, "Site id sent as x-trodo-site-id and trodo.site_id."
    ),
    Option(
        "endpoint",
        ("TRODO_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        None,
        _parse_endpoint,
        "OTLP base endpoint; unset means the local store.",
    ),
    Option(
        "traces_endpoint",
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",),
        None,
        _parse_endpoint,
        "Signal endpoint for spans, used as is.",
    ),
    Option(
        "logs_endpoint",
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",),
        None,
        _parse_endpoint,
        "Signal endpoint for events, used as is.",
    ),
    Option(
        "protocol",
        ("OTEL_EXPORTER_OTLP_PROTOCOL",),
        "http/protobuf",
        _parse_protocol,
        "http/protobuf or grpc.",
    ),
    Option("headers", ("OTEL_EXPORTER_OTLP_HEADERS",), None, _parse_headers, "Extra export headers."),
    Option("service_name", ("OTEL_SERVICE_NAME",), None, _parse_str, "Resource service.name."),
    Option("store_path", ("TRODO_STORE",), None, _parse_str, "Local store path (default ./.trodo/trodo.db)."),
    Option(
        "store_max_bytes",
        ("TRODO_STORE_MAX_BYTES",),
        1024 * 1024 * 1024,
        _parse_int(0),
        "Local store size cap: past it the oldest whole runs are pruned in the background (0: no cap).",
    ),
    Option(
        "store_max_age_days",
        ("TRODO_STORE_MAX_AGE_DAYS",),
        None,
        _parse_days,
        "Runs and events older than this many days are pruned from the local store in the background.",
    ),
    Option("enabled", ("TRODO_ENABLED",), True, _parse_bool, "False turns tracing into no-ops."),
    Option(
        "capture_content",
        ("TRODO_CAPTURE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"),
        True,
        _parse_bool,
        "False sends structure, timing, tokens and cost but no inputs/outputs.",
    ),
    Option(
        "max_value_length",
        ("TRODO_MAX_VALUE_LENGTH",),
        32768,
        _parse_int(256),
        "Captured values are cut at this many characters, with a marker.",
    ),
    Option(
        "instrument",
        ("TRODO_INSTRUMENT",),
        True,
        _parse_instrument,
        "Provider SDKs to trace: true (every installed one), false or 'none', or names ('openai,anthropic').",
    ),
    Option(
        "provider_hosts",
        ("TRODO_PROVIDER_HOSTS",),
        None,
        _parse_provider_hosts,
        "More OpenAI-compatible hosts: {'gpu-box:8000': 'vllm'} or 'gpu-box:8000=vllm'.",
    ),
    Option("redact_secrets", ("TRODO_REDACT_SECRETS",), True, _parse_bool, "Redact API keys and tokens."),
    Option("mask", (), None, _parse_callable_or_none, "Callable applied to every captured value."),
    Option("pricing", (), None, _parse_pricing, "Model price overrides (mapping or JSON path)."),
    Option("tracer_provider", (), None, _parse_any, "Existing TracerProvider for dual export."),
    Option("auto_events", (), False, _parse_bool, "Report uncaught exceptions as server_error events."),
    Option("batch_enabled", ("TRODO_BATCH_ENABLED",), True, _parse_bool, "Batch product events."),
    Option("batch_size", ("TRODO_BATCH_SIZE",), 50, _parse_int(1), "Events per batch."),
    Option(
        "batch_flush_interval_ms",
        ("TRODO_BATCH_FLUSH_INTERVAL_MS",),
        5000,
        _parse_int(1),
        "Event batch interval.",
    ),
    Option(
        "propagate_threads",
        ("TRODO_PROPAGATE_THREADS",),
        True,
        _parse_bool,
        "Carry the current span into threads started inside it.",
    ),
    Option(
        "schedule_delay_ms",
        ("OTEL_BSP_SCHEDULE_DELAY",),
        1000,
        _parse_int(1),
        "Span export interval.",
    ),
    Option(
        "max_export_batch_size",
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE",),
        512,
        _parse_int(1),
        "Spans per export request.",
    ),
    Option(
        "max_queue_size",
        ("OTEL_BSP_MAX_QUEUE_SIZE",),
        65536,
        _parse_int(1),
        "In-memory span queue; past it spans go to the disk spool.",
    ),
    Option(
        "max_queue_bytes",
        ("TRODO_MAX_QUEUE_BYTES",),
        64 * 1024 * 1024,
        _parse_int(0),
        "Memory bound in bytes of the span queue and of the event queue, each (estimated from captured "
        "content and event properties); past it spans and events go to the disk spool (with an "
        "endpoint; dropped and counted without one). 0: count-bound only.",
    ),
    Option(
        "export_timeout_ms",
        ("OTEL_BSP_EXPORT_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
        30000,
        _parse_int(1),
        "Deadline for one whole export.",
    ),
    Option(
        "spool_max_bytes",
        ("TRODO_SPOOL_MAX_BYTES",),
        256 * 1024 * 1024,
        _parse_int(0),
        "Disk spool cap.",
    ),
    Option(
        "spool_dir",
        ("TRODO_SPOOL_DIR",),
        None,
        _parse_str,
        "Disk spool directory (default: spool/ beside the local store).",
    ),
    Option(
        "attempt_timeout_ms",
        ("TRODO_EXPORT_ATTEMPT_TIMEOUT_MS",),
        10000,
        _parse_int(1),
        "Deadline for one export request (the whole export has export_timeout_ms).",
    ),
    Option(
        "max_request_bytes",
        ("TRODO_EXPORT_MAX_REQUEST_BYTES",),
        4 * 1024 * 1024,
        _parse_int(1024),
        "Largest OTLP request body, before compression (a batch is split to fit; a 413 splits it too).",
    ),
    Option(
        "compression",
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"),
        "gzip",
        _parse_compression,
        "OTLP request compression: gzip or none.",
    ),
    Option(
        "certificate_file",
        ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"),
        None,
        _parse_str,
        "CA certificate (PEM) to verify the collector's TLS certificate.",
    ),
    Option(
        "client_certificate_file",
        ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
        None,
        _parse_str,
        "Client certificate (PEM) for mutual TLS.",
    ),
    Option(
        "client_key_file",
        ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        None,
        _parse_str,
        "Client private key (PEM) for mutual TLS.",
    ),
)

_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Config:
    """Resolved configuration: one typed field per option of :data:`OPTIONS`, in its order (the
    defaults live in the table; ``tests/test_typing.py`` keeps the names equal). Build with
    :func:`resolve`."""

    site_id: str | None
    endpoint: str | None
    traces_endpoint: str | None
    logs_endpoint: str | None
    protocol: str
    headers: dict[str, str] | None
    service_name: str | None
    store_path: str | None
    store_max_bytes: int
    store_max_age_days: float | None
    enabled: bool
    capture_content: bool
    max_value_length: int
    instrument: bool | tuple[str, ...]
    provider_hosts: dict[str, str] | None
    redact_secrets: bool
    mask: Callable[[Any], Any] | None
    pricing: Mapping[str, Any] | str | os.PathLike[str] | None
    tracer_provider: TracerProvider | None
    auto_events: bool
    batch_enabled: bool
    batch_size: int
    batch_flush_interval_ms: int
    propagate_threads: bool
    schedule_delay_ms: int
    max_export_batch_size: int
    max_queue_size: int
    max_queue_bytes: int
    export_timeout_ms: int
    spool_max_bytes: int
    spool_dir: str | None
    attempt_timeout_ms: int
    max_request_bytes: int
    compression: str
    certificate_file: str | None
    client_certificate_file: str | None
    client_key_file: str | None


_warned_env: set[str] = set()


def _from_env(option: Option, environ: Mapping[str, str]) -> tuple[bool, Any]:
    for var in option.env:
        raw = environ.get(var)
        if raw is None or raw == "":
            continue
        try:
            return True, option.parse(raw, var)
        except (TypeError, ValueError) as exc:
            if var not in _warned_env:
                _warned_env.add(var)
                fallback = ""
                if option.parse is _parse_endpoint:
                    fallback = "; without another endpoint, spans and events go to the local store"
                warnings.warn(f"trodo_trace: ignoring {var}: {exc}{fallback}", RuntimeWarning, stacklevel=4)
    return False, None


def resolve(arguments: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Resolve every option from arguments, then the environment, then defaults.

    Raises:
        TypeError: an unknown option name, or an argument of the wrong type.
        ValueError: an argument with a bad value.
    """
    arguments = dict(arguments or {})
    environ = os.environ if environ is None else environ
    unknown = sorted(set(arguments) - set(_BY_NAME))
    if unknown:
        raise TypeError(f"init() got unknown option(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for option in OPTIONS:
        if option.name in arguments and arguments[option.name] is not None:
            values[option.name] = option.parse(arguments[option.name], option.name)
            continue
        found, value = _from_env(option, environ)
        values[option.name] = value if found else option.default
    return Config(**values)


def default_store_path() -> Path:
    """Return ``$TRODO_STORE`` (read through the options table) or ``./.trodo/trodo.db`` relative to the
    current directory."""
    found, value = _from_env(_BY_NAME["store_path"], os.environ)
    if found:
        return Path(value).expanduser()
    return Path.cwd() / ".trodo" / "trodo.db"
