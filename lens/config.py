"""Config files of ``lens-fast run CONFIG`` and ``lens-fast validate``: load, check, plan.

    cfg = load_config("bench.yaml")          # read, expand ${VAR}, validate → Config
    plans = build_plans(cfg)                 # one RunPlan per scenario × provider × model

The shape is the original design's (``docs/config.md`` has every key)::

    providers: [{name, endpoint, auth: {type, token}, models: [...]}]
    workload:  {scenarios: [{name, requests|duration, concurrency|rps, arrival, prompt}],
                request_params: {max_tokens, temperature, stream, timeout, extra}}
    execution: {max_concurrency, cores, retry, rate_limit}
    output:    {export: [{format, path}], prometheus_port, pushgateway,
                influx: {url, db | bucket + org, token}}

Strings expand ``${VAR}`` and ``${VAR:-default}`` from the environment. Every mistake raises
one ``ConfigError`` naming the file, the key path (``workload.scenarios[2].rps``), what was
found and what is expected; an unknown key gets the closest valid one suggested. Nothing here
does I/O beyond reading the file and, in ``build_plans``, its datasets and tokenizer.
"""
from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lens.errors import ConfigError

__all__ = ["EXPORT_FORMATS", "Config", "Export", "Scenario", "Target", "build_plans",
           "load_config", "parse_config"]

EXPORT_FORMATS = ("json", "csv", "parquet", "html")
AUTH_TYPES = ("bearer", "header", "query")
PATH_FIELDS = ("timestamp", "scenario")
POOL_DEFAULT = 1000

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


# ------------------------------------------------------------------- the checked config
@dataclass(frozen=True)
class Target:
    """One ``providers[i]`` entry."""

    index: int
    name: str
    endpoint: str | None
    models: tuple[str, ...]
    token: str | None = field(default=None, repr=False)
    auth: dict | None = None            # {"type", "header", "param"} without the token
    options: dict = field(default_factory=dict)    # api, api_version, deployment, ...


@dataclass(frozen=True)
class Scenario:
    """One ``workload.scenarios[i]`` entry, with the request parameters it runs with."""

    index: int
    name: str
    requests: int | None
    duration_s: float | None
    concurrency: int | None
    rps: float | None
    arrival: str
    burstiness: float | None
    prompt: dict | None
    params: dict                        # workload.request_params, then the scenario's
    warmup: int
    seed: int | None


@dataclass(frozen=True)
class Export:
    format: str
    path: str


@dataclass(frozen=True)
class Config:
    """A validated config file."""

    path: str
    targets: tuple[Target, ...]
    scenarios: tuple[Scenario, ...]
    max_concurrency: int | None = None
    cores: int | None = None
    retry: dict | None = None
    rate_limit: dict | None = None
    exports: tuple[Export, ...] = ()
    tokenizer: str | None = None
    seed: int = 0
    live: dict | None = None            # output.prometheus_port, .pushgateway, .influx
    ray: dict | None = None             # execution.ray: address, hosts, lead_s, shared_output

    @property
    def base(self) -> Path:
        """The folder relative dataset and tokenizer paths start from."""
        return Path(self.path).resolve().parent


# ------------------------------------------------------------------- errors
class _Checker:
    """Validation helpers that raise ConfigError in the one message format."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, path: str, found: Any, expected: str, hint: str = "") -> ConfigError:
        msg = f"{self.file}: {path}: found {_show(found)}; expected {expected}"
        return ConfigError(msg + (f"; {hint}" if hint else ""))

    def keys(self, obj: Any, path: str, allowed: tuple[str, ...],
             required: tuple[str, ...] = ()) -> dict:
        if not isinstance(obj, Mapping):
            raise self.fail(path or "(top level)", obj, "a mapping of " + ", ".join(allowed))
        for k in obj:
            if k not in allowed:
                near = difflib.get_close_matches(str(k), allowed, n=1, cutoff=0.6)
                hint = (f"did you mean {near[0]!r}?" if near else
                        "valid keys: " + ", ".join(allowed))
                raise ConfigError(f"{self.file}: {_join(path, str(k))}: unknown key "
                                  f"{str(k)!r}; {hint}" +
                                  (" (valid keys: " + ", ".join(allowed) + ")" if near else ""))
        for k in required:
            if k not in obj:
                raise ConfigError(f"{self.file}: {_join(path, k)}: missing; expected "
                                  f"{path or 'the file'} to have {k!r}")
        return dict(obj)

    def int_(self, v: Any, path: str, lo: int = 1, hint: str = "") -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(path, v, f"an integer >= {lo}", hint)
        if v < lo:
            raise self.fail(path, v, f"an integer >= {lo}", hint)
        return v

    def num(self, v: Any, path: str, lo: float = 0.0, strict: bool = True,
            hi: float | None = None, hint: str = "") -> float:
        what = f"a number {'>' if strict else '>='} {lo:g}" + (f" and <= {hi:g}" if hi else "")
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.fail(path, v, what, hint)
        if (v <= lo if strict else v < lo) or (hi is not None and v > hi):
            raise self.fail(path, v, what, hint)
        return float(v)

    def str_(self, v: Any, path: str, choices: tuple[str, ...] | None = None) -> str:
        if choices is not None:
            if v not in choices:
                near = difflib.get_close_matches(str(v), choices, n=1, cutoff=0.6)
                raise self.fail(path, v, "one of " + ", ".join(choices),
                                f"did you mean {near[0]!r}?" if near else "")
            return v
        if not isinstance(v, str) or not v:
            raise self.fail(path, v, "a non-empty string")
        return v

    def bool_(self, v: Any, path: str) -> bool:
        if not isinstance(v, bool):
            raise self.fail(path, v, "true or false")
        return v

    def list_(self, v: Any, path: str, nonempty: bool = True) -> list:
        if not isinstance(v, list):
            raise self.fail(path, v, "a list")
        if nonempty and not v:
            raise self.fail(path, v, "a list with at least one entry")
        return v


def _show(v: Any) -> str:
    if isinstance(v, Mapping):
        return "a mapping"
    if isinstance(v, list):
        return "an empty list" if not v else "a list"
    if v is None:
        return "nothing (null)"
    return repr(v)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ------------------------------------------------------------------- loading
def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read a YAML or JSON config, expand ``${VAR}``, validate it; ConfigError on any mistake."""
    p = Path(path)
    name = p.name
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the config file {str(p)!r} ({e.strerror}); give the "
                          "path of a YAML or JSON file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: not UTF-8 text; expected a YAML or JSON file") from None
    if p.suffix == ".json":
        import orjson

        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise ConfigError(f"{name}: not valid JSON ({e}); expected a JSON object") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"{name}: not valid YAML{where} ({problem}); expected a YAML "
                              "mapping") from None
    return parse_config(data, str(p), os.environ if env is None else env)


def _expand(obj: Any, path: str, env: Mapping[str, str], file: str) -> Any:
    if isinstance(obj, Mapping):
        return {k: _expand(v, _join(path, str(k)), env, file) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_expand(v, f"{path}[{i}]", env, file) for i, v in enumerate(obj)]
    if not isinstance(obj, str) or "${" not in obj:
        return obj

    def sub(m: re.Match) -> str:
        var, default = m.group(1), m.group(2)
        value = env.get(var)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(f"{file}: {path}: found ${{{var}}}, but the environment "
                                  f"variable {var} is not set; expected it set (export "
                                  f"{var}=...), or a default: ${{{var}:-value}}")
            return default
        return value

    out = _VAR.sub(sub, obj)
    if _VAR.fullmatch(obj):               # a whole value from a variable: "100" is 100
        for kind in (int, float):
            try:
                return kind(out)
            except ValueError:
                continue
    return out


def parse_config(data: Any, file: str = "config", env: Mapping[str, str] | None = None
                 ) -> Config:
    """Validate a loaded config (a dict) and return it as a ``Config``."""
    name = Path(file).name
    c = _Checker(name)
    data = _expand(data, "", os.environ if env is None else env, name)
    top = c.keys(data, "", ("providers", "workload", "execution", "output"),
                 ("providers", "workload"))
    targets = tuple(_target(c, p, i) for i, p in
                    enumerate(c.list_(top["providers"], "providers")))
    work = c.keys(top["workload"], "workload",
                  ("scenarios", "request_params", "tokenizer", "seed"), ("scenarios",))
    params = _params(c, work.get("request_params") or {}, "workload.request_params", {})
    scen_list = c.list_(work["scenarios"], "workload.scenarios")
    scenarios = tuple(_scenario(c, s, i, params) for i, s in enumerate(scen_list))
    seen: dict[str, int] = {}
    for s in scenarios:
        if s.name in seen:
            raise c.fail(f"workload.scenarios[{s.index}].name", s.name,
                         "a name no other scenario has",
                         f"workload.scenarios[{seen[s.name]}] is also called {s.name!r}")
        seen[s.name] = s.index
    tokenizer = c.str_(work["tokenizer"], "workload.tokenizer") if "tokenizer" in work else None
    seed = c.int_(work["seed"], "workload.seed", 0) if "seed" in work else 0
    ex = c.keys(top.get("execution") or {}, "execution",
                ("max_concurrency", "cores", "retry", "rate_limit", "ray"))
    max_conc = (c.int_(ex["max_concurrency"], "execution.max_concurrency")
                if "max_concurrency" in ex else None)
    cores = c.int_(ex["cores"], "execution.cores") if "cores" in ex else None
    if max_conc is not None:
        for s in scenarios:
            if s.concurrency is not None and s.concurrency > max_conc:
                raise c.fail(f"workload.scenarios[{s.index}].concurrency", s.concurrency,
                             f"at most execution.max_concurrency ({max_conc})",
                             "raise max_concurrency or lower the scenario's concurrency")
    retry = _retry(c, ex["retry"]) if ex.get("retry") is not None else None
    rate = _rate_limit(c, ex["rate_limit"]) if ex.get("rate_limit") is not None else None
    out = c.keys(top.get("output") or {}, "output",
                 ("export", "prometheus_port", "pushgateway", "influx"))
    exports = tuple(_export(c, e, i) for i, e in
                    enumerate(c.list_(out.get("export", []), "output.export", False)))
    ray = _ray(c, ex["ray"]) if ex.get("ray") is not None else None
    return Config(file, targets, scenarios, max_conc, cores, retry, rate, exports, tokenizer,
                  seed, _live(c, out), ray)


def _target(c: _Checker, obj: Any, i: int) -> Target:
    from lens.providers import PROVIDERS

    path = f"providers[{i}]"
    options = ("api", "api_version", "deployment", "anthropic_version", "body_template",
               "token_pointer")
    d = c.keys(obj, path, ("name", "endpoint", "auth", "models", *options), ("name", "models"))
    name = c.str_(d["name"], f"{path}.name", tuple(PROVIDERS))
    endpoint = None
    if d.get("endpoint") is not None:
        from urllib.parse import urlsplit

        endpoint = d["endpoint"]
        u = urlsplit(endpoint) if isinstance(endpoint, str) else None
        if u is None or u.scheme not in ("http", "https") or not u.hostname or u.query:
            raise c.fail(f"{path}.endpoint", endpoint, "an http:// or https:// base URL such "
                         "as http://localhost:8000/v1")
        endpoint = endpoint.rstrip("/")
    models = c.list_(d["models"], f"{path}.models")
    for j, m in enumerate(models):
        c.str_(m, f"{path}.models[{j}]")
    token, auth = None, None
    if d.get("auth") is not None:
        a = c.keys(d["auth"], f"{path}.auth", ("type", "token", "header", "param"),
                   ("type", "token"))
        kind = c.str_(a["type"], f"{path}.auth.type", AUTH_TYPES)
        token = a["token"]
        if not isinstance(token, str) or not token:
            # never echo a token: name its type only
            found = ("an empty string" if token == "" else
                     f"a value of type {type(token).__name__} (not shown)")
            raise ConfigError(f"{c.file}: {path}.auth.token: found {found}; expected a "
                              "non-empty string, usually ${SOME_API_KEY}")
        if not (token.isascii() and token.isprintable()):
            raise ConfigError(f"{c.file}: {path}.auth.token: found control or non-ASCII "
                              "characters (a stray newline?); expected a token an HTTP "
                              "request can carry")
        auth = {"type": kind}
        if kind == "header":
            auth["header"] = c.str_(a.get("header"), f"{path}.auth.header") \
                if "header" in a else _default_header(name)
        elif "header" in a:
            raise c.fail(f"{path}.auth.header", a["header"], "no header with auth.type "
                         f"{kind}", "header applies to type: header")
        if kind == "query":
            auth["param"] = c.str_(a["param"], f"{path}.auth.param") if "param" in a else "key"
        elif "param" in a:
            raise c.fail(f"{path}.auth.param", a["param"], f"no param with auth.type {kind}",
                         "param applies to type: query")
    opts = {}
    for k in options:
        if k in d:
            opts[k] = (c.str_(d[k], f"{path}.{k}", ("chat", "completions")) if k == "api"
                       else c.str_(d[k], f"{path}.{k}"))
    return Target(i, name, endpoint, tuple(models), token, auth, opts)


def _default_header(provider: str) -> str:
    return {"anthropic": "x-api-key", "azure": "api-key",
            "gemini": "x-goog-api-key"}.get(provider, "authorization")


def _params(c: _Checker, obj: Any, path: str, base: dict) -> dict:
    from lens.engine.units import parse_timeouts

    d = c.keys(obj, path, ("max_tokens", "temperature", "stream", "timeout", "extra",
                           "ignore_eos"))
    out = dict(base)
    if "max_tokens" in d:
        out["max_tokens"] = c.int_(d["max_tokens"], f"{path}.max_tokens")
    if "temperature" in d:
        out["temperature"] = c.num(d["temperature"], f"{path}.temperature", 0.0, False, 2.0)
    if "stream" in d and c.bool_(d["stream"], f"{path}.stream") is not True:
        raise c.fail(f"{path}.stream", False, "true",
                     "lens-fast measures streaming responses (TTFT, ITL)")
    if "timeout" in d:
        t = d["timeout"]
        if isinstance(t, bool) or not isinstance(t, int | float | str):
            raise c.fail(f"{path}.timeout", t, "seconds, or a duration like 30s or "
                         "10s/60s/600s (connect/first token/total)")
        if isinstance(t, int | float) and t <= 0:
            raise c.fail(f"{path}.timeout", t, "a number of seconds > 0")
        try:
            out["timeout"] = parse_timeouts(f"{t}s" if isinstance(t, int | float) else t)
        except ConfigError:
            raise c.fail(f"{path}.timeout", t, "seconds, or a duration like 30s or "
                         "10s/60s/600s (connect/first token/total)") from None
    if "extra" in d:
        if not isinstance(d["extra"], Mapping):
            raise c.fail(f"{path}.extra", d["extra"], "a mapping of extra body fields")
        out["extra"] = {**base.get("extra", {}), **d["extra"]}
    if "ignore_eos" in d:
        out["ignore_eos"] = c.bool_(d["ignore_eos"], f"{path}.ignore_eos")
    return out


def _scenario(c: _Checker, obj: Any, i: int, params: dict) -> Scenario:
    from lens.engine.units import parse_duration
    from lens.workload.arrivals import ARRIVALS

    path = f"workload.scenarios[{i}]"
    d = c.keys(obj, path, ("name", "requests", "duration", "concurrency", "rps", "arrival",
                           "burstiness", "prompt", "request_params", "warmup", "seed"),
               ("name",))
    name = c.str_(d["name"], f"{path}.name")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise c.fail(f"{path}.name", name, "letters, digits, _ . - only (it names files)")
    if "rps" in d and "concurrency" in d:
        raise c.fail(f"{path}.rps", d["rps"], "rps (open loop) or concurrency (closed loop), "
                     "not both", f"remove rps or concurrency ({d['concurrency']!r})")
    rps = (c.num(d["rps"], f"{path}.rps", hint="use concurrency for closed-loop runs")
           if "rps" in d else None)
    conc = c.int_(d["concurrency"], f"{path}.concurrency") if "concurrency" in d else None
    requests = c.int_(d["requests"], f"{path}.requests") if "requests" in d else None
    duration = None
    if "duration" in d:
        v = d["duration"]
        try:
            if isinstance(v, bool):
                raise ConfigError("")
            duration = parse_duration(f"{v}s" if isinstance(v, int | float) else v)
        except ConfigError:
            raise c.fail(f"{path}.duration", v, "a duration like 30s, 500ms, 2m or 1h "
                         "(or seconds > 0)") from None
    arrival = c.str_(d.get("arrival", "constant"), f"{path}.arrival", tuple(ARRIVALS))
    if "arrival" in d and rps is None:
        raise c.fail(f"{path}.arrival", arrival, "arrival only with rps (open loop)",
                     "concurrency runs send each user's next request when the last ends")
    burst = None
    if "burstiness" in d:
        burst = c.num(d["burstiness"], f"{path}.burstiness")
        if arrival != "gamma":
            raise c.fail(f"{path}.burstiness", d["burstiness"], "burstiness only with arrival: "
                         "gamma", f"the arrival is {arrival!r}")
    prompt = _prompt(c, d["prompt"], f"{path}.prompt") if "prompt" in d else None
    own = _params(c, d["request_params"], f"{path}.request_params", params) \
        if "request_params" in d else dict(params)
    warmup = c.int_(d["warmup"], f"{path}.warmup", 0) if "warmup" in d else 0
    seed = c.int_(d["seed"], f"{path}.seed", 0) if "seed" in d else None
    return Scenario(i, name, requests, duration, conc, rps, arrival, burst, prompt, own,
                    warmup, seed)


def _prompt(c: _Checker, obj: Any, path: str) -> dict:
    from lens.workload.prompts import template_variables

    if isinstance(obj, str):
        obj = {"text": obj}
    sources = ("template", "dataset", "synthetic", "text")
    d = c.keys(obj, path, (*sources, "variables", "output_tokens", "pool_size"))
    given = [k for k in sources if k in d]
    if len(given) != 1:
        raise c.fail(path, ", ".join(given) if given else "none of them",
                     "exactly one of template, dataset, synthetic, text")
    src = given[0]
    if "variables" in d and src != "template":
        raise c.fail(f"{path}.variables", d["variables"], "variables only with a template")
    if src == "template":
        tpl = c.str_(d["template"], f"{path}.template")
        variables = d.get("variables") or {}
        if not isinstance(variables, Mapping):
            raise c.fail(f"{path}.variables", variables, "a mapping of name: value or "
                         "name: [values]")
        for k, v in variables.items():
            vp = f"{path}.variables.{k}"
            if isinstance(v, list):
                if not v or not all(isinstance(x, str | int | float) for x in v):
                    raise c.fail(vp, v, "a value, or a non-empty list of values")
            elif not isinstance(v, str | int | float) or isinstance(v, bool):
                raise c.fail(vp, v, "a value, or a non-empty list of values")
        for name in template_variables(tpl):
            if name not in variables:
                raise c.fail(f"{path}.variables", sorted(variables),
                             f"a value for {{{{{name}}}}}", f"the template uses {name!r}")
        for k in variables:
            if k not in template_variables(tpl):
                raise c.fail(f"{path}.variables.{k}", k, "a variable the template uses "
                             f"({', '.join(template_variables(tpl)) or 'none'})")
    elif src == "dataset":
        ds = d["dataset"]
        if isinstance(ds, str):
            c.str_(ds, f"{path}.dataset")
        else:
            dd = c.keys(ds, f"{path}.dataset", ("path", "format", "field"), ("path",))
            c.str_(dd["path"], f"{path}.dataset.path")
            if "format" in dd:
                c.str_(dd["format"], f"{path}.dataset.format", ("jsonl", "sharegpt"))
            if "field" in dd:
                c.str_(dd["field"], f"{path}.dataset.field")
    elif src == "synthetic":
        s = c.keys(d["synthetic"], f"{path}.synthetic", ("input_tokens", "output_tokens"),
                   ("input_tokens",))
        _length(c, s["input_tokens"], f"{path}.synthetic.input_tokens")
        if "output_tokens" in s:
            _length(c, s["output_tokens"], f"{path}.synthetic.output_tokens")
    else:
        c.str_(d["text"], f"{path}.text")
    if "output_tokens" in d:
        if d["output_tokens"] == "dataset":
            if src != "dataset":
                raise c.fail(f"{path}.output_tokens", "dataset", "a length or distribution",
                             "'dataset' applies to dataset prompts")
        else:
            _length(c, d["output_tokens"], f"{path}.output_tokens")
    if "pool_size" in d:
        c.int_(d["pool_size"], f"{path}.pool_size")
    return dict(d)


def _length(c: _Checker, v: Any, path: str) -> None:
    from lens.workload.prompts import DISTS

    if isinstance(v, int) and not isinstance(v, bool):
        c.int_(v, path)
        return
    if not isinstance(v, Mapping):
        raise c.fail(path, v, "a token count, or {dist: fixed|uniform|normal|empirical, ...}")
    dist = c.str_(v.get("dist"), f"{path}.dist", DISTS)
    need = {"fixed": ("value",), "uniform": ("min", "max"), "normal": ("mean", "std"),
            "empirical": ("values",)}[dist]
    allowed = {"fixed": ("value",), "uniform": ("min", "max"),
               "normal": ("mean", "std", "min", "max"),
               "empirical": ("values", "weights")}[dist]
    c.keys(v, path, ("dist", *allowed), need)
    if dist == "fixed":
        c.int_(v["value"], f"{path}.value")
    elif dist in ("uniform", "normal"):
        for k in ("min", "max"):
            if k in v:
                c.int_(v[k], f"{path}.{k}")
        if dist == "uniform" and v["max"] < v["min"]:
            raise c.fail(f"{path}.max", v["max"], f"max >= min ({v['min']})")
        if dist == "normal":
            c.num(v["mean"], f"{path}.mean")
            c.num(v["std"], f"{path}.std", strict=False)
    else:
        vals = c.list_(v["values"], f"{path}.values")
        for j, x in enumerate(vals):
            c.int_(x, f"{path}.values[{j}]")
        if "weights" in v:
            w = c.list_(v["weights"], f"{path}.weights")
            if len(w) != len(vals):
                raise c.fail(f"{path}.weights", f"{len(w)} weights",
                             f"one weight per value ({len(vals)})")
            for j, x in enumerate(w):
                c.num(x, f"{path}.weights[{j}]", strict=False)
            if sum(w) <= 0:
                raise c.fail(f"{path}.weights", w, "weights with a positive sum")


def _retry(c: _Checker, obj: Any) -> dict:
    p = "execution.retry"
    d = c.keys(obj, p, ("max_attempts", "initial_backoff_ms", "max_backoff_ms", "multiplier",
                        "retry_on"))
    if "max_attempts" in d:
        c.int_(d["max_attempts"], f"{p}.max_attempts")
    for k in ("initial_backoff_ms", "max_backoff_ms"):
        if k in d:
            c.num(d[k], f"{p}.{k}", strict=False)
    if "multiplier" in d:
        c.num(d["multiplier"], f"{p}.multiplier", 1.0, strict=False)
    if "retry_on" in d:
        for j, x in enumerate(c.list_(d["retry_on"], f"{p}.retry_on")):
            ok = (isinstance(x, int) and not isinstance(x, bool) and 100 <= x <= 599) or \
                x in ("connect", "timeout", "reset", "5xx", "429")
            if not ok:
                raise c.fail(f"{p}.retry_on[{j}]", x, "an HTTP status (429, 503, ...) or one "
                             "of connect, timeout, reset, 5xx")
    return d


def _ray(c: _Checker, obj: Any) -> dict:
    """``execution.ray``: run every plan on a Ray cluster (docs/ray.md)."""
    p = "execution.ray"
    d = c.keys(obj, p, ("address", "hosts", "lead_s", "shared_output"))
    out: dict = {"address": c.str_(d.get("address", "auto"), f"{p}.address")}
    if not out["address"].strip():
        raise c.fail(f"{p}.address", out["address"], "auto or the Ray head's address "
                     "(HOST:6379 or ray://HOST:10001)")
    if "hosts" in d:
        out["hosts"] = c.int_(d["hosts"], f"{p}.hosts")
    if "lead_s" in d:
        out["lead_s"] = c.num(d["lead_s"], f"{p}.lead_s")
        if out["lead_s"] > 600:
            raise c.fail(f"{p}.lead_s", out["lead_s"], "seconds before the agreed start, "
                         "at most 600")
    if "shared_output" in d:
        out["shared_output"] = c.bool_(d["shared_output"], f"{p}.shared_output")
    return out


def _rate_limit(c: _Checker, obj: Any) -> dict:
    p = "execution.rate_limit"
    d = c.keys(obj, p, ("requests_per_s", "requests_per_minute", "tokens_per_minute"))
    for k, v in d.items():
        c.num(v, f"{p}.{k}")
    return d


def _live(c: _Checker, out: dict) -> dict | None:
    live: dict = {}
    if out.get("prometheus_port") is not None:
        live["prometheus_port"] = c.int_(out["prometheus_port"], "output.prometheus_port")
        if live["prometheus_port"] > 65535:
            raise c.fail("output.prometheus_port", live["prometheus_port"], "a port 1…65535")
    if out.get("pushgateway") is not None:
        live["pushgateway"] = _url(c, out["pushgateway"], "output.pushgateway")
    if out.get("influx") is not None:
        d = c.keys(out["influx"], "output.influx", ("url", "db", "bucket", "org", "token"),
                   ("url",))
        live["influx"] = {k: c.str_(v, f"output.influx.{k}") for k, v in d.items()}
        live["influx"]["url"] = _url(c, d["url"], "output.influx.url")
        if not (d.get("db") or d.get("bucket")):
            raise c.fail("output.influx", "neither db nor bucket",
                         "db (InfluxDB 1.x) or bucket and org (InfluxDB 2.x)")
        if d.get("bucket") and not d.get("org"):
            raise c.fail("output.influx.org", "missing", "the organisation of the bucket")
    return live or None


def _url(c: _Checker, v: Any, path: str) -> str:
    s = c.str_(v, path)
    if not re.match(r"https?://[^/\s:]+", s):
        raise c.fail(path, s, "an http:// or https:// URL such as http://localhost:9091")
    return s


def _export(c: _Checker, obj: Any, i: int) -> Export:
    p = f"output.export[{i}]"
    d = c.keys(obj, p, ("format", "path"), ("format", "path"))
    fmt = c.str_(d["format"], f"{p}.format", EXPORT_FORMATS)
    path = c.str_(d["path"], f"{p}.path")
    for m in _PLACEHOLDER.findall(path):
        if m not in PATH_FIELDS:
            raise c.fail(f"{p}.path", path, "placeholders {timestamp} and {scenario} only",
                         f"{{{m}}} is not one")
    return Export(fmt, path)


# ------------------------------------------------------------------- plans
def build_plans(cfg: Config, overrides: Mapping[str, Any] | None = None) -> list:
    """Return one RunPlan per scenario × provider × model, in file order.

    ``overrides`` are the flags given on the command line (they win over the file):
    url, model, requests, duration_s, rps, concurrency, arrival, max_tokens, cores, seed,
    timeouts, warmup, ignore_eos, max_inflight, max_token_stamps, max_event_bytes, tokenizer,
    client, http2, insecure, ca_cert, include_usage. Reads the datasets and the tokenizer;
    ConfigError on any problem.
    """
    from lens.engine.command import DEFAULT_CONCURRENCY, DEFAULT_REQUESTS, rate_limit_of, retry_of
    from lens.engine.plan import RunPlan, Timeouts
    from lens.engine.supervisor import default_cores
    from lens.providers import check_plan, get_provider, key_needed
    from lens.workload.prompts import PromptPool, load_tokenizer

    o = dict(overrides or {})
    c = _Checker(Path(cfg.path).name)
    tok_path = o.get("tokenizer") or cfg.tokenizer
    where = "--tokenizer" if o.get("tokenizer") else f"{c.file}: workload.tokenizer:"
    if tok_path and not o.get("tokenizer"):
        tp = Path(tok_path)
        tok_path = str(tp if tp.is_absolute() else cfg.base / tp)
    tokenizer = load_tokenizer(tok_path, where)
    plans = []
    for s in cfg.scenarios:
        sp = f"workload.scenarios[{s.index}]"
        seed = o.get("seed", s.seed if s.seed is not None else cfg.seed)
        rps, conc = s.rps, s.concurrency
        if o.get("rps") is not None:
            rps, conc = o["rps"], None
        if o.get("concurrency") is not None:
            rps, conc = None, o["concurrency"]
        if rps is None and conc is None:
            conc = DEFAULT_CONCURRENCY
        requests, duration = s.requests, s.duration_s
        if o.get("requests") is not None or o.get("duration_s") is not None:
            requests, duration = o.get("requests"), o.get("duration_s")
        if requests is None and duration is None:
            requests = DEFAULT_REQUESTS
        params = s.params
        pool = None
        if s.prompt is not None:
            n = s.prompt.get("pool_size") or min(requests or POOL_DEFAULT, POOL_DEFAULT)
            try:
                pool = PromptPool.build(s.prompt, n, seed, tokenizer, cfg.base, f"{sp}.prompt")
            except ConfigError as e:
                raise ConfigError(f"{c.file}: {e}") from None
        max_tokens = o.get("max_tokens") or params.get("max_tokens", 128)
        per_prompt = None if o.get("max_tokens") else (pool.max_tokens if pool else None)
        for t in cfg.targets:
            tp = f"providers[{t.index}]"
            provider = get_provider(t.name)
            url = o.get("url") or t.endpoint or provider.default_base_url
            if url is None:
                raise c.fail(f"{tp}.endpoint", None, f"the base URL of the {t.name} endpoint",
                             f"{t.name} has no default URL")
            key = t.token
            if key is None:
                key = os.environ.get(provider.api_key_env) or None
            if key is None and key_needed(provider, url):
                raise c.fail(f"{tp}.auth", None, f"an API key for {url}",
                             f"add auth: {{type: bearer, token: ${{{provider.api_key_env}}}}}")
            models = [o["model"]] if o.get("model") else list(t.models)
            for model in models:
                plan = RunPlan(
                    url=url, model=model, provider=t.name,
                    endpoint=t.options.get("api", "chat"), api_key=key,
                    cores=o.get("cores") or cfg.cores or default_cores(),
                    rps=rps, arrival=o.get("arrival") or s.arrival,
                    burstiness=s.burstiness or 1.0, concurrency=conc,
                    duration_s=duration, requests=requests,
                    max_inflight=o.get("max_inflight") or cfg.max_concurrency or 10000,
                    max_token_stamps=o.get("max_token_stamps") or 1 << 20,
                    max_event_bytes=o.get("max_event_bytes") or 1 << 20,
                    max_tokens=max_tokens, seed=seed,
                    timeouts=o.get("timeouts") or params.get("timeout") or Timeouts(),
                    warmup=o.get("warmup", s.warmup),
                    client=o.get("client", "fast"), http2=o.get("http2", False),
                    insecure=o.get("insecure", False), ca_cert=o.get("ca_cert"),
                    include_usage=o.get("include_usage", True),
                    extra=dict(params.get("extra", {})),
                    api_version=t.options.get("api_version"),
                    deployment=t.options.get("deployment"),
                    anthropic_version=t.options.get("anthropic_version"),
                    body_template=t.options.get("body_template"),
                    token_pointer=t.options.get("token_pointer"),
                    ignore_eos=o.get("ignore_eos") or params.get("ignore_eos", False),
                    scenario=s.name,
                    prompts=pool.prompts if pool else None,
                    prompt_tokens=pool.input_tokens if pool else None,
                    prompt_max_tokens=per_prompt,
                    tokenizer=pool.tokenizer if pool else None,
                    input_tokens=o.get("input_tokens"),
                    temperature=params.get("temperature"),
                    auth=t.auth, retry=retry_of(o, cfg.retry),
                    rate_limit=rate_limit_of(o, cfg.rate_limit),
                )
                if plan.temperature is not None and t.name == "generic":
                    raise c.fail(f"{sp}.request_params.temperature", plan.temperature,
                                 "no temperature with the generic provider",
                                 f"write it into {tp}.body_template")
                try:
                    check_plan(plan)
                except ConfigError as e:
                    raise ConfigError(f"{c.file}: {tp} × {sp}: {e}") from None
                plans.append(plan)
    return plans
