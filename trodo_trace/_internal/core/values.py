"""The one value normaliser: any Python value as JSON text, JSON data or an OpenTelemetry attribute.

:func:`to_json` (captured inputs and outputs, metadata), :func:`to_plain` (event properties, the
local store's JSON columns), :func:`dumps` (the store's JSON text) and :func:`attribute_value`
(span attributes on export) share the conversions below.

Turn any captured Python value into JSON text, quickly and without raising.

Traced functions receive and return arbitrary objects. :func:`to_json` first hands the value to
the C JSON encoder with :func:`_default` as the fallback for types JSON does not know. If that
fails (a reference cycle, nesting deeper than the interpreter allows, dict keys JSON cannot
encode, ...) a pure-Python walker rebuilds the value as plain JSON data, replacing cycles with
``"<cycle>"`` and anything nested deeper than 64 levels with ``"<max depth>"``.

The text is capped at ``limit`` characters. A cut is always visible: the kept text is followed by
``…[truncated: N chars total]``. Big strings and containers are clipped before encoding so a
huge value never turns into an equally huge intermediate.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import functools
import hashlib
import itertools
import json
import math
import pathlib
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set, ValuesView
from typing import Any

__all__ = ["attribute_value", "dumps", "encodable", "safe_str", "to_json", "to_plain"]

DEFAULT_LIMIT = 32768
"""Default maximum length, in characters, of the text returned by :func:`to_json`."""

_MAX_ITEMS = 1000  # items kept from one sequence, set or mapping
_MAX_DEPTH = 64  # containers nested deeper than this become "<max depth>"
_MAX_REPR = 1000  # characters kept from a repr()
_MAX_ARRAY = 10000  # numpy arrays with more elements are summarised, not listed
_MAX_INT_BITS = 13000  # ints this large exceed the interpreter's int-to-str digit limit

_ELLIPSIS = "\u2026"
_CYCLE = "<cycle>"
_MAX_DEPTH_TEXT = "<max depth>"
_SEPARATORS = (",", ":")


def _clip(text: str, limit: int) -> str:
    """Return ``text`` cut to ``limit`` characters plus the truncation marker, if it is longer."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}{_ELLIPSIS}[truncated: {len(text)} chars total]"


_SURROGATES = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> str:
    """``text`` with every character UTF-8 cannot encode (lone surrogates, as ``json.loads`` makes
    from scraped text) replaced by U+FFFD, so one value can never make a batch unencodable.

    O(1) for ASCII text (the usual case); otherwise one encoding attempt.

    Example:
        >>> encodable(chr(0xD800) + " scraped") == "\\ufffd scraped"
        True
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text)
    return text


def _more_items(count: int) -> str:
    return f"{_ELLIPSIS}[+{count} more items]"


def _type_name(obj: object) -> str:
    try:
        return type(obj).__qualname__
    except Exception:
        return "object"


def _safe_repr(obj: object) -> str:
    try:
        return _clip(repr(obj), _MAX_REPR)
    except Exception:
        return f"<unrepresentable {_type_name(obj)}>"


def _bytes_text(data: bytes | bytearray | memoryview, limit: int) -> str:
    raw = bytes(data)
    try:
        return _clip(raw.decode("utf-8"), limit)
    except UnicodeDecodeError:
        return f"<bytes len={len(raw)} sha256={hashlib.sha256(raw).hexdigest()[:12]}>"


def _clip_items(items: Any, size: int) -> list[Any]:
    """Return the first ``_MAX_ITEMS`` of ``items`` as a list, plus a marker for the rest."""
    if size <= _MAX_ITEMS:
        return list(items)
    kept = list(itertools.islice(items, _MAX_ITEMS))
    kept.append(_more_items(size - _MAX_ITEMS))
    return kept


def _clip_mapping(mapping: Mapping[Any, Any]) -> dict[Any, Any]:
    size = len(mapping)
    if size <= _MAX_ITEMS:
        return dict(mapping.items())
    kept = dict(itertools.islice(mapping.items(), _MAX_ITEMS))
    kept[_ELLIPSIS] = _more_items(size - _MAX_ITEMS)
    return kept


def _set_items(values: Set[Any]) -> list[Any]:
    try:
        ordered: list[Any] = sorted(values)
    except Exception:
        ordered = list(values)
    return _clip_items(ordered, len(ordered))


def _numpy_value(obj: Any) -> Any:
    size = getattr(obj, "size", 1)
    if getattr(obj, "ndim", 0) and size > _MAX_ARRAY:
        return f"<ndarray shape={tuple(obj.shape)} dtype={obj.dtype}>"
    return obj.tolist()


def _pydantic_value(obj: Any) -> Any:
    try:
        return obj.model_dump(mode="json", warnings=False)
    except Exception:
        return obj.model_dump()


def _convert(obj: Any, limit: int) -> Any:
    """Return a JSON-encodable stand-in for ``obj`` (possibly a container needing more work)."""
    try:
        tp = type(obj)
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return _bytes_text(obj, limit)
        if isinstance(obj, enum.Enum):
            return obj.value
        if isinstance(obj, (datetime.date, datetime.time)):  # datetime is a date subclass
            return obj.isoformat()
        if isinstance(obj, datetime.timedelta):
            return obj.total_seconds()
        if isinstance(obj, (uuid.UUID, pathlib.PurePath, decimal.Decimal)):
            return str(obj)
        if isinstance(obj, (set, frozenset)):
            return _set_items(obj)
        if tp.__module__.startswith("numpy") and hasattr(tp, "tolist"):
            return _numpy_value(obj)
        if isinstance(obj, type):
            return _safe_repr(obj)
        if callable(getattr(tp, "model_dump", None)):
            return _pydantic_value(obj)
        if callable(getattr(tp, "dict", None)) and hasattr(tp, "__fields__"):
            return obj.dict()
        if dataclasses.is_dataclass(obj):
            return {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
        if isinstance(obj, BaseException):
            return f"{tp.__name__}: {obj}"
        if isinstance(obj, Mapping):
            return _clip_mapping(obj)
        if isinstance(obj, Iterator):
            return _safe_repr(obj)  # never consume an iterator or generator
        if isinstance(obj, Set):
            return _set_items(obj)
        if isinstance(obj, (Sequence, ValuesView)):
            return _clip_items(iter(obj), len(obj))
    except RecursionError:
        # A cycle through converted objects (dataclasses, models) with no cycle markers in the C
        # encoder: let it fail, so that to_json falls back to the walker, which writes "<cycle>".
        raise
    except Exception:
        pass
    return _safe_repr(obj)


def _default(obj: Any) -> Any:
    """``default`` hook for :func:`json.dumps`: converts ``obj`` and never raises."""
    return _convert(obj, DEFAULT_LIMIT)


@functools.lru_cache(maxsize=16)
def _encoder(limit: int) -> json.JSONEncoder:
    default = _default if limit == DEFAULT_LIMIT else functools.partial(_convert, limit=limit)
    return json.JSONEncoder(ensure_ascii=False, default=default, separators=_SEPARATORS)


#: The C encoders by text limit (built once: a new one per call costs more than a small value's
#: encoding). They keep no cycle markers, so they hold no state between calls and any thread may
#: use them: a cycle makes the encoder raise ``RecursionError`` and :func:`to_json` falls back to
#: the walker, which writes ``"<cycle>"`` (markers would cost a dict update per container).
_C_ENCODERS: dict[int, Any] = {}


def _encode(value: Any, limit: int) -> str:
    """The C encoder, called directly (skips ``JSONEncoder.encode``'s per-call Python setup)."""
    encoder = _C_ENCODERS.get(limit)
    if encoder is None:
        default = _default if limit == DEFAULT_LIMIT else _encoder(limit).default
        encoder = _c_make_encoder(None, default, _c_encode_str, None, ":", ",", False, False, True)
        if len(_C_ENCODERS) < 16:
            _C_ENCODERS[limit] = encoder
    return "".join(encoder(value, 0))


try:
    from json.encoder import c_encode_basestring as _c_encode_str  # type: ignore[attr-defined]
    from json.encoder import c_make_encoder as _c_make_encoder  # type: ignore[attr-defined]

    if _c_make_encoder is None or _c_encode_str is None:
        raise ImportError
    _encode({"probe": [1, 2.5, None, True, "x"]}, DEFAULT_LIMIT)
except Exception:  # pragma: no cover - interpreters without the C accelerator

    def _encode(value: Any, limit: int) -> str:
        return _encoder(limit).encode(value)


class _Walk:
    """State of one pure-Python conversion: the text limit and characters cut from strings."""

    __slots__ = ("dropped", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0

    def string(self, text: str) -> str:
        clipped = _clip(text, self.limit)
        self.dropped += len(text) - len(clipped)
        return clipped

    def key(self, key: Any) -> Any:
        if isinstance(key, str):
            return self.string(key)
        if key is None or isinstance(key, (bool, float)):
            return key
        if isinstance(key, int):
            return key if key.bit_length() <= _MAX_INT_BITS else f"<int bits={key.bit_length()}>"
        try:
            return self.string(str(key))
        except Exception:
            return _safe_repr(key)


def _to_safe(value: Any, seen: set[int], depth: int = 0, walk: _Walk | None = None) -> Any:
    """Rebuild ``value`` from plain JSON types, replacing cycles and over-deep nesting.

    ``seen`` holds the ids of the containers on the path from the root to ``value``.
    """
    if walk is None:
        walk = _Walk(DEFAULT_LIMIT)
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, str):
        return walk.string(value)
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            return f"<int bits={value.bit_length()}>"
        return value
    if depth > _MAX_DEPTH:
        return _MAX_DEPTH_TEXT
    ident = id(value)
    if ident in seen:
        return _CYCLE
    seen.add(ident)
    try:
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for key, item in itertools.islice(value.items(), _MAX_ITEMS):
                out[walk.key(key)] = _to_safe(item, seen, depth + 1, walk)
            if len(value) > _MAX_ITEMS:
                out[_ELLIPSIS] = _more_items(len(value) - _MAX_ITEMS)
            return out
        if isinstance(value, (list, tuple)):
            items = [_to_safe(item, seen, depth + 1, walk) for item in itertools.islice(value, _MAX_ITEMS)]
            if len(value) > _MAX_ITEMS:
                items.append(_more_items(len(value) - _MAX_ITEMS))
            return items
        converted = _convert(value, walk.limit)
        if converted is value:
            return _safe_repr(value)
        return _to_safe(converted, seen, depth + 1, walk)
    finally:
        seen.discard(ident)


def _slow_json(value: Any, limit: int) -> str:
    walk = _Walk(limit)
    try:
        text = json.dumps(_to_safe(value, set(), 0, walk), ensure_ascii=False, separators=_SEPARATORS)
    except Exception:
        return json.dumps(f"<unserializable {_type_name(value)}>")
    if len(text) > limit:
        return f"{text[:limit]}{_ELLIPSIS}[truncated: {len(text) + walk.dropped} chars total]"
    return text


def to_json(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """Return JSON text for ``value``, at most ``limit`` characters plus a truncation marker.

    Never raises. Values JSON cannot encode are converted (see :func:`_default`); cycles become
    ``"<cycle>"``. Text longer than ``limit`` is cut and followed by
    ``…[truncated: N chars total]``, where N is the length of the full text; strings that the
    fallback walker clipped before encoding (such as a huge top-level str) count at their
    original length.
    """
    if limit < 0:
        limit = 0
    obj: Any = value
    tp = type(obj)
    if tp is str:
        if len(obj) > limit:
            return encodable(_slow_json(obj, limit))
    elif (tp is list or tp is dict or tp is tuple) and len(obj) > _MAX_ITEMS:
        return encodable(_slow_json(obj, limit))
    try:
        text = _encode(value, limit)
    except Exception:
        return encodable(_slow_json(value, limit))
    if len(text) > limit:
        return encodable(f"{text[:limit]}{_ELLIPSIS}[truncated: {len(text)} chars total]")
    return text if text.isascii() else encodable(text)


def safe_str(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """Return ``value`` itself if it is a str (clipped to ``limit``), else :func:`to_json` of it."""
    if isinstance(value, str):
        return encodable(_clip(value, max(limit, 0)))
    return to_json(value, limit)


# -- JSON data ------------------------------------------------------------------------------------
_INT64 = (-(2**63), 2**63 - 1)
PLAIN_DEPTH = 32
"""Default nesting kept by :func:`to_plain`; deeper containers become ``"<max depth>"``."""


def to_plain(
    value: Any,
    *,
    leaves: bool = True,
    max_depth: int = PLAIN_DEPTH,
    converted: list[bool] | None = None,
    limit: int | None = None,
) -> Any:
    """``value`` as JSON data: tuples and lists as lists, mappings as dicts with str keys.

    With ``leaves`` (event properties) every other value becomes JSON data too — str, finite float,
    int64, bool or None: dates as ISO text, other numbers as text, the rest through :func:`to_json` —
    with cycles as ``"<cycle>"`` and containers nested deeper than ``max_depth`` as
    ``"<max depth>"``; ``converted[0]`` is set when something had to change beyond tuples becoming
    lists. Without ``leaves`` (the store's JSON columns, holding values that are JSON data or
    attribute values already) only containers are rebuilt, at any depth; other values are kept as
    they are, for :func:`dumps`.

    With ``limit`` (event properties: ``max_value_length``) strings longer than ``limit`` are cut
    (with the truncation marker) and containers keep their first 1,000 items, as captured values do.
    """
    return _plain(value, [], [False] if converted is None else converted, 0, leaves, max_depth, limit)


def key_text(key: Any) -> str:
    """A mapping key as text; a key whose ``str()`` raises becomes its safe repr."""
    try:
        return encodable(str(key))
    except Exception:
        return encodable(_safe_repr(key))


def _convert_leaf(value: Any) -> Any:
    """A non-JSON value as JSON data: dates as ISO text, numbers as text, the rest via ``to_json``."""
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value  # normalised again by the caller
    if isinstance(value, (decimal.Decimal, uuid.UUID, int, float)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    text = to_json(value)
    try:
        return json.loads(text)
    except ValueError:
        return text


def _plain(
    value: Any,
    path: list[int],
    converted: list[bool],
    depth: int,
    leaves: bool,
    max_depth: int,
    limit: int | None = None,
) -> Any:
    kind = type(value)
    if kind is str:
        if limit is not None and len(value) > limit:
            value = _clip(value, limit)
        return encodable(value) if leaves else value
    if kind is bool or value is None:
        return value
    if not leaves and not isinstance(value, (list, tuple, Mapping)):
        return value
    if kind is int:
        if _INT64[0] <= value <= _INT64[1]:
            return value
    elif kind is float:
        if math.isfinite(value):
            return value
    elif kind is dict or kind is list or kind is tuple or isinstance(value, (list, tuple, Mapping)):
        if leaves and (id(value) in path or depth >= max_depth):
            converted[0] = True
            return "<cycle>" if id(value) in path else "<max depth>"
        path.append(id(value))
        try:
            if isinstance(value, Mapping):
                result = {}
                items: Iterable[tuple[Any, Any]] = value.items()
                if limit is not None and len(value) > _MAX_ITEMS:
                    items = itertools.islice(items, _MAX_ITEMS)
                    result[_ELLIPSIS] = _more_items(len(value) - _MAX_ITEMS)
                for key, item in items:
                    if type(key) is not str:
                        converted[0] = True
                        key = key_text(key)
                    elif leaves:
                        key = encodable(key)
                    result[key] = _plain(item, path, converted, depth + 1, leaves, max_depth, limit)
                return result
            if limit is not None and len(value) > _MAX_ITEMS:
                kept = [
                    _plain(item, path, converted, depth + 1, leaves, max_depth, limit)
                    for item in itertools.islice(value, _MAX_ITEMS)
                ]
                kept.append(_more_items(len(value) - _MAX_ITEMS))
                return kept
            return [_plain(item, path, converted, depth + 1, leaves, max_depth, limit) for item in value]
        finally:
            path.pop()
    elif isinstance(value, enum.Enum) and isinstance(value, (str, int, float)):
        # json encodes these as their value
        return _plain(value.value, path, converted, depth + 1, leaves, max_depth, limit)
    elif isinstance(value, str):
        return encodable(str.__str__(value))
    elif isinstance(value, int) and not isinstance(value, bool):
        if _INT64[0] <= value <= _INT64[1]:
            return int(value)
    elif isinstance(value, float) and math.isfinite(value):
        return float(value)
    converted[0] = True
    if depth >= max_depth:
        return str(value)
    return _plain(_convert_leaf(value), path, [False], depth + 1, leaves, max_depth, limit)


def _dumps_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def dumps(value: Any) -> str:
    """Compact JSON text of JSON data (the store's columns): sets as sorted lists, bytes as text,
    anything else JSON does not know as its ``str()``."""
    return json.dumps(value, default=_dumps_default, ensure_ascii=False, separators=_SEPARATORS)


# -- OpenTelemetry attribute values ---------------------------------------------------------------
_SCALARS = (str, bool, int, float)


def attribute_value(value: Any) -> Any:
    """An OpenTelemetry attribute value for ``value``: scalars as they are, homogeneous lists as
    tuples, everything else as JSON text. ``None`` means drop the attribute."""
    if value is None:
        return None
    if isinstance(value, str):
        return encodable(value)
    if isinstance(value, _SCALARS):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            return str(value)
        return value
    if isinstance(value, (list, tuple)):
        if not value:
            return ()
        first = type(value[0])
        if first in (str, bool, int, float) and all(type(item) is first for item in value):
            return tuple(value)
        return to_json(value)
    return to_json(value)
