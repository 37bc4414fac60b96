"""Cheap reads of the SDKs' typed (pydantic v2) responses.

Asking a pydantic model for a field it does not have raises inside its ``__getattr__``, which costs
5-11 µs a time; the generic readers (``_common.get``, ``extract_usage``) probe many names per
response. :func:`fields` gives a model's own field dict (a missing name is a dict miss, nothing is
copied), :func:`field` and :func:`reader` read one name of a dict, model or other object, and
:func:`plain` turns a model (and nested ones) into dicts for the generic readers. Values are the
model's own, so every reader sees what it saw before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any


def plain(value: Any, depth: int = 1) -> Any:
    """A pydantic model as the dict of its fields and extra fields, ``depth`` levels of nested
    models too (a list's items at the same depth); anything else as it is."""
    if type(getattr(type(value), "__pydantic_fields__", None)) is not dict:
        if depth > 0 and type(value) is list:
            return [plain(item, depth) for item in value]
        return value
    fields = dict(value.__dict__)
    extra = value.__pydantic_extra__
    if extra:
        fields.update(extra)
    if depth > 0:
        for key, item in fields.items():
            if item is not None and not isinstance(item, (str, int, float)):
                fields[key] = plain(item, depth - 1)
    return fields


#: Per type: whether it is a pydantic (v2) model (a type's answer does not change).
_IS_MODEL: dict[type, bool] = {}
_NO_FIELDS: dict[str, Any] = {}


def fields(value: Any) -> Any:
    """The fields of a dict or pydantic model as a mapping to read with ``.get`` (the model's own
    ``__dict__``, merged with its extra fields when it has any; never a copy otherwise), an empty
    mapping for ``None``; ``None`` for anything else (read it with ``getattr``)."""
    cls = type(value)
    if cls is dict:
        return value
    if value is None:
        return _NO_FIELDS
    model = _IS_MODEL.get(cls)
    if model is None:
        model = _IS_MODEL[cls] = type(getattr(cls, "__pydantic_fields__", None)) is dict
    if model:
        extra = value.__pydantic_extra__
        return {**value.__dict__, **extra} if extra else value.__dict__
    return value if isinstance(value, Mapping) else None


def field(value: Any, name: str) -> Any:
    """One field of a dict, pydantic model or other object; ``None`` when it has none."""
    found = fields(value)
    return found.get(name) if found is not None else getattr(value, name, None)


def reader(value: Any) -> Callable[[str], Any]:
    """``name -> value`` for a dict (its ``get``: botocore's requests and responses are dicts) or,
    through :func:`field`, anything else."""
    if type(value) is dict:
        return value.get
    return functools.partial(field, value)
