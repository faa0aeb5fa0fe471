"""Prompts of a scenario: templates, datasets (JSONL, ShareGPT), synthetic lengths; token counts.

A scenario's prompts are a *pool* built once in the parent, before any load: a list of
prompt texts, each with its input token count and the ``max_tokens`` its requests ask for.
Requests go round-robin over the pool (their bytes are built once per prompt). Every draw
comes from ``numpy.random.default_rng(seed)``, so a seed gives the same pool every time.

Sources:

- template: ``"What is {{question}}?"`` with ``variables`` whose values are fixed strings or
  lists (one value drawn per prompt).
- dataset: JSONL with one object per line and a prompt field (``prompt`` by default), or
  ShareGPT JSON (a list of ``{"conversations": [{"from": "human", "value": ...}, ...]}``: the
  first human turn is the prompt, the first reply after it gives the output length when the
  dataset's own lengths are asked for).
- synthetic: prompts of N tokens, N drawn from a length distribution.

Length distributions (input and output lengths): an integer (fixed), or a mapping
``{dist: fixed, value}``, ``{dist: uniform, min, max}``, ``{dist: normal, mean, std}``
(clipped to [min, max], default [1, mean + 4 std]), ``{dist: empirical, values, weights}``.

Token counts use a local Hugging Face tokenizer (``tokenizer.json``, the ``tokenizers``
package) when one is given, else the approximation of 4 characters per token (the usual rule
of thumb for English and GPT- or Llama-style vocabularies; within about 20% on prose).
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from lens.errors import ConfigError

__all__ = ["APPROXIMATION", "DISTS", "PromptPool", "Tokenizer", "approx_tokens",
           "draw_lengths", "load_dataset", "load_tokenizer", "synthetic_text",
           "template_variables"]

APPROXIMATION = "approximation: 4 characters per token"
DISTS = ("fixed", "uniform", "normal", "empirical")

# Common English words; each is about one token in GPT-style and Llama-style vocabularies.
TEMPLATE_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

_WORDS = np.array((
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father "
    "power hour game line end member law car city community name president team minute idea "
    "kid body information back parent face others level office door health person art war "
    "history party result change morning reason research girl guy moment air teacher force "
    "education").split())


def approx_tokens(text: str) -> int:
    """Approximate a text's token count: 4 characters a token, at least 1."""
    return max(1, (len(text) + 3) // 4)


class Tokenizer:
    """Count tokens: a Hugging Face ``tokenizers`` tokenizer, or the approximation."""

    def __init__(self, hf: Any = None, path: str | None = None):
        self._hf = hf
        self.path = path
        #: What the summary says was used.
        self.description = f"huggingface: {path}" if hf is not None else APPROXIMATION

    def count(self, text: str) -> int:
        """Return the token count of ``text``."""
        if self._hf is None:
            return approx_tokens(text)
        return max(1, len(self._hf.encode(text, add_special_tokens=False).ids))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Return the token counts of many texts (one batch call with a real tokenizer)."""
        if self._hf is None:
            return [approx_tokens(t) for t in texts]
        return [max(1, len(e.ids)) for e in
                self._hf.encode_batch(list(texts), add_special_tokens=False)]

    def fit(self, text: str, n: int) -> str:
        """Return ``text`` cut to ``n`` tokens (a real tokenizer only; else unchanged)."""
        if self._hf is None:
            return text
        ids = self._hf.encode(text, add_special_tokens=False).ids
        return self._hf.decode(ids[:n]) if len(ids) > n else text


def load_tokenizer(path: str | None, where: str = "--tokenizer") -> Tokenizer:
    """Return the tokenizer at ``path`` (a tokenizer.json, or a directory holding one).

    None gives the approximation. ConfigError when ``tokenizers`` is missing or the file
    cannot be read.
    """
    if path is None:
        return Tokenizer()
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:
        raise ConfigError(f"{where} {path} needs the tokenizers package: pip install tokenizers "
                          "(or pip install 'lens-fast[tokenizer]'); leave it out to use the "
                          f"{APPROXIMATION}") from None
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    try:
        return Tokenizer(HFTokenizer.from_file(str(p)), str(path))
    except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exception
        raise ConfigError(f"{where} cannot load a Hugging Face tokenizer from {str(p)!r} ({e}); "
                          "give a tokenizer.json or the directory of one") from None


# ------------------------------------------------------------------- distributions
def draw_lengths(spec: int | Mapping[str, Any], n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` lengths (int64, each >= 1) from a validated length spec."""
    if isinstance(spec, int):
        return np.full(n, max(1, spec), np.int64)
    d = spec.get("dist", "fixed")
    if d == "fixed":
        out = np.full(n, spec["value"], np.int64)
    elif d == "uniform":
        out = rng.integers(spec["min"], spec["max"] + 1, size=n)
    elif d == "normal":
        lo = spec.get("min", 1)
        hi = spec.get("max", spec["mean"] + 4 * spec["std"])
        out = np.clip(np.rint(rng.normal(spec["mean"], spec["std"], size=n)), lo, hi)
    else:  # empirical
        w = np.asarray(spec.get("weights") or [1] * len(spec["values"]), np.float64)
        out = rng.choice(np.asarray(spec["values"], np.int64), size=n, p=w / w.sum())
    return np.maximum(out.astype(np.int64), 1)


def synthetic_text(n_tokens: int, rng: np.random.Generator) -> str:
    """Return a text of about ``n_tokens`` tokens: seeded common words, one token each."""
    return " ".join(_WORDS[rng.integers(0, len(_WORDS), size=max(1, n_tokens))])


# ------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class Dataset:
    """Prompts of a dataset file, and the text of each one's reply where the file has it."""

    path: str
    prompts: list[str]
    replies: list[str | None]


def _sharegpt(data: Any, path: str, where: str) -> Dataset:
    if not isinstance(data, list):
        raise ConfigError(f"{where}: {path} is not ShareGPT JSON (found a "
                          f"{type(data).__name__} at the top; expected a list of "
                          "{\"conversations\": [...]} objects)")
    prompts, replies = [], []
    for conv in data:
        turns = conv.get("conversations") if isinstance(conv, dict) else None
        if not isinstance(turns, list):
            continue
        for i, t in enumerate(turns):
            if isinstance(t, dict) and t.get("from") in ("human", "user") and \
                    isinstance(t.get("value"), str) and t["value"]:
                nxt = turns[i + 1] if i + 1 < len(turns) else None
                prompts.append(t["value"])
                replies.append(nxt.get("value") if isinstance(nxt, dict) and
                               isinstance(nxt.get("value"), str) else None)
                break
    return Dataset(path, prompts, replies)


def load_dataset(path: str, fmt: str | None = None, field: str = "prompt",
                 where: str = "dataset", base: Path | None = None) -> Dataset:
    """Read a JSONL or ShareGPT dataset; ConfigError naming ``where`` when it is unusable.

    ``fmt`` is ``jsonl`` or ``sharegpt``; None picks by extension (``.jsonl`` → jsonl,
    otherwise sharegpt). Relative paths are taken from ``base`` (the config file's folder).
    """
    p = Path(path)
    if base is not None and not p.is_absolute():
        p = base / p
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read the dataset {str(p)!r} ({e.strerror}); "
                          "expected a readable JSONL or ShareGPT JSON file") from None
    fmt = fmt or ("jsonl" if p.suffix == ".jsonl" else "sharegpt")
    if fmt == "sharegpt":
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise ConfigError(f"{where}: {str(p)!r} is not valid JSON ({e}); expected ShareGPT "
                              "JSON (a list of conversations), or format: jsonl") from None
        ds = _sharegpt(data, str(p), where)
    else:
        prompts, replies = [], []
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise ConfigError(f"{where}: {str(p)!r} line {n} is not valid JSON; expected "
                                  "one JSON object per line") from None
            value = obj.get(field) if isinstance(obj, dict) else None
            if not isinstance(value, str):
                raise ConfigError(f"{where}: {str(p)!r} line {n} has no string field "
                                  f"{field!r}; expected objects like {{\"{field}\": \"...\"}} "
                                  "(name another field with field:)")
            prompts.append(value)
            reply = obj.get("output") if isinstance(obj, dict) else None
            replies.append(reply if isinstance(reply, str) else None)
        ds = Dataset(str(p), prompts, replies)
    if not ds.prompts:
        raise ConfigError(f"{where}: {str(p)!r} holds no prompts; expected at least one")
    return ds


# ------------------------------------------------------------------- the pool
@dataclass(frozen=True)
class PromptPool:
    """The prompts of a scenario with their input token counts and per-prompt max_tokens."""

    prompts: tuple[str, ...]
    input_tokens: tuple[int, ...]
    max_tokens: tuple[int, ...] | None      # None: the plan's max_tokens for every prompt
    source: str                             # template | dataset | synthetic | text
    tokenizer: str                          # Tokenizer.description

    @classmethod
    def build(cls, spec: Mapping[str, Any], n: int, seed: int, tokenizer: Tokenizer,
              base: Path | None = None, where: str = "prompt") -> PromptPool:
        """Build a pool of ``n`` prompts from a validated ``prompt`` section."""
        rng = np.random.default_rng(seed)
        out_spec = spec.get("output_tokens")
        replies: list[str | None] | None = None
        if "template" in spec:
            source = "template"
            prompts = [_render(spec["template"], spec.get("variables") or {}, rng)
                       for _ in range(n)]
        elif "dataset" in spec:
            source = "dataset"
            d = spec["dataset"]
            d = {"path": d} if isinstance(d, str) else d
            ds = load_dataset(d["path"], d.get("format"), d.get("field", "prompt"),
                              f"{where}.dataset", base)
            idx = rng.choice(len(ds.prompts), size=n, replace=n > len(ds.prompts))
            prompts = [ds.prompts[i] for i in idx]
            replies = [ds.replies[i] for i in idx]
        elif "synthetic" in spec:
            source = "synthetic"
            lengths = draw_lengths(spec["synthetic"]["input_tokens"], n, rng)
            prompts = [tokenizer.fit(synthetic_text(int(k), rng), int(k)) for k in lengths]
            out_spec = spec["synthetic"].get("output_tokens", out_spec)
        else:
            source = "text"
            # one prompt; as many copies as output lengths to draw
            prompts = [spec["text"]] * (n if out_spec is not None else 1)
        counts = tokenizer.count_many(prompts)
        max_tokens = None
        if out_spec == "dataset":
            if replies is None or any(r is None for r in replies):
                raise ConfigError(f"{where}.output_tokens: 'dataset' needs a dataset whose "
                                  "prompts all have replies; give a length or distribution")
            max_tokens = tuple(tokenizer.count_many(replies))    # type: ignore[arg-type]
        elif out_spec is not None:
            max_tokens = tuple(int(x) for x in draw_lengths(out_spec, len(prompts), rng))
        return cls(tuple(prompts), tuple(counts), max_tokens, source, tokenizer.description)


def template_variables(template: str) -> list[str]:
    """Return the names of the ``{{variables}}`` of a template, in order."""
    return TEMPLATE_VARIABLE.findall(template)


def _render(template: str, variables: Mapping[str, Any], rng: np.random.Generator) -> str:
    chosen = {name: (v[int(rng.integers(0, len(v)))] if isinstance(v, list) else v)
              for name, v in variables.items()}
    return TEMPLATE_VARIABLE.sub(lambda m: str(chosen[m.group(1)]), template)


