"""What a run cost: list prices per million tokens, by model name prefix.

The table holds public list prices (USD) when this was written; prices change, so a
provider configuration may set its own prices, which win. A model that matches nothing
has no known cost (None), shown as "—" rather than a made-up zero.
"""

from __future__ import annotations

from decimal import Decimal

# model-name prefix: (input, output) USD per 1M tokens. Longest prefix wins.
PRICES_PER_MTOK: dict[str, tuple[Decimal, Decimal]] = {
    "offline": (Decimal("0"), Decimal("0")),
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "gpt-4o": (Decimal("2.50"), Decimal("10.00")),
    "gpt-4.1-nano": (Decimal("0.10"), Decimal("0.40")),
    "gpt-4.1-mini": (Decimal("0.40"), Decimal("1.60")),
    "gpt-4.1": (Decimal("2.00"), Decimal("8.00")),
    "gpt-3.5-turbo": (Decimal("0.50"), Decimal("1.50")),
    "o3-mini": (Decimal("1.10"), Decimal("4.40")),
    "o4-mini": (Decimal("1.10"), Decimal("4.40")),
}
MILLION = Decimal(1_000_000)
QUANT = Decimal("0.000001")


def price_of(model: str) -> tuple[Decimal, Decimal] | None:
    best = None
    for prefix, price in PRICES_PER_MTOK.items():
        if model.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, price)
    return best[1] if best else None


def cost_of(
    *,
    model: str,
    tokens_in: int,
    tokens_out: int,
    override: tuple[Decimal | None, Decimal | None] = (None, None),
) -> Decimal | None:
    """USD for the tokens; `override` is the provider's own (input, output) price."""
    if override[0] is not None and override[1] is not None:
        price = (override[0], override[1])
    else:
        price = price_of(model)
    if price is None:
        return None
    total = (price[0] * tokens_in + price[1] * tokens_out) / MILLION
    return total.quantize(QUANT)
