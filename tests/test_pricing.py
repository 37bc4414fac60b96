"""Tests for trodo_trace._internal.core.pricing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from trodo_trace._internal.core.pricing import ModelPrice, PricingTable

PROVIDERS = {"openai", "anthropic", "google", "mistral", "cohere"}
PROVIDERS |= {"amazon", "meta", "deepseek", "xai", "groq", "together"}  # Bedrock, OpenAI-compatible hosts
EMBEDDING_MODELS = {
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "mistral-embed",
    "codestral-embed",
    "embed-english-v3.0",
}
EMBEDDING_MODELS |= {"gemini-embedding-001", "titan-embed-text-v2"}
EMBEDDING_MODELS |= {
    "embed-v4.0",
    "embed-multilingual-v3.0",
    "embed-english-light-v3.0",
    "embed-multilingual-light-v3.0",
}
REQUIRED_MODELS = {
    "openai": [
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "gpt-4o",
        "gpt-4o-mini",
        "o1",
        "o1-mini",
        "o3",
        "o3-mini",
        "o4-mini",
        "gpt-4-turbo",
        "gpt-4",
        "gpt-3.5-turbo",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
    ],
    "anthropic": [
        "claude-opus-4-5",
        "claude-opus-4-1",
        "claude-opus-4",
        "claude-sonnet-4-5",
        "claude-sonnet-4",
        "claude-3-7-sonnet",
        "claude-3-5-sonnet",
        "claude-haiku-4-5",
        "claude-3-5-haiku",
        "claude-3-opus",
        "claude-3-haiku",
    ],
    "google": [
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.0-flash",
        "gemini-2.0-flash-lite",
        "gemini-1.5-pro",
        "gemini-1.5-flash",
    ],
    "mistral": [
        "mistral-large",
        "mistral-medium",
        "mistral-small",
        "codestral",
        "open-mistral-nemo",
        "ministral-8b",
        "ministral-3b",
        "pixtral-large",
        "mistral-embed",
    ],
    "cohere": ["command-a", "command-r-plus", "command-r", "command-r7b", "embed-english-v3.0"],
}


@pytest.fixture
def table() -> PricingTable:
    return PricingTable.bundled()


def test_bundled_table_has_date(table: PricingTable) -> None:
    """The bundled table carries an ISO date saying when its prices were checked."""
    assert table.as_of is not None
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table.as_of)


def test_bundled_table_is_loaded_once() -> None:
    """PricingTable.bundled() returns the same cached table on every call."""
    assert PricingTable.bundled() is PricingTable.bundled()


def test_bundled_prices_are_valid(table: PricingTable) -> None:
    """Every bundled model has a known provider and positive prices (embeddings bill no output)."""
    assert len(table) >= 50
    for model, price in table.models.items():
        assert price.provider in PROVIDERS, model
        assert price.input > 0, model
        if model in EMBEDDING_MODELS:
            assert price.output == 0, model
        else:
            assert price.output > 0, model
        for cached in (price.cache_read, price.cache_write):
            assert cached is None or cached > 0, model


@pytest.mark.parametrize(
    ("provider", "model"), [(p, m) for p, models in REQUIRED_MODELS.items() for m in models]
)
def test_required_models_are_present(table: PricingTable, provider: str, model: str) -> None:
    """Each model the table promises to cover is present under the right provider."""
    assert table.models[model].provider == provider


def test_anthropic_models_have_cache_prices(table: PricingTable) -> None:
    """Anthropic entries price cache reads below input and cache writes above input."""
    for model in REQUIRED_MODELS["anthropic"]:
        price = table.models[model]
        assert price.cache_read is not None and price.cache_read < price.input, model
        assert price.cache_write is not None and price.cache_write > price.input, model


def test_bundled_json_matches_documented_shape() -> None:
    """pricing.json has as_of, unit and a models mapping with the five price fields."""
    import trodo_trace._internal.core.pricing as pricing_module

    path = Path(pricing_module.__file__).with_name("pricing.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["unit"] == "USD per 1M tokens"
    for model, entry in data["models"].items():
        assert set(entry) == {"provider", "input", "output", "cache_read", "cache_write"}, model


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4o", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-mini", "gpt-4.1-mini"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),
        ("models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("gemini-2.0-flash-lite-001", "gemini-2.0-flash-lite"),
        ("mistral-large-latest", "mistral-large"),
        ("mistral-small-2503", "mistral-small"),
        ("command-r-plus-08-2024", "command-r-plus"),
        ("command-r7b-12-2024", "command-r7b"),
        ("o1-mini-2024-09-12", "o1-mini"),
    ],
)
def test_lookup_normalises_names(table: PricingTable, name: str, expected: str) -> None:
    """Provider prefixes, version suffixes and '-latest' resolve to the base model's price."""
    assert table.lookup(name) == table.models[expected]


@pytest.mark.parametrize("name", ["gpt-4ox", "claude-3-5-sonnetx", "llama-3-70b", "gpt", "", None])
def test_lookup_requires_a_name_boundary(table: PricingTable, name: str | None) -> None:
    """A name that only shares a prefix with a model id, or no name at all, is unknown."""
    assert table.lookup(name) is None


def test_lookup_caches_results(table: PricingTable) -> None:
    """Repeated lookups of the same name return the identical object."""
    first = table.lookup("gpt-4o-2024-11-20")
    assert first is not None
    assert table.lookup("gpt-4o-2024-11-20") is first
    assert table.lookup("gpt-4o") is first


def test_unknown_model_costs_none_not_zero(table: PricingTable) -> None:
    """The cost of an unknown model is None, never 0.0."""
    assert table.cost("my-private-model", input_tokens=1000, output_tokens=1000) is None
    assert table.cost(None, input_tokens=1000) is None


def test_gpt_4o_cost_arithmetic(table: PricingTable) -> None:
    """1000 input and 500 output gpt-4o tokens cost 1000*2.5/1e6 + 500*10/1e6 USD."""
    assert table.cost("gpt-4o", input_tokens=1000, output_tokens=500) == 0.0075


def test_zero_tokens_cost_zero_for_known_model(table: PricingTable) -> None:
    """A known model with no tokens costs exactly 0.0."""
    assert table.cost("gpt-4o") == 0.0


def test_anthropic_cache_arithmetic(table: PricingTable) -> None:
    """Cache reads and writes are carved out of input_tokens and billed at their own prices."""
    cost = table.cost(
        "claude-sonnet-4-5-20250929",
        "anthropic",
        input_tokens=10_000,
        cache_read_tokens=6_000,
        cache_write_tokens=2_000,
        output_tokens=1_000,
    )
    # 2000 uncached * 3 + 6000 read * 0.30 + 2000 written * 3.75 + 1000 out * 15, per 1M tokens.
    assert cost == 0.0303


def test_cache_tokens_fall_back_to_input_price(table: PricingTable) -> None:
    """Cache reads and writes on a model without cache prices are billed as plain input."""
    plain = table.cost("gpt-4", input_tokens=1_000)
    cached = table.cost("gpt-4", input_tokens=1_000, cache_read_tokens=400, cache_write_tokens=100)
    assert plain == cached == 0.03


def test_openai_cached_input_is_discounted(table: PricingTable) -> None:
    """OpenAI cached prompt tokens are billed at the cached-input price."""
    cost = table.cost("gpt-4o", input_tokens=1_000_000, cache_read_tokens=400_000)
    assert cost == pytest.approx(600_000 * 2.5 / 1e6 + 400_000 * 1.25 / 1e6)
    assert cost == 2.0


def test_cost_is_rounded_to_ten_places(table: PricingTable) -> None:
    """Costs are rounded to 10 decimal places."""
    cost = table.cost("gpt-5-nano", input_tokens=1)
    assert cost == 0.0000000500
    assert cost == round(cost, 10)


def test_override_dict_wins_and_adds_models(table: PricingTable) -> None:
    """Overrides replace existing prices, add new models and leave the original table untouched."""
    custom = table.with_overrides(
        {
            "gpt-4o": {"input": 1.0, "output": 2.0},
            "My-Model": {"provider": "acme", "input": 0.5, "output": 0.25, "cache_read": 0.05},
        }
    )
    assert custom.cost("gpt-4o-2024-08-06", input_tokens=1_000_000, output_tokens=1_000_000) == 3.0
    assert custom.lookup("gpt-4o") == ModelPrice("openai", 1.0, 2.0, None, None)
    assert custom.lookup("my-model") == ModelPrice("acme", 0.5, 0.25, 0.05, None)
    assert custom.lookup("gpt-4o-mini") == table.lookup("gpt-4o-mini")
    assert custom.as_of == table.as_of
    assert table.lookup("gpt-4o") == ModelPrice("openai", 2.5, 10.0, 1.25, None)
    assert table.lookup("my-model") is None


def test_override_accepts_model_price(table: PricingTable) -> None:
    """A ModelPrice value is accepted as an override."""
    custom = table.with_overrides({"house-llm": ModelPrice("acme", 1.0, 1.0)})
    assert custom.cost("house-llm", input_tokens=500_000, output_tokens=500_000) == 1.0


def test_override_none_returns_same_table(table: PricingTable) -> None:
    """with_overrides(None) returns the table unchanged."""
    assert table.with_overrides(None) is table


def test_override_from_models_json_file(table: PricingTable, tmp_path: Path) -> None:
    """A JSON file holding just the models mapping overrides prices."""
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"claude-3-haiku": {"input": 0.1, "output": 0.2}}), encoding="utf-8")
    custom = table.with_overrides(path)
    assert custom.lookup("claude-3-haiku-20240307") == ModelPrice("anthropic", 0.1, 0.2, None, None)


def test_override_from_full_pricing_json_file(table: PricingTable, tmp_path: Path) -> None:
    """A JSON file shaped like pricing.json, given as a str path, adds its models."""
    path = tmp_path / "pricing.json"
    document = {
        "as_of": "2030-01-01",
        "unit": "USD per 1M tokens",
        "models": {"acme-1": {"provider": "acme", "input": 4, "output": 8, "cache_read": None}},
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    custom = table.with_overrides(str(path))
    assert custom.cost("acme-1-2030", input_tokens=1_000_000, output_tokens=1_000_000) == 12.0


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"input": -1.0, "output": 1.0}, "input"),
        ({"input": 1.0, "output": "cheap"}, "output"),
        ({"input": 1.0}, "output"),
        ({"input": 1.0, "output": 1.0, "cache_read": -0.5}, "cache_read"),
        ({"input": 1.0, "output": 1.0, "cache_write": float("nan")}, "cache_write"),
        ({"input": True, "output": 1.0}, "input"),
    ],
)
def test_invalid_override_raises_naming_model_and_field(
    table: PricingTable, entry: dict[str, object], field: str
) -> None:
    """An invalid override price raises ValueError naming the model and the bad field."""
    with pytest.raises(ValueError, match=rf"'bad-model'.*'{field}'"):
        table.with_overrides({"bad-model": entry})


def test_invalid_override_entry_type_raises(table: PricingTable) -> None:
    """An override that is not a mapping of prices raises ValueError naming the model."""
    with pytest.raises(ValueError, match="'bad-model'"):
        table.with_overrides({"bad-model": 3.0})  # type: ignore[dict-item]


def test_invalid_override_file_raises(table: PricingTable, tmp_path: Path) -> None:
    """An overrides file that is not valid JSON raises ValueError."""
    path = tmp_path / "broken.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        table.with_overrides(path)


def test_table_from_plain_mapping() -> None:
    """A table built from plain mappings prices and normalises like the bundled one."""
    custom = PricingTable({"Foo": {"provider": "acme", "input": 2, "output": 4}})
    assert custom.as_of is None
    assert custom.cost("acme/foo-v2", input_tokens=1_000_000, output_tokens=500_000) == 4.0
