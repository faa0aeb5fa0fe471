"""``lens-fast run``: profile an endpoint (or the embedded mock) with open- or closed-loop load."""
from __future__ import annotations

import sys

import click

from lens.engine.plan import ENDPOINT_PATHS, RunPlan, api_key_from_env, check_url
from lens.engine.units import parse_duration, parse_timeouts
from lens.errors import ConfigError
from lens.workload.arrivals import ARRIVALS

DEFAULT_REQUESTS = 200
DEFAULT_CONCURRENCY = 16


def build_plan(o: dict, url: str) -> RunPlan:
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
    for name in ("requests", "max_tokens", "max_inflight", "cores", "input_tokens"):
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
    return RunPlan(
        url=url,
        model=o["model"],
        endpoint=o["endpoint"],
        api_key=api_key_from_env(o["api_key_env"]),
        cores=cores,
        rps=rps,
        arrival=o["arrival"],
        burstiness=o["burstiness"] or 1.0,
        concurrency=conc,
        duration_s=duration,
        requests=requests,
        max_inflight=o["max_inflight"] or 10000,
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
    )


@click.command("run")
@click.option("--url", help="Base URL of an OpenAI-compatible endpoint, e.g. "
              "http://localhost:8000/v1. Without it, run starts the embedded mock endpoint on "
              "a free loopback port and profiles it.")
@click.option("--model", default="lens-mock", show_default=True, help="Model name to request.")
@click.option("--endpoint", type=click.Choice(sorted(ENDPOINT_PATHS)), default="chat",
              show_default=True, help="chat (/chat/completions) or completions (legacy).")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True, metavar="VAR",
              help="Environment variable holding the API key (sent as a bearer token when set).")
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
@click.option("--max-tokens", type=int, default=128, show_default=True,
              help="max_tokens of each request.")
@click.option("--prompt", help="The prompt text of every request.")
@click.option("--input-tokens", type=int, help="Synthetic prompts of about N tokens "
              "(default 32).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of arrivals and synthetic prompts.")
@click.option("--timeout", help="TOTAL, or CONNECT/FIRST_TOKEN/TOTAL (default 10s/60s/600s).")
@click.option("--warmup", type=int, default=0, show_default=True,
              help="Requests sent before measuring, excluded from results.")
@click.option("--output", "output", type=click.Path(file_okay=False),
              help="Directory for requests.parquet, tokens.parquet and summary.json "
              "(default: lens-results/run-<UTC time>).")
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
def run_command(**o) -> None:
    """Profile an endpoint: open-loop (--rps) or closed-loop (--concurrency) streaming load.

    \b
    Examples:
      lens-fast run
      lens-fast run --url http://localhost:8000/v1 --model meta-llama/Llama-3.1-8B-Instruct \\
          --rps 20 --arrival poisson --duration 60s --output results/
      lens-fast run --url http://localhost:8080/v1 --concurrency 4 --requests 100
    """
    from lens.engine.runner import run_and_report

    if o["http2"] and o["client"] != "httpx":
        raise ConfigError("--http2 needs --client httpx (the fast client speaks HTTP/1.1)")
    url = check_url(o["url"]) if o["url"] else None
    plan = build_plan(o, url or "http://127.0.0.1:1/v1")
    code = run_and_report(plan, embedded=url is None, output=o["output"],
                          progress=not o["no_progress"], strict=o["strict"],
                          mock_ttft_ms=o["mock_ttft_ms"], mock_itl_ms=o["mock_itl_ms"],
                          argv=sys.argv)
    sys.exit(code)
