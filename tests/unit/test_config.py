"""Config files: loading, ${VAR} expansion, validation, flags overriding, plans, examples."""
from __future__ import annotations

from pathlib import Path

import pytest

from lens.config import build_plans, load_config, parse_config
from lens.engine.command import config_overrides
from lens.engine.requests import RequestFactory
from lens.errors import ConfigError

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))
KEYS = {v: "k" for v in ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "ANTHROPIC_API_KEY",
                         "GEMINI_API_KEY", "CO_API_KEY")}


def base(**scenario) -> dict:
    return {"providers": [{"name": "openai", "endpoint": "http://127.0.0.1:9/v1",
                           "models": ["m1", "m2"]}],
            "workload": {"scenarios": [{"name": "s", "requests": 10, "concurrency": 2,
                                        **scenario}]}}


def test_every_example_validates(monkeypatch):
    assert len(EXAMPLES) >= 11
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    names = set()
    for f in EXAMPLES:
        plans = build_plans(load_config(f))
        assert plans, f
        names.add(plans[0].provider)
    assert names == {"openai", "azure", "anthropic", "gemini", "cohere", "tgi", "vllm",
                     "sglang", "llamacpp", "generic"}


def test_env_expansion_defaults_and_numbers():
    data = base()
    data["providers"][0]["endpoint"] = "http://${HOST:-127.0.0.1:9}/v1"
    data["workload"]["scenarios"][0]["requests"] = "${N}"
    cfg = parse_config(data, "c.yaml", {"N": "25"})
    assert cfg.targets[0].endpoint == "http://127.0.0.1:9/v1"
    assert cfg.scenarios[0].requests == 25


def test_json_config(tmp_path):
    import json

    f = tmp_path / "c.json"
    f.write_text(json.dumps(base()))
    assert load_config(f).scenarios[0].name == "s"
    f.write_text("{")
    with pytest.raises(ConfigError, match="c.json: not valid JSON"):
        load_config(f)


def test_one_plan_per_scenario_provider_model_in_order():
    data = base()
    data["workload"]["scenarios"].append({"name": "t", "rps": 5, "arrival": "poisson",
                                          "duration": "2s"})
    data["providers"].append({"name": "vllm", "endpoint": "http://127.0.0.1:9/v1",
                              "models": ["q"]})
    plans = build_plans(parse_config(data, "c.yaml", {}))
    assert [(p.scenario, p.provider, p.model) for p in plans] == [
        ("s", "openai", "m1"), ("s", "openai", "m2"), ("s", "vllm", "q"),
        ("t", "openai", "m1"), ("t", "openai", "m2"), ("t", "vllm", "q")]
    assert plans[3].rps == 5 and plans[3].arrival == "poisson" and plans[3].duration_s == 2


def test_request_params_scenario_overrides_and_plan_fields():
    data = base(request_params={"max_tokens": 7, "extra": {"top_p": 0.5}})
    data["workload"]["request_params"] = {"max_tokens": 50, "temperature": 0.3,
                                          "extra": {"seed": 1}, "timeout": 30}
    data["execution"] = {"max_concurrency": 4, "cores": 1,
                         "retry": {"max_attempts": 3, "initial_backoff_ms": 100},
                         "rate_limit": {"requests_per_minute": 600}}
    p = build_plans(parse_config(data, "c.yaml", {}))[0]
    assert (p.max_tokens, p.temperature, p.extra) == (7, 0.3, {"seed": 1, "top_p": 0.5})
    assert p.timeouts.total_s == 30 and p.max_inflight == 4 and p.cores == 1
    assert p.retry == {"max_attempts": 3, "initial_backoff_ms": 100}
    assert p.rate_limit == {"requests_per_minute": 600}
    body = RequestFactory(p).build(1, 0).split(b"\r\n\r\n", 1)[1]
    assert b'"temperature":0.3' in body and b'"top_p":0.5' in body and b'"max_tokens":7' in body


def test_flags_override_the_file():
    given = {"requests", "rps", "max_tokens", "url", "model"}
    o = {"requests": 3, "rps": 9.0, "max_tokens": 4, "url": "http://h:1/v1/", "model": "x"}
    plans = build_plans(parse_config(base(), "c.yaml", {}), config_overrides(o, given))
    assert len(plans) == 1
    p = plans[0]
    assert (p.requests, p.rps, p.concurrency, p.max_tokens, p.url, p.model) == \
        (3, 9.0, None, 4, "http://h:1/v1", "x")
    with pytest.raises(ConfigError, match="--provider cannot be combined with a config"):
        config_overrides({"provider": "vllm"}, {"provider"})


@pytest.mark.parametrize("auth,header,path_tail", [
    ({"type": "bearer", "token": "T"}, b"authorization: Bearer T", b"/chat/completions "),
    ({"type": "header", "header": "X-Key", "token": "T"}, b"x-key: T", b"/chat/completions "),
    ({"type": "query", "param": "api_key", "token": "T"}, None,
     b"/chat/completions?api_key=T "),
])
def test_auth_styles(auth, header, path_tail):
    data = base()
    data["providers"][0]["auth"] = auth
    req = RequestFactory(build_plans(parse_config(data, "c.yaml", {}))[0]).build(1, 0)
    head = req.split(b"\r\n\r\n")[0]
    assert path_tail in head.split(b"\r\n")[0]
    if header is not None:
        assert header in head
    assert b"Bearer" not in head or auth["type"] == "bearer"


def test_public_plan_keeps_no_token_and_no_pool():
    data = base(prompt={"synthetic": {"input_tokens": 10}})
    data["providers"][0]["auth"] = {"type": "bearer", "token": "sekret"}
    p = build_plans(parse_config(data, "c.yaml", {}))[0]
    pub = p.public()
    assert "sekret" not in repr(pub) and pub["prompts_count"] == 10 and "prompts" not in pub


def test_per_prompt_max_tokens_reach_the_bodies():
    data = base(prompt={"text": "hi", "output_tokens": {"dist": "empirical",
                                                       "values": [3, 9]}})
    p = build_plans(parse_config(data, "c.yaml", {}))[0]
    f = RequestFactory(p)
    outs = {b.split(b'"max_tokens":')[1].split(b",")[0] for b in f.bodies}
    assert outs == {b"3", b"9"}
