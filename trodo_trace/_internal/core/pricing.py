"""LLM token prices and cost computation.

The bundled table (``pricing.json`` next to this module) holds the providers' published list
prices in USD per 1M tokens, standard tier, for prompts within the base context tier. It is
dated: :attr:`PricingTable.as_of`. Users can add models or replace prices with
:meth:`PricingTable.with_overrides`.

Model names seen in traces vary ("openai/gpt-4o", "gpt-4o-2024-08-06",
"anthropic.claude-3-5-sonnet-20241022-v2:0", "models/gemini-2.5-pro",
"mistral-large-latest"); :meth:`PricingTable.lookup` maps them onto table entries and caches
the answer.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import os
import re
import types
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["ModelPrice", "PricingTable"]

_PER_TOKENS = 1_000_000
_MAX_CACHED_LOOKUPS = 4096
_BOUNDARY = frozenset("-:@")
_LATEST = "-latest"
_MISS: Any = object()
_DEFAULT_PROVIDER = "custom"

# Vendor prefixes written with a dot, as in Amazon Bedrock model ids
# ("anthropic.claude-...", "us.anthropic.claude-...", "cohere.command-r-...").
_DOTTED_VENDOR = re.compile(
    r"^(?:(?:us|eu|apac|au|ca|jp|us-gov|global)\.)?"
    r"(?:anthropic|openai|cohere|mistral|google|meta|amazon|ai21|deepseek|qwen|writer)\."
)


class ModelPrice(NamedTuple):
    """Prices of one model in USD per 1M tokens; ``None`` cache prices mean "billed as input"."""

    provider: str
    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None


def _price(model: str, field: str, value: Any) -> float:
    if value is None:
        raise ValueError(f"pricing for model {model!r}: field {field!r} is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"pricing for model {model!r}: field {field!r} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(
            f"pricing for model {model!r}: field {field!r} must be a finite number >= 0, got {value!r}"
        )
    return number


def _optional_price(model: str, field: str, value: Any) -> float | None:
    return None if value is None else _price(model, field, value)


def _to_price(model: str, entry: ModelPrice | Mapping[str, Any], default_provider: str) -> ModelPrice:
    """Validate one table entry and return it as a :class:`ModelPrice`."""
    if isinstance(entry, ModelPrice):
        fields: Mapping[str, Any] = entry._asdict()
    elif isinstance(entry, Mapping):
        fields = entry
    else:
        raise ValueError(f"pricing for model {model!r} must be a mapping of prices, got {entry!r}")
    provider = fields.get("provider")
    if provider is None:
        provider = default_provider
    if not isinstance(provider, str) or not provider:
        raise ValueError(f"pricing for model {model!r}: field 'provider' must be a non-empty string")
    return ModelPrice(
        provider=provider,
        input=_price(model, "input", fields.get("input")),
        output=_price(model, "output", fields.get("output")),
        cache_read=_optional_price(model, "cache_read", fields.get("cache_read")),
        cache_write=_optional_price(model, "cache_write", fields.get("cache_write")),
    )


def _normalise(name: str) -> str:
    """Lower-case ``name`` and strip provider prefixes such as "openai/" or "anthropic."."""
    key = name.strip().lower()
    if "/" in key:
        key = key.rsplit("/", 1)[1]
    return _DOTTED_VENDOR.sub("", key, count=1)


def _table_key(model: Any) -> str:
    key = _normalise(model) if isinstance(model, str) else ""
    if not key:
        raise ValueError(f"pricing model names must be non-empty strings, got {model!r}")
    return key


def _read_overrides(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    with open(path, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as exc:
            raise ValueError(f"pricing overrides file {os.fspath(path)!r} is not valid JSON: {exc}") from exc
    if isinstance(data, Mapping) and isinstance(data.get("models"), Mapping):
        data = data["models"]
    if not isinstance(data, Mapping):
        raise ValueError(f"pricing overrides file {os.fspath(path)!r} must hold a JSON object")
    return data


class PricingTable:
    """Model prices with name normalisation and cost computation.

    ``models`` maps model ids to :class:`ModelPrice` values or mappings with ``provider``,
    ``input`` and ``output`` and optional ``cache_read`` / ``cache_write`` prices (USD per 1M
    tokens). Invalid entries raise :class:`ValueError` naming the model and field.
    """

    __slots__ = ("_as_of", "_cache", "_keys", "_models")

    def __init__(
        self, models: Mapping[str, ModelPrice | Mapping[str, Any]], *, as_of: str | None = None
    ) -> None:
        table: dict[str, ModelPrice] = {}
        for model, entry in models.items():
            table[_table_key(model)] = _to_price(str(model), entry, _DEFAULT_PROVIDER)
        self._models = table
        self._keys = sorted(table, key=len, reverse=True)
        self._cache: dict[str | None, ModelPrice | None] = {}
        self._as_of = as_of

    @classmethod
    def bundled(cls) -> PricingTable:
        """Return the table shipped with the package (loaded once, then shared)."""
        return _bundled_table()

    @property
    def as_of(self) -> str | None:
        """Date (YYYY-MM-DD) the prices were checked, or ``None`` for a table built without one."""
        return self._as_of

    @property
    def models(self) -> Mapping[str, ModelPrice]:
        """Read-only view of the table: canonical model id to price."""
        return types.MappingProxyType(self._models)

    def with_overrides(
        self, overrides: Mapping[str, Mapping[str, Any] | ModelPrice] | str | os.PathLike[str] | None
    ) -> PricingTable:
        """Return a new table with ``overrides`` added on top of this one; overrides win.

        ``overrides`` is a mapping of model id to prices (``input`` and ``output`` required;
        ``cache_read``, ``cache_write`` and ``provider`` optional), or the path of a JSON file
        holding either such a mapping or a document shaped like the bundled ``pricing.json``.
        An override without ``provider`` keeps the provider of the entry it replaces. Missing
        cache prices are ``None`` (billed at the input price). ``None`` returns this table.
        """
        if overrides is None:
            return self
        if isinstance(overrides, (str, os.PathLike)):
            overrides = _read_overrides(overrides)
        if not isinstance(overrides, Mapping):
            raise ValueError(f"pricing overrides must be a mapping or a JSON file path, got {overrides!r}")
        merged = dict(self._models)
        for model, entry in overrides.items():
            key = _table_key(model)
            previous = merged.get(key)
            provider = previous.provider if previous is not None else _DEFAULT_PROVIDER
            merged[key] = _to_price(str(model), entry, provider)
        return PricingTable(merged, as_of=self._as_of)

    def lookup(self, model: str | None, provider: str | None = None) -> ModelPrice | None:
        """Return the price of ``model``, or ``None`` when the table does not know it.

        The name is lower-cased and stripped of provider prefixes ("openai/gpt-4o",
        "anthropic.claude-...", "models/gemini-2.5-pro"). An exact match wins; otherwise a
        trailing "-latest" is dropped and the longest table id that the name starts with,
        followed by "-", ":", "@" or the end, is used ("gpt-4o-mini-2024-07-18" is gpt-4o-mini).
        Model ids are unique across providers, so ``provider`` does not change the answer.
        """
        found: ModelPrice | None = self._cache.get(model, _MISS)
        if found is not _MISS:
            return found
        found = self._resolve(model)
        if len(self._cache) < _MAX_CACHED_LOOKUPS:
            self._cache[model] = found
        return found

    def _resolve(self, model: str | None) -> ModelPrice | None:
        if not isinstance(model, str):
            return None
        name = _normalise(model)
        if not name:
            return None
        exact = self._models.get(name)
        if exact is not None:
            return exact
        if name.endswith(_LATEST):
            name = name[: -len(_LATEST)]
            exact = self._models.get(name)
            if exact is not None:
                return exact
        for key in self._keys:
            if name.startswith(key) and (len(name) == len(key) or name[len(key)] in _BOUNDARY):
                return self._models[key]
        return None

    def cost(
        self,
        model: str | None,
        provider: str | None = None,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float | None:
        """Return the cost in USD, rounded to 10 decimal places, or ``None`` for an unknown model.

        ``input_tokens`` is the total prompt size, including ``cache_read_tokens`` and
        ``cache_write_tokens``. The uncached remainder is billed at the input price, cache reads
        and writes at their own prices (the input price where the model has none) and output
        tokens at the output price. Negative or missing counts are treated as 0.
        """
        price = self.lookup(model, provider)
        if price is None:
            return None
        cache_read = max(cache_read_tokens or 0, 0)
        cache_write = max(cache_write_tokens or 0, 0)
        uncached = max((input_tokens or 0) - cache_read - cache_write, 0)
        read_price = price.input if price.cache_read is None else price.cache_read
        write_price = price.input if price.cache_write is None else price.cache_write
        total = (
            uncached * price.input
            + cache_read * read_price
            + cache_write * write_price
            + max(output_tokens or 0, 0) * price.output
        )
        return round(total / _PER_TOKENS, 10)

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.lookup(model) is not None

    def __len__(self) -> int:
        return len(self._models)

    def __repr__(self) -> str:
        return f"PricingTable({len(self._models)} models, as_of={self._as_of!r})"


@functools.lru_cache(maxsize=1)
def _bundled_table() -> PricingTable:
    resource = importlib.resources.files(__package__ or "trodo_trace._internal.core").joinpath("pricing.json")
    data = json.loads(resource.read_text(encoding="utf-8"))
    return PricingTable(data["models"], as_of=data.get("as_of"))
