"""Fuzzing the config loader: random YAML, random documents, and the example configs with one
key or value changed at random. Whatever the input, the loader returns a Config or raises one
ConfigError naming the file; it never raises anything else, and ``build_plans`` of a config
it accepted either plans or raises ConfigError.

The budget is fixed (``max_examples`` per test) so the suite's time stays bounded.
"""
from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lens.config import build_plans, load_config, parse_config
from lens.errors import ConfigError

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
ENV = {"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "a", "GEMINI_API_KEY": "g",
       "COHERE_API_KEY": "c", "AZURE_OPENAI_API_KEY": "z", "AZURE_OPENAI_ENDPOINT":
       "https://x.openai.azure.com", "LENS_ENDPOINT": "http://127.0.0.1:9/v1"}
KEYS = ["providers", "workload", "execution", "output", "name", "endpoint", "auth", "type",
        "token", "models", "scenarios", "requests", "duration", "concurrency", "rps", "arrival",
        "prompt", "template", "variables", "dataset", "synthetic", "input_tokens",
        "output_tokens", "request_params", "max_tokens", "temperature", "timeout", "retry",
        "max_attempts", "rate_limit", "requests_per_s", "export", "format", "path", "cores",
        "max_concurrency", "prometheus_port", "influx", "dist", "mean", "std", "min", "max"]
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

leaves = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
          | st.floats(allow_nan=True, allow_infinity=True)
          | st.text(max_size=30) | st.sampled_from(["${X}", "${OPENAI_API_KEY}", "${X:-5}",
                                                     "10s", "1h", "poisson", "bearer", "json",
                                                     "-1", "http://h:1/v1", "{{x}}", ""]))
documents = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5),
    max_leaves=40)


def check(data) -> None:
    """parse_config + build_plans: a Config/plans or a ConfigError, nothing else."""
    try:
        cfg = parse_config(data, "fuzz.yaml", env=ENV)
    except ConfigError as e:
        assert str(e).startswith("fuzz.yaml"), str(e)
        return
    try:
        build_plans(cfg)
    except ConfigError:
        pass


@FUZZ
@given(documents)
def test_random_documents(data):
    check(data)


@FUZZ
@given(st.dictionaries(st.sampled_from(["providers", "workload", "execution", "output"]),
                       documents, min_size=1, max_size=4))
def test_random_top_level_sections(data):
    check(data)


def _mutate(doc, draw):
    """Change one node of ``doc`` in place: replace a value, delete or rename a key."""
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append((node, k))
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                paths.append((node, i))
                walk(v, path + [i])

    walk(doc, [])
    if not paths:
        return doc
    parent, key = paths[draw(st.integers(0, len(paths) - 1))]
    action = draw(st.sampled_from(["replace", "delete", "rename"]))
    if action == "replace" or isinstance(parent, list):
        parent[key] = draw(documents)
    elif action == "delete":
        del parent[key]
    else:
        parent[draw(st.sampled_from(KEYS) | st.text(max_size=8))] = parent.pop(key)
    return doc


@FUZZ
@given(st.sampled_from(EXAMPLES), st.data())
def test_examples_with_one_random_change(example, data):
    doc = yaml.safe_load(example.read_text())
    check(_mutate(copy.deepcopy(doc), data.draw))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_random_file_contents(content):
    """Any bytes in a .yaml or .json file: a ConfigError naming the file, or a Config."""
    with tempfile.TemporaryDirectory() as d:
        for name in ("bench.yaml", "bench.json"):
            p = os.path.join(d, name)
            with open(p, "wb") as f:
                f.write(content.encode("utf-8", "surrogatepass") if isinstance(content, str)
                        else content)
            try:
                load_config(p, env=ENV)
            except ConfigError as e:
                assert name in str(e), str(e)
