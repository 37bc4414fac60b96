"""The bundled pricing table covers the models this project's provider tests, docs and README name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trodo_trace._internal.core.pricing import PricingTable

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    *sorted((ROOT / "tests").glob("test_providers_*.py")),
    ROOT / "tests" / "provider_fakes.py",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "README.md",
]
NAMED = re.compile(r"""\b(?:model|MODEL)\s*[=:]\s*["']([A-Za-z0-9._:/-]+)["']""")


#: A model the page prices itself, with a pricing override ({"my-finetune": {"input": ...}}).
OVERRIDDEN = re.compile(r"""["']([A-Za-z0-9._:/-]+)["']\s*:\s*\{\s*["']input["']""")


def _named_models() -> list[tuple[str, str]]:
    found = set()
    for path in SOURCES:
        if path.exists():
            text = path.read_text(encoding="utf-8")
            own_prices = set(OVERRIDDEN.findall(text))
            for name in NAMED.findall(text):
                if name not in own_prices:
                    found.add((path.relative_to(ROOT).as_posix(), name))
    return sorted(found)


def test_some_models_are_named():
    """The scan finds the models of the provider tests and docs (so the check below checks something)."""
    names = {name for _, name in _named_models()}
    assert {
        "gpt-4o-mini",
        "gpt-4.1",
        "text-embedding-3-small",
        "claude-haiku-4-5",
        "claude-sonnet-4-6",
    } <= names


@pytest.mark.parametrize(("source", "model"), _named_models())
def test_every_named_model_is_priced(source, model):
    """Each model a test, doc or the README names has a price (or the page prices it), so its spans get a cost."""
    assert PricingTable.bundled().lookup(model) is not None, f"{model} (named in {source}) has no price"


@pytest.mark.parametrize(
    ("model", "prices"),
    [
        ("claude-sonnet-4-6", (3.0, 15.0, 0.3, 3.75)),
        ("claude-opus-4-6", (5.0, 25.0, 0.5, 6.25)),
        ("claude-sonnet-5-5", (2.0, 10.0, 0.1, 2.5)),
        ("claude-haiku-5-5", (0.1, 0.5, 0.01, 0.125)),
        ("gpt-5.4", (2.5, 15.0, 0.25, None)),
        ("gpt-5.4-mini-2026-03-17", (0.75, 4.5, 0.075, None)),
    ],
)
def test_current_models(model, prices):
    """Current models of both providers are priced on their own rows (not by a shorter model's prefix)."""
    price = PricingTable.bundled().lookup(model)
    assert (price.input, price.output, price.cache_read, price.cache_write) == prices
