"""The cost of an LLM call: its token counts priced with the runtime's pricing table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import attrs

if TYPE_CHECKING:
    from .pricing import PricingTable


def add_llm_cost(pricing: PricingTable, attributes: dict[str, Any]) -> None:
    """Write ``trodo.llm.cost`` into an LLM span's ``attributes`` when its model and tokens are priced."""
    tokens_in = attributes.get(attrs.USAGE_INPUT)
    tokens_out = attributes.get(attrs.USAGE_OUTPUT)
    if tokens_in is None and tokens_out is None:
        return
    model = attributes.get(attrs.RESPONSE_MODEL) or attributes.get(attrs.REQUEST_MODEL)
    if not model:
        return
    cost = pricing.cost(
        model,
        attributes.get(attrs.PROVIDER),
        input_tokens=tokens_in or 0,
        output_tokens=tokens_out or 0,
        cache_read_tokens=attributes.get(attrs.OI_CACHE_READ) or 0,
        cache_write_tokens=attributes.get(attrs.OI_CACHE_WRITE) or 0,
    )
    if cost is not None:
        attributes[attrs.LLM_COST] = cost
