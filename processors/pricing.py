"""Cost of an LLM call from the maintained genai-prices table, by provider and model.

``genai_prices.calc_price`` costs ~130 µs a call (measured here), far too much per event, so
the model's rates are looked up once per (provider, model, day) and the arithmetic is done
here when the rates are flat per million tokens; tiered or otherwise complex prices fall
back to the library. Prompt tokens include cached ones (OpenAI's convention): cached tokens
are priced at the cache-read rate, the rest at the input rate. Reasoning tokens are part of
the output tokens (OpenAI's ``completion_tokens`` includes them) and priced as output.

An unknown model prices to ``None``; callers count it, never fail on it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from genai_prices import Usage, calc_price

__all__ = ["Price", "price_call", "warm_prices"]

_MILLION = Decimal(1_000_000)
_PROBE = Usage(input_tokens=1, output_tokens=1)


class Price:
    """The cost of one call, split like Humanloop's prompt_cost / output_cost."""

    __slots__ = ("output", "prompt")

    def __init__(self, prompt: float, output: float) -> None:
        self.prompt = prompt
        self.output = output

    @property
    def total(self) -> float:
        return self.prompt + self.output


@lru_cache(maxsize=4096)
def _model_price(provider: str | None, model: str, day: date) -> Any | None:
    at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    try:
        found = calc_price(
            _PROBE, model_ref=model, provider_id=provider, genai_request_timestamp=at
        )
    except LookupError:
        return None
    return found.model_price


def warm_prices() -> None:
    """Load genai-prices' bundled price data now: it loads on the first lookup otherwise,
    and a worker's first window then waited for it (~0.2-0.4 s on a 2-core machine)."""
    _model_price("openai", "gpt-4o", datetime.now(UTC).date())


def _flat_rate(value: Any) -> Decimal | None:
    return value if isinstance(value, Decimal) else None


def price_call(
    provider: str | None,
    model: str | None,
    *,
    prompt_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    at: datetime,
) -> Price | None:
    """The price of a call, or None when the model (or provider) is not in the table."""
    if not model:
        return None
    return _price(provider or None, model, at.date(), prompt_tokens, output_tokens, cached_tokens)


# Calls repeat (one model, a day, the usual token counts; a log's every version prices its
# call again): a pure function of its arguments, so a cache is exact.
@lru_cache(maxsize=1 << 16)
def _price(
    provider: str | None,
    model: str,
    day: date,
    prompt_tokens: int,
    output_tokens: int,
    cached_tokens: int,
) -> Price | None:
    model_price = _model_price(provider, model, day)
    if model_price is None:
        return None
    cached = min(cached_tokens, prompt_tokens)
    rates = (model_price.input_mtok, model_price.cache_read_mtok, model_price.output_mtok)
    flat = [_flat_rate(rate) for rate in rates]
    if all(rate is not None or raw is None for rate, raw in zip(flat, rates, strict=True)):
        input_rate, cache_rate, output_rate = (rate or Decimal(0) for rate in flat)
        if rates[1] is None:
            cache_rate = input_rate  # no cache-read price: cached tokens cost full input
        prompt = ((prompt_tokens - cached) * input_rate + cached * cache_rate) / _MILLION
        output = output_tokens * output_rate / _MILLION
    else:  # tiered prices: let the library compute them
        calc = model_price.calc_price(
            Usage(input_tokens=prompt_tokens, cache_read_tokens=cached, output_tokens=output_tokens)
        )
        prompt, output = calc["input_price"], calc["output_price"]
    return Price(float(round(Decimal(prompt), 12)), float(round(Decimal(output), 12)))
