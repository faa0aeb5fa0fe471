"""``lens-fast mock``: flags → MockConfig → lens.mock.workers.run."""
from __future__ import annotations

import click

from lens.mock.config import API_NAMES, MockConfig, parse_cpus, parse_faults
from lens.mock.distributions import DIST_KINDS, DistSpec

__all__ = ["mock_command"]

_DIST = click.Choice(DIST_KINDS)


@click.command(context_settings={"help_option_names": ["-h", "--help"],
                                 "max_content_width": 100})
@click.option("--api", type=click.Choice(API_NAMES), default="openai", show_default=True,
              help="The API (dialect) to speak; routes and base URLs in docs/mock.md.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True,
              help="Port; 0 picks a free one (printed in the listening line).")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Worker processes sharing the port with SO_REUSEPORT.")
@click.option("--model", default="lens-mock", show_default=True,
              help="Model listed by GET /v1/models; responses echo the request's model "
                   "(Gemini: the path's), except TGI's, which name this one.")
@click.option("--ttft-ms", type=float, default=20.0, show_default=True,
              help="Mean time to first token, from admission, in ms.")
@click.option("--ttft-dist", type=_DIST, default="fixed", show_default=True,
              help="Distribution of the TTFT.")
@click.option("--ttft-spread-ms", type=float, default=0.0, show_default=True,
              help="TTFT spread in ms: half-width (uniform) or std dev (normal, lognormal).")
@click.option("--itl-ms", type=float, default=2.0, show_default=True,
              help="Mean inter-token latency in ms (0: all tokens in one write).")
@click.option("--itl-dist", type=_DIST, default="fixed", show_default=True,
              help="Distribution of the ITL.")
@click.option("--itl-spread-ms", type=float, default=0.0, show_default=True,
              help="ITL spread in ms: half-width (uniform) or std dev (normal, lognormal).")
@click.option("--output-tokens", type=int, default=None,
              help="Tokens per response, capped by the request's max_tokens "
                   "(finish_reason \"stop\" when fewer). Default: max_tokens, or 16.")
@click.option("--max-concurrency", type=int, default=0, show_default=True,
              help="Requests generating at once; later ones wait FIFO (0: no limit).")
@click.option("--batch-slowdown", type=float, default=0.0, show_default=True,
              help="S: every ITL is multiplied by 1 + S*(active-1), active = requests "
                   "holding a slot.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the TTFT/ITL draws (worker k uses [seed, k]).")
@click.option("--truth-file", default=None, metavar="PATH",
              help="On stop, worker k writes its ground-truth record to PATH.k (.npz).")
@click.option("--truth-limit", type=int, default=100_000, show_default=True,
              help="Requests recorded per worker; later ones are counted, not recorded.")
@click.option("--cpu", "cpu", default=None, metavar="LIST",
              help="Pin worker k to the k-th CPU of LIST (e.g. 1, or 2,3, or 0-3), cycling.")
@click.option("--capture", type=int, default=1000, show_default=True, metavar="N",
              help="Requests each worker keeps for GET /lens/requests (0: none).")
@click.option("--require-key", default=None, metavar="VALUE", envvar="LENS_MOCK_REQUIRE_KEY",
              show_envvar=True,
              help="Answer 401 unless the API's auth header carries VALUE (never shown).")
@click.option("--fail-rate", type=float, default=0.0, show_default=True, metavar="P",
              help="Fail this fraction of request ids, every attempt (seeded hash of --seed and "
                   "x-request-id; docs/mock.md).")
@click.option("--fail-first", type=int, default=0, show_default=True, metavar="N",
              help="Fail the first N attempts of each x-request-id (per worker).")
@click.option("--fail-status", type=int, default=500, show_default=True, metavar="CODE",
              help="Status of an injected failure (429, 5xx, or a 4xx).")
@click.option("--retry-after", type=float, default=None, metavar="S",
              help="Retry-After seconds sent with an injected 429 or 503.")
@click.option("--fault", "faults", multiple=True, metavar="KIND=RATE",
              help="Break this fraction of request ids this way (repeatable; seeded hash of "
                   "--seed and x-request-id). KIND: status, reset_before_headers, "
                   "reset_mid_stream, malformed_sse, invalid_json, oversized_event, "
                   "stream_error, stall_after_headers, slow_first_token, never_end "
                   "(docs/mock.md).")
@click.option("--fault-delay-ms", type=float, default=1000.0, show_default=True, metavar="MS",
              help="How late a slow_first_token fault's first token is.")
def mock_command(api: str, host: str, port: int, workers: int, model: str, ttft_ms: float,
                 ttft_dist: str, ttft_spread_ms: float, itl_ms: float, itl_dist: str,
                 itl_spread_ms: float, output_tokens: int | None, max_concurrency: int,
                 batch_slowdown: float, seed: int, truth_file: str | None, truth_limit: int,
                 cpu: str | None, capture: int, require_key: str | None, fail_rate: float,
                 fail_first: int, fail_status: int, retry_after: float | None,
                 faults: tuple[str, ...], fault_delay_ms: float) -> None:
    """Serve a streaming LLM endpoint with known latencies, in one API's dialect.

    \b
    Routes by --api (base URL: http://HOST:PORT, plus /v1 for openai):
      openai     POST /v1/chat/completions, /v1/completions, GET /v1/models
      anthropic  POST /v1/messages
      gemini     POST /v1beta/models/{model}:streamGenerateContent[?alt=sse]
      cohere     POST /v2/chat
      tgi        POST /generate_stream, /generate, /v1/chat/completions
    and always GET /lens/truth (this worker's record, .npz),
    GET|DELETE /lens/requests (the last --capture requests), GET /health.

    \b
    Timing and capacity (docs/mock.md):
      admission   at most C = --max-concurrency requests generate; others wait FIFO
      tokens      the first --ttft-ms after admission, then one per ITL
      slowdown    each ITL x (1 + S*(active-1)), S = --batch-slowdown
      saturation  C / D req/s with T tokens per request and
                  D = ttft + (T-1)*itl*(1 + S*(C-1)) ms
                  (lens.mock.capacity.saturation_rps)

    \b
    Faults (docs/mock.md), e.g. --fault reset_mid_stream=0.1 --fault status=0.05:
    which ids meet which fault follows from --seed (lens.mock.faults.fault_of); each
    injected fault is kept in the truth record (lens.mock.truth.load_faults).
    """
    from lens.mock.workers import run

    config = MockConfig(
        host=host, port=port, workers=workers, model=model,
        ttft=DistSpec(ttft_dist, ttft_ms, ttft_spread_ms),
        itl=DistSpec(itl_dist, itl_ms, itl_spread_ms),
        output_tokens=output_tokens, max_concurrency=max_concurrency,
        batch_slowdown=batch_slowdown, seed=seed, truth_file=truth_file,
        truth_limit=truth_limit, cpus=parse_cpus(cpu) if cpu is not None else None,
        api=api, capture=capture, require_key=require_key, fail_rate=fail_rate,
        fail_first=fail_first, fail_status=fail_status, retry_after=retry_after,
        faults=parse_faults(faults), fault_delay_ms=fault_delay_ms,
    )
    raise SystemExit(run(config))
