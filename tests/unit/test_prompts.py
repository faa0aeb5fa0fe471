"""Prompt pools: templates, JSONL and ShareGPT datasets, length distributions, tokenizer."""
from __future__ import annotations

import time

import numpy as np
import orjson
import pytest

from lens.errors import ConfigError
from lens.workload.prompts import (
    APPROXIMATION,
    PromptPool,
    Tokenizer,
    approx_tokens,
    draw_lengths,
    load_dataset,
    load_tokenizer,
)


def sharegpt_file(path, n, seed=1):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 400, size=n)          # words → characters vary per prompt
    data = [{"id": str(i), "conversations": [
        {"from": "human", "value": "word " * int(k)},
        {"from": "gpt", "value": "reply " * int(k // 2 + 1)}]} for i, k in enumerate(lengths)]
    path.write_bytes(orjson.dumps(data))
    return [approx_tokens("word " * int(k)) for k in lengths]


def test_template_fixed_and_list_variables_are_seeded():
    spec = {"template": "What is {{q}} in {{ lang }}?",
            "variables": {"q": ["a", "b", "c"], "lang": "French"}}
    a = PromptPool.build(spec, 50, 7, Tokenizer())
    b = PromptPool.build(spec, 50, 7, Tokenizer())
    assert a == b and a.source == "template" and a.tokenizer == APPROXIMATION
    assert set(a.prompts) == {f"What is {x} in French?" for x in "abc"}
    assert PromptPool.build(spec, 50, 8, Tokenizer()).prompts != a.prompts


def test_sharegpt_10k_loads_fast_and_matches_the_file_distribution(tmp_path):
    f = tmp_path / "sg.json"
    file_lengths = sharegpt_file(f, 10_000)
    t = time.perf_counter()
    pool = PromptPool.build({"dataset": str(f)}, 2000, 3, Tokenizer())
    assert time.perf_counter() - t < 1.0
    assert len(load_dataset(str(f)).prompts) == 10_000
    q = [10, 25, 50, 75, 90]
    want, got = np.percentile(file_lengths, q), np.percentile(pool.input_tokens, q)
    assert np.all(np.abs(got - want) <= 0.08 * want.max())
    assert PromptPool.build({"dataset": str(f)}, 2000, 3, Tokenizer()).prompts == pool.prompts


def test_sharegpt_output_lengths_from_the_dataset(tmp_path):
    f = tmp_path / "sg.json"
    sharegpt_file(f, 100)
    pool = PromptPool.build({"dataset": {"path": str(f)}, "output_tokens": "dataset"}, 20, 0,
                            Tokenizer())
    for p, m in zip(pool.prompts, pool.max_tokens, strict=True):
        words = p.count("word")
        assert m == approx_tokens("reply " * (words // 2 + 1))


def test_jsonl_with_a_named_field(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "hello there"}\n\n{"text": "general kenobi"}\n')
    pool = PromptPool.build({"dataset": {"path": str(f), "field": "text"}}, 10, 0, Tokenizer())
    assert set(pool.prompts) == {"hello there", "general kenobi"}


@pytest.mark.parametrize("content,name,message", [
    ('{"prompt": "a"}\nnot json\n', "d.jsonl", "line 2 is not valid JSON"),
    ('{"text": "a"}\n', "d.jsonl", "line 1 has no string field 'prompt'"),
    ("[1, 2", "d.json", "is not valid JSON"),
    ('{"a": 1}', "d.json", "is not ShareGPT JSON (found a dict"),
    ("[]", "d.json", "holds no prompts"),
])
def test_bad_datasets(tmp_path, content, name, message):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(ConfigError, match="x.dataset: ") as e:
        load_dataset(str(f), where="x.dataset")
    assert message in str(e.value)


def test_missing_dataset(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the dataset .*No such file"):
        load_dataset(str(tmp_path / "nope.jsonl"))


@pytest.mark.parametrize("spec,check", [
    (17, lambda a: np.all(a == 17)),
    ({"dist": "fixed", "value": 5}, lambda a: np.all(a == 5)),
    ({"dist": "uniform", "min": 10, "max": 20},
     lambda a: a.min() == 10 and a.max() == 20 and abs(a.mean() - 15) < 0.3),
    ({"dist": "normal", "mean": 200, "std": 20},
     lambda a: abs(a.mean() - 200) < 1.5 and abs(a.std() - 20) < 1.5),
    ({"dist": "normal", "mean": 5, "std": 50, "min": 1, "max": 8},
     lambda a: a.min() >= 1 and a.max() <= 8),
    ({"dist": "empirical", "values": [10, 100], "weights": [3, 1]},
     lambda a: set(np.unique(a)) == {10, 100} and abs((a == 10).mean() - 0.75) < 0.02),
])
def test_length_distributions(spec, check):
    a = draw_lengths(spec, 20_000, np.random.default_rng(0))
    assert a.dtype == np.int64 and a.min() >= 1 and check(a)


def test_synthetic_pool_lengths_and_output_lengths():
    spec = {"synthetic": {"input_tokens": {"dist": "uniform", "min": 20, "max": 40},
                          "output_tokens": {"dist": "empirical", "values": [8, 16]}}}
    pool = PromptPool.build(spec, 200, 1, Tokenizer())
    words = [len(p.split()) for p in pool.prompts]
    assert min(words) == 20 and max(words) == 40
    assert set(pool.max_tokens) == {8, 16}


def test_tokenizer_missing_package_says_how_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "tokenizers":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ConfigError, match="pip install tokenizers"):
        load_tokenizer("/some/tokenizer.json")
    assert load_tokenizer(None).description == APPROXIMATION


def test_a_real_tokenizer_counts_and_fits():
    class Enc:
        def __init__(self, ids):
            self.ids = ids

    class FakeHF:                         # the part of tokenizers.Tokenizer that is used
        def encode(self, text, add_special_tokens=False):
            return Enc(list(range(len(text.split()))))

        def encode_batch(self, texts, add_special_tokens=False):
            return [self.encode(t) for t in texts]

        def decode(self, ids):
            return " ".join("w" for _ in ids)

    tok = Tokenizer(FakeHF(), "tok.json")
    assert tok.description == "huggingface: tok.json"
    assert tok.count_many(["a b c", "d"]) == [3, 1]
    pool = PromptPool.build({"synthetic": {"input_tokens": 12}}, 5, 0, tok)
    assert pool.input_tokens == (12,) * 5
