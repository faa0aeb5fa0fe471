"""``lens-fast validate CONFIG``: check a config file without sending anything.

Loads the file, expands ``${VAR}``, validates every key, reads its datasets and tokenizer and
builds every plan, exactly as ``lens-fast run CONFIG`` does before its first request. A
mistake ends with one ``ConfigError`` line (file, key path, found, expected; exit status 1).
"""
from __future__ import annotations

import click


@click.command("validate")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--tokenizer", type=click.Path(), metavar="PATH",
              help="Check with this Hugging Face tokenizer, as `run --tokenizer` would use.")
def validate_command(config: str, tokenizer: str | None) -> None:
    """Check CONFIG (YAML or JSON) without sending a request; print what it would run.

    \b
    Example:
      lens-fast validate bench.yaml
    """
    from lens.config import build_plans, load_config
    from lens.engine.command import check_wire

    cfg = load_config(config)
    plans = build_plans(cfg, {"tokenizer": tokenizer} if tokenizer else None)
    for plan in plans:
        check_wire(plan)
    click.echo(f"{config}: OK — {len(cfg.scenarios)} scenario(s) × "
               f"{sum(len(t.models) for t in cfg.targets)} provider×model pair(s) = "
               f"{len(plans)} run(s)")
    for p in plans:
        load = f"rps {p.rps:g} ({p.arrival})" if p.rps is not None else \
            f"concurrency {p.concurrency}"
        size = f"{p.requests} requests" if p.requests is not None else \
            f"{p.duration_s:g} s"
        pool = f", {len(p.prompts)} prompts" if p.prompts else ""
        click.echo(f"  {p.scenario}: {p.provider} {p.model} at {p.url} — {load}, {size}"
                   f"{pool}")
    for e in cfg.exports:
        click.echo(f"  export {e.format}: {e.path}")
