"""Model prices (USD per million tokens) and the cost of a request.

The bundled table is ``prices.toml`` next to this module: current public models of OpenAI
(also used for Azure OpenAI), Anthropic, Google Gemini and Cohere, with the date it was
compiled and its sources. The user overrides it per model with ``--price MODEL=IN/OUT``
(repeatable) and ``--pricing FILE`` (JSON, TOML or YAML); ``--price`` wins over the file,
the file over the table.

A request costs ``input_tokens × input / 1e6 + output_tokens × output / 1e6``. Worked
example: gpt-4o at $2.50 / $10.00, 1,000 prompt tokens and 500 output tokens cost
0.0025 + 0.005 = $0.0075.

Lookup tries the model as given, then shorter names with a date, version or ``-preview``
suffix removed, one at a time (``gemini-2.5-flash-preview-05-20`` → ``…-preview`` →
``gemini-2.5-flash``); never a prefix match, so ``gpt-4o-mini`` can never get ``gpt-4o``'s
price. A model without a price gets ``None``, which outputs show as "no price", never as $0.
"""
from __future__ import annotations

import functools
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from lens.errors import ConfigError

__all__ = ["AS_OF", "PRICE_TABLES", "Price", "Prices", "bundled_table", "candidates",
           "load_pricing_file", "lookup", "parse_price_option"]

#: Which table of prices.toml a provider's models are priced from; self-hosted providers
#: have none (their cost is the user's hardware) unless the user gives prices.
PRICE_TABLES = {"openai": "openai", "azure": "openai", "anthropic": "anthropic",
                "gemini": "gemini", "cohere": "cohere"}

_SUFFIXES = [re.compile(p) for p in (
    r"@[\w.-]+$",                 # Vertex AI snapshots: claude-opus-4-5@20251101
    r"-\d{4}-\d{2}-\d{2}$",       # gpt-4o-2024-08-06
    r"-\d{8}$",                   # claude-sonnet-4-5-20250929
    r"-\d{2}-\d{4}$",             # command-r7b-12-2024, …-preview-09-2025
    r"-\d{2}-\d{2}$",             # gemini-2.5-flash-preview-05-20
    r"-\d{3,4}$",                 # gemini-1.5-pro-002, gpt-3.5-turbo-0125
    r"-(preview|latest|exp)$",
)]
_VENDOR_PREFIXES = ("models/", "openai/", "anthropic/", "google/", "gemini/", "cohere/",
                    "azure/")


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens, and where the figures came from."""

    input_per_mtok: float
    output_per_mtok: float
    source: str = ""

    def cost_usd(self, input_tokens: float, output_tokens: float) -> float:
        """Return the cost of this many tokens in USD."""
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6

    def as_dict(self) -> dict[str, Any]:
        """Return the price as the outputs store it (``targets[i]["price"]``)."""
        return {"input_per_mtok": self.input_per_mtok, "output_per_mtok": self.output_per_mtok,
                "source": self.source}


#: User prices: (provider or None for any provider, model) → Price.
Prices = dict[tuple[str | None, str], Price]


@functools.cache
def bundled_table() -> dict[str, Any]:
    """Return prices.toml as a dict (read once)."""
    with open(Path(__file__).with_name("prices.toml"), "rb") as f:
        return tomllib.load(f)


#: The date the bundled table was compiled.
AS_OF: str = bundled_table()["as_of"]


def candidates(model: str) -> list[str]:
    """Return the names a model is looked up under, most specific first."""
    name = model.strip().lower()
    for prefix in _VENDOR_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    out = [name]
    while True:
        for pat in _SUFFIXES:
            shorter = pat.sub("", name)
            if shorter != name and shorter:
                name = shorter
                out.append(name)
                break
        else:
            return out


def lookup(provider: str, model: str, overrides: Prices | None = None) -> Price | None:
    """Return the price of ``model`` served by ``provider``, or None when it has none."""
    names = candidates(model)
    table = PRICE_TABLES.get(provider, provider)
    if overrides:
        lowered = {(p, m.lower()): v for (p, m), v in overrides.items()}
        for name in names:
            for key in ((table, name), (provider, name), (None, name)):
                if key in lowered:
                    return lowered[key]
    bundled = bundled_table().get(PRICE_TABLES.get(provider, ""), {})
    for name in names:
        if name in bundled:
            inp, out = bundled[name]
            return Price(float(inp), float(out), f"lens-fast pricing table (as of {AS_OF})")
    return None


def _price(value: Any, source: str, what: str) -> Price:
    """Convert one user price (``"IN/OUT"``, ``[IN, OUT]`` or a mapping) to a Price."""
    inp = out = None
    if isinstance(value, str):
        a, sep, b = value.partition("/")
        if sep:
            inp, out = a, b
    elif isinstance(value, list | tuple) and len(value) == 2:
        inp, out = value
    elif isinstance(value, Mapping):
        inp = value.get("input_per_mtok", value.get("input"))
        out = value.get("output_per_mtok", value.get("output"))
    try:
        p = Price(float(inp), float(out), source)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a price like \"2.50/10.00\" (USD per million input/"
                          f"output tokens), [2.5, 10] or {{\"input\": 2.5, \"output\": 10}} "
                          f"(got {value!r})") from None
    if not (p.input_per_mtok >= 0 and p.output_per_mtok >= 0) or \
            float("inf") in (p.input_per_mtok, p.output_per_mtok):
        raise ConfigError(f"{what} must be finite and >= 0 (got {value!r})")
    return p


def parse_price_option(text: str) -> tuple[str, Price]:
    """Parse ``--price MODEL=IN/OUT``; return (model, Price)."""
    model, sep, value = text.rpartition("=")
    if not sep or not model.strip() or "/" not in value:
        raise ConfigError(f"--price must be MODEL=IN/OUT in USD per million tokens, e.g. "
                          f"--price gpt-4o=2.50/10.00 (got {text!r})")
    return model.strip(), _price(value, "--price", f"--price {text!r}")


def _is_price(value: Any) -> bool:
    if isinstance(value, str | list | tuple):
        return True
    return isinstance(value, Mapping) and bool(
        {"input", "output", "input_per_mtok", "output_per_mtok"} & set(value))


def load_pricing_file(path: str | os.PathLike[str]) -> Prices:
    """Read a ``--pricing`` file: ``{MODEL: PRICE}`` or ``{PROVIDER: {MODEL: PRICE}}``.

    JSON (``.json``), TOML (``.toml``) or YAML (``.yaml``/``.yml``, needs PyYAML). A PRICE is
    ``"IN/OUT"``, ``[IN, OUT]`` or ``{"input": IN, "output": OUT}`` (``input_per_mtok`` /
    ``output_per_mtok`` also work), in USD per million tokens. A copy of the bundled
    prices.toml is a valid file (its ``as_of`` and ``sources`` keys are skipped).
    """
    p = os.fspath(path)
    source = f"--pricing {p}"
    try:
        raw = Path(p).read_bytes()
    except OSError as e:
        raise ConfigError(f"--pricing cannot read {p!r}: {e.strerror}") from None
    ext = os.path.splitext(p)[1].lower()
    try:
        if ext == ".json":
            data = orjson.loads(raw)
        elif ext == ".toml":
            data = tomllib.loads(raw.decode())
        elif ext in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ConfigError("--pricing with a YAML file needs PyYAML (pip install "
                                  "pyyaml); or give the prices as JSON or TOML") from None
            data = yaml.safe_load(raw)
        else:
            raise ConfigError(f"--pricing {p!r}: give a .json, .toml, .yaml or .yml file")
    except (orjson.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--pricing {p!r} is not valid {ext[1:].upper()}: {e}") from None
    except ConfigError:
        raise
    except Exception as e:  # yaml.YAMLError without importing yaml at module level
        raise ConfigError(f"--pricing {p!r} is not valid YAML: {e}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"--pricing {p!r} must hold a mapping of model names to prices")
    out: Prices = {}
    for key, value in data.items():
        if key in ("as_of", "sources"):
            continue
        if _is_price(value):
            out[(None, str(key))] = _price(value, source, f"{p}: {key}")
        elif isinstance(value, Mapping):
            for model, v in value.items():
                out[(str(key), str(model))] = _price(v, source, f"{p}: {key}.{model}")
        else:
            raise ConfigError(f"{p}: {key} must be a price like \"2.50/10.00\" or a table "
                              f"of them (got {value!r})")
    return out
