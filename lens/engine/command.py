"""``lens-fast run``: profile an endpoint (or the embedded mock) with open- or closed-loop load."""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click

from lens.engine.plan import ENDPOINT_PATHS, RunPlan, api_key_from_env, check_url
from lens.engine.units import parse_duration, parse_timeouts
from lens.errors import ConfigError
from lens.providers import PROVIDERS, check_plan, get_provider, key_needed
from lens.providers.pricing import Prices, load_pricing_file, lookup, parse_price_option
from lens.workload.arrivals import ARRIVALS

DEFAULT_REQUESTS = 200
DEFAULT_CONCURRENCY = 16
DEFAULT_MODEL = "lens-mock"
#: What --url looks like for the providers without a default one.
URL_EXAMPLES = {"azure": "https://<resource>.openai.azure.com",
                "generic": "the endpoint's full URL, e.g. http://localhost:8080/generate_stream"}


def resolve_target(o: dict, provider_given: bool) -> tuple[str | None, bool]:
    """Return (base URL, embedded): --url, else the embedded mock or the provider's default.

    ``lens-fast run`` without --url and without --provider profiles the embedded mock (the
    quickstart); with a --provider, the provider's default URL is used (its public API, or
    the usual local port of a self-hosted server).
    """
    if o["url"]:
        return check_url(o["url"]), False
    name = o["provider"]
    if name == "openai" and not provider_given:
        return None, True
    default = get_provider(name).default_base_url
    if default is None:
        raise ConfigError(f"--provider {name} has no default URL; give --url "
                          f"({URL_EXAMPLES.get(name, 'the base URL of the endpoint')})")
    return default, False


def resolve_price(o: dict, provider: str, model: str) -> dict | None:
    """Return the run's price (--price, then --pricing, then the bundled table) or None."""
    overrides: Prices = {}
    if o.get("pricing"):
        overrides.update(load_pricing_file(o["pricing"]))
    given = [parse_price_option(t) for t in o.get("price") or ()]
    for name, price in given:
        overrides[(None, name)] = price
    price = lookup(provider, model, overrides)
    if given and (price is None or price.source != "--price"):
        names = ", ".join(n for n, _ in given)
        raise ConfigError(f"--price names {names}, but the run's model is {model!r}; give "
                          f"--price {model}=IN/OUT")
    return price.as_dict() if price is not None else None


def read_template(text: str | None) -> str | None:
    """Return --body-template's text, reading @FILE."""
    if text is None or not text.startswith("@"):
        return text
    try:
        return Path(text[1:]).read_text()
    except OSError as e:
        raise ConfigError(f"--body-template cannot read {text[1:]!r}: {e.strerror}") from None


def check_wire(plan: RunPlan) -> None:
    """Refuse header values and paths that cannot be sent (control or non-ASCII characters).

    Messages name the header, never its value: it may hold the API key.
    """
    provider = get_provider(plan.provider)
    for name, value in provider.headers(plan, plan.api_key).items():
        if not (value.isascii() and value.isprintable()):
            raise ConfigError(f"the {name} header would carry control or non-ASCII "
                              "characters; check the option or variable it comes from")
    path = plan.path
    if not path.isascii() or any(c in path for c in " \r\n"):
        raise ConfigError(f"the request path {path!r} has spaces or non-ASCII characters; "
                          "percent-encode them in --url")


def retry_of(o: dict, base: dict | None = None) -> dict | None:
    """Return ``execution.retry`` with --max-attempts / --initial-backoff-ms applied."""
    d = dict(base or {})
    if o.get("max_attempts") is not None:
        if o["max_attempts"] < 1:
            raise ConfigError(f"--max-attempts must be >= 1 (got {o['max_attempts']}); "
                              "1 means no retry")
        d["max_attempts"] = o["max_attempts"]
    if o.get("initial_backoff_ms") is not None:
        if not o["initial_backoff_ms"] >= 0:
            raise ConfigError(f"--initial-backoff-ms must be >= 0 (got "
                              f"{o['initial_backoff_ms']})")
        d["initial_backoff_ms"] = o["initial_backoff_ms"]
    return d or None


def rate_limit_of(o: dict, base: dict | None = None) -> dict | None:
    """Return ``execution.rate_limit`` with --rate-limit applied."""
    d = dict(base or {})
    if o.get("rate_limit") is not None:
        if not o["rate_limit"] > 0:
            raise ConfigError(f"--rate-limit must be > 0 requests/s (got {o['rate_limit']}); "
                              "leave it out for no limit")
        d["requests_per_s"] = o["rate_limit"]
    return d or None


def build_plan(o: dict, url: str, embedded: bool = False) -> RunPlan:
    """Validate the options of ``run`` and return the plan (ConfigError on bad input)."""
    from lens.engine.supervisor import default_cores

    if o["rps"] is not None and o["concurrency"] is not None:
        raise ConfigError("give --rps (open loop) or --concurrency (closed loop), not both")
    if o["rps"] is not None and not o["rps"] > 0:
        raise ConfigError(f"--rps must be > 0 (got {o['rps']}); use --concurrency for "
                          "closed-loop runs")
    if o["concurrency"] is not None and o["concurrency"] < 1:
        raise ConfigError(f"--concurrency must be >= 1 (got {o['concurrency']})")
    if o["prompt"] is not None and o["input_tokens"] is not None:
        raise ConfigError("give --prompt or --input-tokens, not both")
    for name in ("requests", "max_tokens", "max_inflight", "cores", "input_tokens",
                 "max_token_stamps", "max_event_bytes"):
        v = o.get(name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1 (got {v})")
    if o["warmup"] < 0:
        raise ConfigError(f"--warmup must be >= 0 (got {o['warmup']})")
    if o["burstiness"] is not None and o["arrival"] != "gamma":
        raise ConfigError("--burstiness applies to --arrival gamma only")
    if o["burstiness"] is not None and not o["burstiness"] > 0:
        raise ConfigError(f"--burstiness must be > 0 (got {o['burstiness']})")
    duration = parse_duration(o["duration"]) if o["duration"] is not None else None
    requests = o["requests"]
    rps, conc = o["rps"], o["concurrency"]
    if rps is None and conc is None:
        conc = DEFAULT_CONCURRENCY
    if duration is None and requests is None:
        requests = DEFAULT_REQUESTS
    cores = o["cores"] or default_cores()
    name = o["provider"]
    provider = get_provider(name)
    needs_key = not embedded and key_needed(provider, url)
    model = o["model"]
    if model is None:
        if needs_key:
            raise ConfigError(f"--provider {name} needs --model (the model to request at "
                              f"{url})")
        model = DEFAULT_MODEL
    key_env = o["api_key_env"] or provider.api_key_env
    api_key = api_key_from_env(key_env)
    if needs_key and api_key is None:
        raise ConfigError(f"--provider {name} needs an API key for {url}: set {key_env}, or "
                          "name the variable that holds it with --api-key-env")
    if api_key is not None and not (api_key.isascii() and api_key.isprintable()):
        raise ConfigError(f"the API key in {key_env} has control or non-ASCII characters "
                          "(a stray newline?); an HTTP header cannot carry them")
    plan = RunPlan(
        url=url,
        model=model,
        provider=name,
        endpoint=o["endpoint"] or "chat",
        api_key=api_key,
        cores=cores,
        rps=rps,
        arrival=o["arrival"],
        burstiness=o["burstiness"] or 1.0,
        concurrency=conc,
        duration_s=duration,
        requests=requests,
        max_inflight=o["max_inflight"] or 10000,
        max_token_stamps=o.get("max_token_stamps") or 1 << 20,
        max_event_bytes=o.get("max_event_bytes") or 1 << 20,
        max_tokens=o["max_tokens"],
        prompt=o["prompt"],
        input_tokens=o["input_tokens"],
        seed=o["seed"],
        timeouts=parse_timeouts(o["timeout"]),
        warmup=o["warmup"],
        client=o["client"],
        http2=o["http2"],
        insecure=o["insecure"],
        ca_cert=o["ca_cert"],
        include_usage=not o["no_usage"],
        api_version=o["api_version"],
        deployment=o["deployment"],
        anthropic_version=o["anthropic_version"],
        body_template=read_template(o["body_template"]),
        token_pointer=o["token_pointer"],
        ignore_eos=o["ignore_eos"],
        price=resolve_price(o, name, model),
        retry=retry_of(o),
        rate_limit=rate_limit_of(o),
    )
    if o.get("tokenizer"):
        from lens.engine.requests import prompts_for
        from lens.workload.prompts import load_tokenizer

        tok = load_tokenizer(o["tokenizer"])
        pool = tuple(prompts_for(plan))
        plan = dataclasses.replace(plan, prompts=pool, prompt_tokens=tuple(tok.count_many(pool)),
                                   tokenizer=tok.description)
    check_plan(plan)
    check_wire(plan)
    return plan


#: Flags that override a config file's values (option name → build_plans' key).
CONFIG_OVERRIDES = {"url": "url", "model": "model", "requests": "requests",
                    "duration": "duration_s", "rps": "rps", "concurrency": "concurrency",
                    "arrival": "arrival", "max_tokens": "max_tokens", "cores": "cores",
                    "seed": "seed", "timeout": "timeouts", "warmup": "warmup",
                    "ignore_eos": "ignore_eos", "max_inflight": "max_inflight",
                    "max_token_stamps": "max_token_stamps",
                    "max_event_bytes": "max_event_bytes",
                    "tokenizer": "tokenizer", "client": "client", "http2": "http2",
                    "insecure": "insecure", "ca_cert": "ca_cert", "no_usage": "include_usage",
                    "input_tokens": "input_tokens", "max_attempts": "max_attempts",
                    "initial_backoff_ms": "initial_backoff_ms", "rate_limit": "rate_limit"}
#: Flags of the run itself, allowed with a config file.
RUN_FLAGS = {"output", "no_progress", "strict", "config", "format", "prometheus_port",
             "prometheus_addr", "prometheus_linger", "pushgateway", "influx", "influx_db",
             "influx_bucket", "influx_org", "ray", "hosts", "shared_output"}


def config_overrides(o: dict, given: set[str]) -> dict:
    """Return the flags given on the command line as build_plans overrides; refuse the rest."""
    out: dict = {}
    for name in sorted(given):
        if name in RUN_FLAGS:
            continue
        if name not in CONFIG_OVERRIDES:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} cannot be combined with a config file; set it in the "
                              f"file (see docs/config.md). Flags that override the file: "
                              + ", ".join("--" + k.replace("_", "-") for k in CONFIG_OVERRIDES))
        v = o[name]
        if name == "duration":
            v = parse_duration(v)
        elif name == "timeout":
            v = parse_timeouts(v)
        elif name == "no_usage":
            v = not v
        elif name == "url":
            v = check_url(v)
        elif name in ("requests", "max_tokens", "max_inflight", "cores", "input_tokens",
                      "max_token_stamps", "max_event_bytes",
                      "concurrency") and v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1 (got {v})")
        elif name == "rps" and v is not None and not v > 0:
            raise ConfigError(f"--rps must be > 0 (got {v}); use --concurrency for "
                              "closed-loop runs")
        out[CONFIG_OVERRIDES[name]] = v
    if "rps" in out and "concurrency" in out:
        raise ConfigError("give --rps (open loop) or --concurrency (closed loop), not both")
    return out


def service_url(flag: str, url: str) -> str:
    """Check the URL of a metrics service (``--pushgateway``, ``--influx``)."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    try:
        ok = u.scheme in ("http", "https") and bool(u.hostname) and (u.port or 1) > 0
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"{flag} must be an http:// or https:// URL such as "
                          f"http://localhost:9091 (got {url!r})")
    return url.rstrip("/")


def live_metrics(o: dict, file: dict | None = None):
    """Build the run's ``LiveMetrics`` from the flags, over a config file's ``output`` keys
    (``prometheus_port``, ``pushgateway``, ``influx``); None when none is asked for."""
    file = dict(file or {})
    port = o.get("prometheus_port") or file.get("prometheus_port")
    push = o.get("pushgateway") or file.get("pushgateway")
    influx = dict(file.get("influx") or {})
    for key in ("url", "db", "bucket", "org"):
        if o.get(f"influx_{key}" if key != "url" else "influx"):
            influx[key] = o[f"influx_{key}" if key != "url" else "influx"]
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"--prometheus-port must be 1…65535 (got {port})")
    if influx and not influx.get("url"):
        raise ConfigError("--influx-db/--influx-bucket/--influx-org need --influx URL")
    if port is None and not push and not influx:
        return None
    from lens.output.live import InfluxTarget, LiveMetrics

    target = None
    if influx:
        token = influx.get("token") or os.environ.get("LENS_INFLUX_TOKEN")
        if not (influx.get("db") or influx.get("bucket")):
            raise ConfigError("--influx needs --influx-db DB (InfluxDB 1.x) or --influx-bucket "
                              "BUCKET with --influx-org ORG (InfluxDB 2.x)")
        target = InfluxTarget(url=service_url("--influx", influx["url"]), db=influx.get("db"),
                              bucket=influx.get("bucket"), org=influx.get("org"), token=token)
    linger = o.get("prometheus_linger")
    if linger is not None and not 0 <= linger <= 3600:
        raise ConfigError(f"--prometheus-linger must be 0…3600 seconds (got {linger:g})")
    out = o.get("output")
    return LiveMetrics(prometheus_port=port, prometheus_addr=o.get("prometheus_addr") or "0.0.0.0",
                       prometheus_linger_s=linger,
                       pushgateway=push and service_url("--pushgateway", push),
                       influx=target, run_id=os.path.basename(os.path.normpath(out))
                       if out else None)


def run_config(o: dict, given: set[str]) -> int:
    """``lens-fast run CONFIG``: load, override with flags, check, run every plan."""
    from lens.config import build_plans, load_config
    from lens.engine.runner import check_formats, run_plans_and_report

    formats = check_formats(o["format"])
    cfg = load_config(o["config"])
    plans = build_plans(cfg, config_overrides(o, given))
    for plan in plans:
        check_wire(plan)
    live = live_metrics(o, cfg.live)
    ray = ray_settings(o, cfg.ray)
    run_one = None
    if ray is not None:
        from lens.distributed.cli import plan_runner
        from lens.distributed.driver import require_ray

        require_ray()
        run_one = plan_runner(ray, argv=sys.argv, formats=formats, live=live)
    return run_plans_and_report(plans, exports=cfg.exports, output=o["output"],
                                progress=not o["no_progress"], strict=o["strict"],
                                argv=sys.argv, config_path=o["config"], formats=formats,
                                live=live, run_one=run_one)


def ray_settings(o: dict, file: dict | None = None):
    """``--ray``/``--hosts`` over a config's ``execution.ray``: a ``RaySettings``, or None
    for a local run."""
    file = dict(file or {})
    if o.get("hosts") is not None and o["hosts"] < 1:
        raise ConfigError(f"--hosts must be >= 1 (got {o['hosts']})")
    if o.get("hosts") is not None and not (o.get("ray") or file):
        raise ConfigError(f"--hosts {o['hosts']} needs --ray (auto or the Ray head's "
                          "address) or execution.ray in the config file")
    if o.get("shared_output") and not (o.get("ray") or file):
        raise ConfigError("--shared-output needs --ray (auto or the Ray head's address) or "
                          "execution.ray in the config file")
    if not (o.get("ray") or file):
        return None
    from lens.distributed.cli import RaySettings

    return RaySettings(address=o.get("ray") or file.get("address", "auto"),
                       hosts=o["hosts"] if o.get("hosts") is not None else file.get("hosts"),
                       lead_s=file.get("lead_s"),
                       shared_output=bool(o.get("shared_output")
                                          or file.get("shared_output", False)))


@click.command("run")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--provider", type=click.Choice(list(PROVIDERS)), default="openai",
              show_default=True, help="The API the endpoint speaks (see docs/providers.md).")
@click.option("--url", help="Base URL of the endpoint, e.g. http://localhost:8000/v1. Default: "
              "the provider's (its public API or usual local port); without --url and "
              "--provider, run starts the embedded mock endpoint and profiles it.")
@click.option("--model", help=f"Model name to request (default {DEFAULT_MODEL!r}; required "
              "for hosted APIs).")
@click.option("--endpoint", type=click.Choice(sorted(ENDPOINT_PATHS)),
              help="OpenAI-style providers: chat (/chat/completions, the default) or "
              "completions (legacy).")
@click.option("--api-key-env", metavar="VAR", help="Environment variable holding the API key "
              "(default: the provider's, e.g. OPENAI_API_KEY, ANTHROPIC_API_KEY). The key is "
              "never printed or written.")
@click.option("--api-version", help="azure: the api-version query parameter "
              "(default 2024-10-21).")
@click.option("--deployment", help="azure: the deployment name (default: --model).")
@click.option("--anthropic-version", help="anthropic: the anthropic-version header "
              "(default 2023-06-01).")
@click.option("--body-template", metavar="JSON|@FILE", help="generic: the request body, with "
              "{{prompt}}, {{model}} and {{max_tokens}} filled in.")
@click.option("--token-pointer", metavar="POINTER", help="generic: JSON pointer to the token "
              "text in each event, e.g. /choices/0/delta/content.")
@click.option("--ignore-eos", is_flag=True, help="vllm, sglang, llamacpp: generate exactly "
              "--max-tokens tokens (ignore_eos, min_tokens).")
@click.option("--price", multiple=True, metavar="MODEL=IN/OUT", help="USD per million input/"
              "output tokens of a model, e.g. gpt-4o=2.50/10.00 (overrides the bundled table).")
@click.option("--pricing", type=click.Path(dir_okay=False), metavar="FILE",
              help="Prices of models from a JSON, TOML or YAML file ({MODEL: \"IN/OUT\"}).")
@click.option("--cores", type=int, help="Worker processes (default: CPUs − 1, at least 1).")
@click.option("--rps", type=float, help="Open loop: requests per second offered.")
@click.option("--arrival", type=click.Choice(ARRIVALS), default="constant", show_default=True,
              help="Arrival process of --rps.")
@click.option("--burstiness", type=float, help="Gamma shape for --arrival gamma (1 = Poisson, "
              "< 1 burstier).")
@click.option("--concurrency", type=int, help="Closed loop: users, each sending its next "
              f"request when the last ends (default {DEFAULT_CONCURRENCY} without --rps).")
@click.option("--duration", help="How long to send load: 30s, 2m, 1h.")
@click.option("--requests", type=int, help="How many requests to send "
              f"(default {DEFAULT_REQUESTS} without --duration).")
@click.option("--max-inflight", type=int, help="At most this many requests in flight; "
              "arrivals past it are counted as dropped (default 10000).")
@click.option("--max-token-stamps", type=int, metavar="N", help="At most N token timestamps "
              "per request (default 1,048,576): a runaway stream is cut there, flagged "
              "truncated, and its row still counts its tokens.")
@click.option("--max-event-bytes", type=int, metavar="N", help="Largest stream event accepted "
              "(default 1 MiB); a larger one fails the request as a protocol error.")
@click.option("--max-attempts", type=int, help="Attempts per request: 429, 5xx, connect "
              "failures and first-token timeouts are retried with backoff (default 1: none).")
@click.option("--initial-backoff-ms", type=float, help="Backoff before the 2nd attempt; "
              "doubles per attempt, a longer Retry-After wins (default 1000).")
@click.option("--rate-limit", type=float, metavar="RPS", help="At most RPS requests/s started, "
              "all workers together (each gets RPS/cores); arrivals over it wait.")
@click.option("--max-tokens", type=int, default=128, show_default=True,
              help="max_tokens of each request.")
@click.option("--prompt", help="The prompt text of every request.")
@click.option("--input-tokens", type=int, help="Synthetic prompts of about N tokens "
              "(default 32).")
@click.option("--tokenizer", type=click.Path(), metavar="PATH", help="Count prompt tokens "
              "with a local Hugging Face tokenizer (tokenizer.json or its folder; needs pip "
              "install tokenizers). Default: 4 characters per token.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of arrivals and synthetic prompts.")
@click.option("--timeout", help="TOTAL, or CONNECT/FIRST_TOKEN/TOTAL (default 10s/60s/600s).")
@click.option("--warmup", type=int, default=0, show_default=True,
              help="Requests sent before measuring, excluded from results.")
@click.option("--output", "output", type=click.Path(file_okay=False),
              help="Directory for requests.parquet, tokens.parquet and summary.json "
              "(default: lens-results/run-<UTC time>).")
@click.option("--format", "format", metavar="LIST", help="Files to write: a comma-separated "
              "list of parquet, json, csv, html (default parquet,json; summary.json is always "
              "written). html adds report.html (see `lens-fast report`).")
@click.option("--prometheus-port", type=int, metavar="PORT", help="Serve live metrics at "
              "http://HOST:PORT/metrics in Prometheus format during the run.")
@click.option("--prometheus-addr", metavar="ADDR", help="Address of --prometheus-port "
              "(default 0.0.0.0: reachable from other hosts; 127.0.0.1 keeps it local).")
@click.option("--prometheus-linger", type=float, metavar="SECONDS", help="At the end, wait at "
              "most this long for Prometheus to scrape the final values (default: about two "
              "scrape intervals when Prometheus was scraping; 0: do not wait).")
@click.option("--pushgateway", metavar="URL", help="Push the final metrics to this Prometheus "
              "Pushgateway at the end of the run.")
@click.option("--influx", metavar="URL", help="Write per-second points to this InfluxDB "
              "(with --influx-db, or --influx-bucket and --influx-org; token from "
              "LENS_INFLUX_TOKEN).")
@click.option("--influx-db", metavar="DB", help="InfluxDB 1.x database for --influx.")
@click.option("--influx-bucket", metavar="BUCKET", help="InfluxDB 2.x bucket for --influx.")
@click.option("--influx-org", metavar="ORG", help="InfluxDB 2.x organisation for --influx.")
@click.option("--no-progress", is_flag=True, help="No live progress line.")
@click.option("--client", type=click.Choice(["fast", "httpx"]), default="fast",
              show_default=True, help="HTTP client: lens' fast HTTP/1.1 client, or httpx "
              "(HTTP/2 with --http2, proxies from the environment; slower).")
@click.option("--http2", is_flag=True, help="Use HTTP/2 (with --client httpx).")
@click.option("--insecure", is_flag=True, help="Do not verify TLS certificates.")
@click.option("--ca-cert", type=click.Path(dir_okay=False, exists=True),
              help="CA bundle to verify the endpoint's certificate with.")
@click.option("--no-usage", is_flag=True, help="Do not ask for stream_options.include_usage.")
@click.option("--strict", is_flag=True, help="Exit with status 3 when the client itself was "
              "the bottleneck (its figures are then not the endpoint's).")
@click.option("--mock-ttft-ms", type=float, default=20.0, show_default=True,
              help="Embedded mock (no --url): time to first token.")
@click.option("--mock-itl-ms", type=float, default=2.0, show_default=True,
              help="Embedded mock (no --url): inter-token latency.")
@click.option("--ray", "ray", metavar="auto|ADDRESS", help="Run on a Ray cluster: auto (the "
              "running cluster) or the head's address; needs pip install 'lens-fast[ray]'.")
@click.option("--hosts", type=int, help="With --ray: Ray nodes to send load from, one host "
              "agent of --cores workers each (default: every node with --cores CPUs; docs/ray.md).")
@click.option("--shared-output", is_flag=True, help="With --ray: --output is on a file system "
              "every Ray node mounts (NFS, a shared volume); each host writes its files there "
              "itself instead of sending them to the driver.")
def run_command(**o) -> None:
    """Profile an endpoint: open-loop (--rps) or closed-loop (--concurrency) streaming load.

    With CONFIG (a YAML or JSON file, docs/config.md) every scenario runs against every
    provider × model of the file, one after another; flags given on the command line override
    the file's values.

    \b
    Examples:
      lens-fast run
      lens-fast run bench.yaml --requests 20
      lens-fast run --url http://localhost:8000/v1 --model meta-llama/Llama-3.1-8B-Instruct \\
          --rps 20 --arrival poisson --duration 60s --output results/
      lens-fast run --provider anthropic --model claude-haiku-4-5 --concurrency 4 --requests 100
      lens-fast run --provider vllm --model Qwen/Qwen3-8B --ignore-eos --rps 10 --duration 60s
    """
    from click.core import ParameterSource

    from lens.engine.runner import check_formats, run_and_report

    if o["http2"] and o["client"] != "httpx":
        raise ConfigError("--http2 needs --client httpx (the fast client speaks HTTP/1.1)")
    ctx = click.get_current_context()
    if o["config"] is not None:
        given = {k for k in o if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
        sys.exit(run_config(o, given))
    given = ctx.get_parameter_source("provider") not in (ParameterSource.DEFAULT, None)
    formats = check_formats(o["format"])
    url, embedded = resolve_target(o, given)
    ray = ray_settings(o)
    plan = build_plan(o, url or "http://127.0.0.1:1/v1", embedded=embedded)
    if ray is not None:
        from lens.distributed.cli import run_on_ray

        sys.exit(run_on_ray(plan, ray, embedded=embedded, output=o["output"],
                            strict=o["strict"], progress=not o["no_progress"],
                            mock_ttft_ms=o["mock_ttft_ms"], mock_itl_ms=o["mock_itl_ms"],
                            argv=sys.argv, formats=formats, live=live_metrics(o)))
    code = run_and_report(plan, embedded=embedded, output=o["output"],
                          progress=not o["no_progress"], strict=o["strict"],
                          mock_ttft_ms=o["mock_ttft_ms"], mock_itl_ms=o["mock_itl_ms"],
                          argv=sys.argv, formats=formats, live=live_metrics(o))
    sys.exit(code)
