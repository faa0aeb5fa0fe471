"""Pricing: the bundled table, lookup and normalisation, user prices, cost in every output."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from lens._core import FLAG_DROPPED, FLAG_WARMUP
from lens.engine.command import resolve_price
from lens.engine.plan import RunPlan
from lens.engine.runner import target_info
from lens.errors import ConfigError
from lens.output import ParquetSink, RunResults, build_summary, empty_rows, render_table
from lens.output.table import format_usd
from lens.providers.pricing import (
    AS_OF,
    PRICE_TABLES,
    Price,
    bundled_table,
    candidates,
    load_pricing_file,
    lookup,
    parse_price_option,
)

T0 = 5_000_000_000_000
MS = 1_000_000


def test_bundled_table_is_dated_and_well_formed():
    table = bundled_table()
    assert dt.date.fromisoformat(AS_OF) <= dt.date.today()
    for provider in ("openai", "anthropic", "gemini", "cohere"):
        assert table[provider], provider
        assert provider in table["sources"]
        for model, price in table[provider].items():
            assert model == model.lower() and len(price) == 2, model
            assert 0 <= price[0] <= price[1], model     # output never cheaper than input
    assert set(PRICE_TABLES) == {"openai", "azure", "anthropic", "gemini", "cohere"}
    assert "azure" in table["sources"]


def test_price_worked_example_of_the_docstring():
    p = lookup("openai", "gpt-4o")
    assert (p.input_per_mtok, p.output_per_mtok) == (2.5, 10.0)
    assert p.cost_usd(1000, 500) == pytest.approx(0.0075)
    assert p.source == f"lens-fast pricing table (as of {AS_OF})"


@pytest.mark.parametrize("model,names", [
    ("gpt-4o-2024-08-06", ["gpt-4o-2024-08-06", "gpt-4o"]),
    ("claude-sonnet-4-5-20250929", ["claude-sonnet-4-5-20250929", "claude-sonnet-4-5"]),
    ("gemini-2.5-flash-preview-05-20", ["gemini-2.5-flash-preview-05-20",
                                        "gemini-2.5-flash-preview", "gemini-2.5-flash"]),
    ("models/gemini-2.5-pro", ["gemini-2.5-pro"]),
    ("claude-opus-4-5@20251101", ["claude-opus-4-5@20251101", "claude-opus-4-5"]),
    ("Command-R7B-12-2024", ["command-r7b-12-2024", "command-r7b"]),
    ("gpt-3.5-turbo-0125", ["gpt-3.5-turbo-0125", "gpt-3.5-turbo"]),
    ("gpt-4o-mini", ["gpt-4o-mini"]),
])
def test_candidates_strip_one_suffix_at_a_time(model, names):
    assert candidates(model) == names


@pytest.mark.parametrize("provider,model,price", [
    ("openai", "gpt-4o-2024-08-06", (2.5, 10.0)),
    ("openai", "gpt-4o-mini-2024-07-18", (0.15, 0.6)),     # never gpt-4o's price
    ("azure", "gpt-4o", (2.5, 10.0)),                      # Azure uses OpenAI's table
    ("anthropic", "claude-sonnet-4-5-20250929", (3.0, 15.0)),
    ("anthropic", "claude-3-5-haiku-latest", (0.8, 4.0)),
    ("gemini", "gemini-2.5-flash-preview-05-20", (0.3, 2.5)),
    ("gemini", "models/gemini-2.5-pro", (1.25, 10.0)),
    ("cohere", "command-r-08-2024", (0.15, 0.6)),
    ("cohere", "command-r-03-2024", (0.5, 1.5)),           # its own price, not command-r's
])
def test_lookup_normalises_snapshots(provider, model, price):
    p = lookup(provider, model)
    assert (p.input_per_mtok, p.output_per_mtok) == price


@pytest.mark.parametrize("provider,model", [
    ("openai", "lens-mock"), ("openai", "gpt-4"), ("anthropic", "gpt-4o"),
    ("vllm", "gpt-4o"), ("tgi", "anything"), ("generic", "claude-haiku-4-5"),
    ("openai", "gpt-4o-mini-tts"),
])
def test_unknown_models_have_no_price(provider, model):
    assert lookup(provider, model) is None


def test_user_prices_win_and_apply_to_any_provider():
    over = {(None, "gpt-4o"): Price(1, 2, "--price"),
            (None, "Qwen/Qwen3-8B"): Price(0.1, 0.2, "--price"),
            ("openai", "gpt-4o-mini"): Price(3, 4, "file")}
    assert lookup("openai", "gpt-4o-2024-08-06", over) == Price(1, 2, "--price")
    assert lookup("vllm", "qwen/qwen3-8b", over) == Price(0.1, 0.2, "--price")
    assert lookup("azure", "gpt-4o-mini", over) == Price(3, 4, "file")   # openai table
    assert lookup("anthropic", "gpt-4o-mini", over) is None
    assert lookup("openai", "gpt-4.1", over).input_per_mtok == 2.0       # falls through


def test_price_option():
    assert parse_price_option("gpt-4o=2.5/10") == ("gpt-4o", Price(2.5, 10.0, "--price"))
    assert parse_price_option("org/model:v1=0/0.5")[0] == "org/model:v1"
    for bad in ("gpt-4o", "gpt-4o=2.5", "=1/2", "m=a/b", "m=-1/2", "m=1/inf", "m=nan/1"):
        with pytest.raises(ConfigError, match="--price"):
            parse_price_option(bad)


@pytest.mark.parametrize("name,text", [
    ("p.json", '{"my-model": "0.5/1.5", "openai": {"gpt-4o": [1, 2]},'
               ' "m2": {"input": 3, "output": 4}}'),
    ("p.toml", '"my-model" = "0.5/1.5"\nm2 = {input_per_mtok = 3, output_per_mtok = 4}\n'
               '[openai]\n"gpt-4o" = [1, 2]\n'),
    ("p.yaml", "my-model: 0.5/1.5\nm2: {input: 3, output: 4}\nopenai:\n  gpt-4o: [1, 2]\n"),
])
def test_pricing_files(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    prices = load_pricing_file(path)
    src = f"--pricing {path}"
    assert prices == {(None, "my-model"): Price(0.5, 1.5, src), (None, "m2"): Price(3, 4, src),
                      ("openai", "gpt-4o"): Price(1, 2, src)}


def test_a_copy_of_the_bundled_table_is_a_pricing_file(tmp_path):
    from pathlib import Path

    import lens.providers.pricing as pricing

    copy = tmp_path / "prices.toml"
    copy.write_text(Path(pricing.__file__).with_name("prices.toml").read_text())
    prices = load_pricing_file(copy)
    assert prices[("anthropic", "claude-haiku-4-5")].output_per_mtok == 5.0


@pytest.mark.parametrize("name,text,words", [
    ("p.json", "{", "is not valid JSON"),
    ("p.json", "[1, 2]", "must hold a mapping"),
    ("p.json", '{"m": "cheap"}', "m must be a price like"),
    ("p.json", '{"m": 3}', "m must be a price like"),
    ("p.csv", "m,1,2", "give a .json, .toml, .yaml or .yml file"),
    ("p.toml", "m = [1, 2, 3]", "must be a price like"),
])
def test_bad_pricing_files(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_pricing_file(path)


def test_resolve_price_precedence(tmp_path):
    f = tmp_path / "p.json"
    f.write_text('{"gpt-4o": "1/2"}')
    assert resolve_price({}, "openai", "gpt-4o")["input_per_mtok"] == 2.5
    assert resolve_price({"pricing": str(f)}, "openai", "gpt-4o")["source"] == f"--pricing {f}"
    both = resolve_price({"pricing": str(f), "price": ("gpt-4o=7/8",)}, "openai", "gpt-4o")
    assert both == {"input_per_mtok": 7.0, "output_per_mtok": 8.0, "source": "--price"}
    assert resolve_price({}, "vllm", "m") is None
    with pytest.raises(ConfigError, match="--price names gpt4o, but the run's model is"):
        resolve_price({"price": ("gpt4o=1/2",)}, "openai", "gpt-4o")


def test_target_info_carries_the_price():
    info = target_info(RunPlan(url="https://api.anthropic.com", provider="anthropic",
                               model="claude-haiku-4-5"))
    assert info["provider"] == "anthropic" and "endpoint" not in info
    assert info["price"]["output_per_mtok"] == 5.0
    plan = RunPlan(url="http://h/v1", model="m", price={"input_per_mtok": 1,
                                                       "output_per_mtok": 2, "source": "x"})
    assert target_info(plan)["price"]["source"] == "x" and target_info(plan)["endpoint"] == "chat"
    assert target_info(RunPlan(url="http://h/v1"))["price"] is None


# ---- cost in rows, summary and table ----

PRICE = {"input_per_mtok": 2.5, "output_per_mtok": 10.0, "source": "test"}


def rows():
    """Four measured rows (ok, http 503, failed mid-stream after 200, dropped) + one warm-up."""
    r = empty_rows(5)
    r["request_id"] = np.arange(5)
    r["status"] = [200, 503, 200, 0, 200]
    r["error"] = [0, 7, 10, 12, 0]
    r["flags"][3] = FLAG_DROPPED
    r["flags"][4] = FLAG_WARMUP
    r["input_tokens"] = [1000, 1000, 2000, 0, 1000]
    r["output_tokens"] = [500, 0, 100, 0, 500]
    r["t_sched_ns"] = T0 + np.arange(5) * MS
    r["t_start_ns"] = r["t_sched_ns"]
    r["t_end_ns"] = r["t_start_ns"] + 50 * MS
    return r


def test_cost_per_row_in_parquet(tmp_path):
    with ParquetSink(tmp_path, T0, targets=[{"model": "gpt-4o", "price": PRICE}]) as sink:
        sink.write_rows(rows())
    cost = pq.read_table(tmp_path / "requests.parquet").column("cost_usd").to_pylist()
    assert cost == pytest.approx([0.0075, 0.0, 0.006, 0.0, 0.0075])
    with ParquetSink(tmp_path / "n", T0, targets=[{"model": "m", "price": None}]) as sink:
        sink.write_rows(rows())
    assert pq.read_table(tmp_path / "n" / "requests.parquet").column("cost_usd").null_count == 5


def test_cost_in_the_summary_and_the_table():
    res = RunResults(T0, targets=[{"provider": "openai", "model": "gpt-4o", "url": "u",
                                   "price": PRICE}])
    res.add_rows(rows())
    [result] = build_summary(res)["scenarios"][0]["results"]
    cost = result["cost"]
    # billed: the ok row and the one that failed after its 200 (not 503, dropped, warm-up)
    assert (cost["requests"], cost["input_tokens"], cost["output_tokens"]) == (2, 3000, 600)
    assert cost["usd_total"] == pytest.approx(0.0075 + 0.006)
    assert cost["usd_per_request_mean"] == pytest.approx(0.01350 / 2)
    assert cost["usd_per_1k_output_tokens"] == pytest.approx(0.0135 / 600 * 1000)
    assert cost["price"] == {"input_per_mtok": 2.5, "output_per_mtok": 10.0}
    assert cost["source"] == "test"
    assert "price" not in result["target"]
    console = Console(width=120, record=True)
    render_table(result, console)
    assert "cost  $0.0135 total · $0.00675 per request · $0.0225 per 1k output tokens" in \
        console.export_text()
    json.dumps(result)


def test_no_price_says_so_rather_than_zero():
    res = RunResults(T0, targets=[{"provider": "vllm", "model": "qwen", "url": "u",
                                   "price": None}])
    res.add_rows(rows())
    [result] = build_summary(res)["scenarios"][0]["results"]
    assert result["cost"] == {"price": None, "note": "no price for qwen"}
    console = Console(width=120, record=True)
    render_table(result, console)
    text = console.export_text()
    assert "cost  no price for qwen" in text and "$0" not in text


@pytest.mark.parametrize("usd,text", [(None, "-"), (0, "$0.00"), (0.000123, "$0.000123"),
                                      (0.0135, "$0.0135"), (1.234, "$1.23"),
                                      (12345.678, "$12,345.68")])
def test_format_usd(usd, text):
    assert format_usd(usd) == text
