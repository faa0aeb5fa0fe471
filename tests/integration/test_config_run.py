"""``lens-fast run CONFIG`` and ``lens-fast validate`` against lens' mock endpoint."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import yaml
from lens_cli import cli

from lens.mock.process import MockProcess

SEED = Path(__file__).parents[3] / "shared" / "seed-config-example.yaml"
if not SEED.exists():
    SEED = Path(__file__).parents[2] / "examples" / "seed.yaml"


@pytest.fixture(scope="module")
def mock():
    with MockProcess(ttft_ms=5, itl_ms=1, capture=5000) as m:
        yield m


def measured(mock) -> list[dict]:
    """Return the mock's captured requests without the probes (negative request ids)."""
    return [r for r in mock.requests() if int(r["request_id"] or -1) >= 0]


def good(url: str) -> dict:
    return {"providers": [{"name": "openai", "endpoint": url,
                           "auth": {"type": "bearer", "token": "${LENS_TEST_KEY}"},
                           "models": ["m1"]}],
            "workload": {"scenarios": [{"name": "s", "requests": 4, "concurrency": 2,
                                        "prompt": {"template": "Hi {{x}}",
                                                   "variables": {"x": ["a", "b"]}}}],
                         "request_params": {"max_tokens": 4}},
            "execution": {"max_concurrency": 8, "cores": 1},
            "output": {"export": [{"format": "json", "path": "r_{timestamp}.json"}]}}


def test_seed_example_runs_as_written(mock, tmp_path, monkeypatch):
    text = SEED.read_text().replace("https://api.openai.com/v1", mock.url)
    text = text.replace("${LENS_ENDPOINT:-http://127.0.0.1:8000/v1}", mock.url)
    f = tmp_path / "seed.yaml"
    f.write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    mock.clear_requests()
    assert cli("validate", str(f)) == 0
    assert mock.requests() == []
    assert cli("run", str(f), "--output", "out", "--no-progress", "--cores", "1") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    [sc] = summary["scenarios"]
    assert sc["name"] == "high_concurrency"
    assert [(r["provider"], r["model"], r["counts"]["ok"]) for r in sc["results"]] == [
        ("openai", "gpt-4-turbo-preview", 100), ("openai", "gpt-3.5-turbo", 100)]
    [j] = list((tmp_path / "results").glob("bench_*.json"))
    [c] = list((tmp_path / "results").glob("bench_*.csv"))
    assert json.loads(j.read_text())["scenarios"][0]["results"][1]["model"] == "gpt-3.5-turbo"
    rows = pcsv.read_csv(c).to_pandas()
    rows = rows[~rows["warmup"]]
    assert len(rows) == 200 and set(rows["model"]) == {"gpt-4-turbo-preview", "gpt-3.5-turbo"}
    assert set(rows["scenario"]) == {"high_concurrency"}
    reqs = mock.requests()
    assert len(reqs) >= 200
    r = reqs[-1]
    assert r["headers"]["authorization"] == "Bearer sk-test"
    assert r["json"]["messages"][0]["content"] == "What is the capital of France?"
    assert r["json"]["max_tokens"] == 500 and r["json"]["temperature"] == 0.7


def test_features_dataset_synthetic_overrides_exports(mock, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LENS_TEST_KEY", "k1")
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"prompt": f"DSP{i}"}) + "\n"
                                              for i in range(30)))
    cfg = good(mock.url)
    cfg["providers"][0]["models"] = ["m1", "m2"]
    cfg["providers"][0]["auth"] = {"type": "header", "header": "x-key", "token": "${LENS_TEST_KEY}"}
    cfg["workload"]["scenarios"] = [
        {"name": "ds", "requests": 6, "concurrency": 2,
         "prompt": {"dataset": "d.jsonl", "output_tokens": {"dist": "uniform", "min": 2,
                                                            "max": 5}}},
        {"name": "syn", "requests": 5, "rps": 50, "arrival": "poisson",
         "prompt": {"synthetic": {"input_tokens": 20, "output_tokens": 3}},
         "request_params": {"temperature": 0.1, "extra": {"top_p": 0.9}}},
    ]
    cfg["output"]["export"] = [{"format": "parquet", "path": "x/{scenario}.parquet"},
                               {"format": "csv", "path": "x/all.csv"},
                               {"format": "html", "path": "x/{scenario}.html"}]
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(cfg))
    mock.clear_requests()
    assert cli("run", str(f), "--output", "out", "--no-progress", "--seed", "5",
               "--format", "parquet,json,html") == 0
    reqs = measured(mock)                 # without the start-up probe of each run
    assert len(reqs) == 2 * 6 + 2 * 5
    assert all(r["headers"]["x-key"] == "k1" for r in reqs)
    ds = [r["json"] for r in reqs if r["json"]["messages"][0]["content"].startswith("DSP")]
    assert len(ds) == 12 and all(2 <= j["max_tokens"] <= 5 for j in ds)
    syn = [r["json"] for r in reqs if not r["json"]["messages"][0]["content"].startswith("DSP")]
    assert all(j["max_tokens"] == 3 and j["temperature"] == 0.1 and j["top_p"] == 0.9
               for j in syn)
    t = pq.read_table(tmp_path / "x" / "ds.parquet").to_pandas()
    assert set(t["model"]) == {"m1", "m2"} and set(t["scenario"]) == {"ds"}
    assert len(pcsv.read_csv(tmp_path / "x" / "all.csv").to_pandas()) >= 22
    # html: one report per scenario of exactly its runs, and the whole run's report.html
    ds_html = (tmp_path / "x" / "ds.html").read_text()
    assert "ds--openai--m1" in ds_html and "ds--openai--m2" in ds_html
    assert "syn--openai" not in ds_html
    assert "syn--openai--m2" in (tmp_path / "x" / "syn.html").read_text()
    whole = (tmp_path / "out" / "report.html").read_text()
    assert "ds · openai · m1" in whole and "syn · openai · m2" in whole
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [sc["name"] for sc in s["scenarios"]] == ["ds", "syn"]
    assert s["scenarios"][0]["results"][0]["target"]["tokenizer"].startswith("approximation")
    # the pool is reproducible from the seed: a second run sends the same prompts
    first = sorted(j["messages"][0]["content"] for j in ds)
    mock.clear_requests()
    assert cli("run", str(f), "--output", "out2", "--no-progress", "--seed", "5") == 0
    again = sorted(r["json"]["messages"][0]["content"] for r in measured(mock)
                   if r["json"]["messages"][0]["content"].startswith("DSP"))
    assert again == first


def _set(path: str, value):
    """Return a mutation that sets a dotted/indexed key path (value None deletes it)."""
    def apply(d):
        keys = path.replace("[", ".").replace("]", "").split(".")
        for k in keys[:-1]:
            d = d[int(k)] if k.isdigit() else d.setdefault(k, {})
        last = keys[-1]
        if value is _DEL:
            del d[last]
        else:
            d[int(last) if last.isdigit() else last] = value
    return apply


_DEL = object()
S0 = "workload.scenarios[0]"

# (mutation or raw text, parts every one of which the message must hold)
BROKEN = [
    (_set(f"{S0}.concurency", 3), [f"{S0}.concurency", "unknown key", "did you mean 'concurrency'"]),
    (_set("workload.request_param", {}), ["workload.request_param", "did you mean 'request_params'"]),
    (_set("providers[0].modles", ["x"]), ["providers[0].modles", "did you mean 'models'"]),
    (_set(f"{S0}.requests", "ten"), [f"{S0}.requests", "found 'ten'", "expected an integer >= 1"]),
    (_set(f"{S0}.requests", 0), [f"{S0}.requests", "found 0", "expected an integer >= 1"]),
    (_set(f"{S0}.concurrency", 2.5), [f"{S0}.concurrency", "found 2.5", "an integer >= 1"]),
    (_set(f"{S0}.rps", -5), [f"{S0}.rps", "not both", "remove rps or concurrency"]),
    (lambda d: (d["workload"]["scenarios"][0].pop("concurrency"),
                d["workload"]["scenarios"][0].update(rps=-5)),
     [f"{S0}.rps", "found -5", "expected a number > 0", "use concurrency for closed-loop"]),
    (lambda d: (d["workload"]["scenarios"][0].pop("concurrency"),
                d["workload"]["scenarios"][0].update(rps=5, arrival="possion")),
     [f"{S0}.arrival", "found 'possion'", "did you mean 'poisson'"]),
    (_set(f"{S0}.duration", "ten minutes"), [f"{S0}.duration", "found 'ten minutes'",
                                              "a duration like 30s"]),
    (_set("providers[0].auth.token", "${LENS_NOT_SET_VAR}"),
     ["providers[0].auth.token", "LENS_NOT_SET_VAR is not set", "${LENS_NOT_SET_VAR:-value}"]),
    (_set("providers[0].auth.type", "basic"), ["providers[0].auth.type", "found 'basic'",
                                               "one of bearer, header, query"]),
    (_set("providers[0].name", "openia"), ["providers[0].name", "found 'openia'",
                                           "did you mean 'openai'"]),
    (_set("providers[0].models", []), ["providers[0].models", "found an empty list",
                                       "at least one entry"]),
    (_set("providers[0].endpoint", "localhost:8000"), ["providers[0].endpoint",
                                                       "http:// or https:// base URL"]),
    (_set("output.export[0].format", "xml"), ["output.export[0].format", "found 'xml'",
                                              "one of json, csv, parquet, html"]),
    (_set("output.influx", {"url": "http://localhost:8086"}),
     ["output.influx", "found 'neither db nor bucket'", "db (InfluxDB 1.x)"]),
    (_set("output.influx", {"url": "localhost:8086", "db": "x"}),
     ["output.influx.url", "an http:// or https:// URL"]),
    (_set("output.prometheus_port", 70000), ["output.prometheus_port", "found 70000",
                                             "a port 1…65535"]),
    (_set("output.pushgate", "http://x:9091"), ["output.pushgate", "did you mean 'pushgateway'"]),
    (_set("output.export[0].path", "r_{date}.json"), ["output.export[0].path",
                                                      "{date} is not one"]),
    (_set(f"{S0}.prompt", {"dataset": "missing.jsonl"}),
     [f"{S0}.prompt.dataset", "cannot read the dataset", "No such file"]),
    (_set(f"{S0}.prompt", {"dataset": "bad.jsonl"}),
     [f"{S0}.prompt.dataset", "line 2 is not valid JSON"]),
    (_set(f"{S0}.prompt", {"dataset": "bad.json"}), [f"{S0}.prompt.dataset",
                                                     "is not valid JSON", "ShareGPT"]),
    (_set(f"{S0}.prompt", {"template": "Hi {{who}}"}),
     [f"{S0}.prompt.variables", "a value for {{who}}"]),
    (_set(f"{S0}.prompt", {"synthetic": {"input_tokens": {"dist": "gauss"}}}),
     [f"{S0}.prompt.synthetic.input_tokens.dist", "found 'gauss'",
      "one of fixed, uniform, normal, empirical"]),
    (_set(f"{S0}.prompt", {"template": "a", "dataset": "d.jsonl"}),
     [f"{S0}.prompt", "exactly one of template, dataset, synthetic, text"]),
    (_set("workload.request_params.stream", False),
     ["workload.request_params.stream", "found False", "expected true", "streaming"]),
    (_set("workload.request_params.temperature", 3),
     ["workload.request_params.temperature", "found 3", "<= 2"]),
    (_set("workload.request_params.ignore_eos", True),
     ["providers[0]", "--ignore-eos is a self-hosted server's option"]),
    (_set("execution.max_concurrency", 1),
     [f"{S0}.concurrency", "at most execution.max_concurrency (1)"]),
    (_set("execution.retry", {"max_attempts": 0}),
     ["execution.retry.max_attempts", "found 0", "an integer >= 1"]),
    (_set("execution.rate_limit", {"rps": 3}), ["execution.rate_limit.rps", "unknown key",
                                                "requests_per_s"]),
    (lambda d: d["workload"]["scenarios"].append(dict(d["workload"]["scenarios"][0])),
     ["workload.scenarios[1].name", "a name no other scenario has"]),
    (_set("workload", _DEL), ["workload: missing"]),
    ("providers: [\n  - name: openai\n   bad indent", ["not valid YAML at line"]),
]


@pytest.mark.parametrize("mutate,parts", BROKEN, ids=[str(i) for i in range(len(BROKEN))])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_broken_configs(mock, tmp_path, monkeypatch, capsys, command, mutate, parts):
    assert len(BROKEN) >= 20
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LENS_TEST_KEY", "k")
    monkeypatch.delenv("LENS_NOT_SET_VAR", raising=False)
    (tmp_path / "d.jsonl").write_text('{"prompt": "a"}\n')
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{oops\n')
    (tmp_path / "bad.json").write_text('[{"conversations": ')
    f = tmp_path / "broken.yaml"
    if isinstance(mutate, str):
        f.write_text(mutate)
    else:
        cfg = copy.deepcopy(good(mock.url))
        mutate(cfg)
        f.write_text(yaml.safe_dump(cfg))
    mock.clear_requests()
    args = (command, str(f)) + (("--output", "out", "--no-progress") if command == "run" else ())
    assert cli(*args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ConfigError: broken.yaml: "), err
    assert "\n" not in err
    for p in parts:
        assert p in err, (p, err)
    assert mock.requests() == []
    assert not (tmp_path / "out").exists()
