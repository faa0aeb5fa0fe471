"""Self-hosted OpenAI-compatible servers: vLLM, SGLang and llama.cpp's llama-server.

They speak OpenAI chat/completions (wire-formats.md §8) and add a few request fields that a
benchmark wants. With ``--ignore-eos`` every request asks for exactly ``--max-tokens`` output:
``ignore_eos: true`` (and ``min_tokens`` where the server has it), the knob vLLM's own
benchmark client sets. ``stream_options.include_usage`` is sent as for OpenAI (SGLang's
default is off, vLLM's on; llama-server supports it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from lens.providers.openai import OpenAI

if TYPE_CHECKING:  # pragma: no cover
    from lens.engine.plan import RunPlan

__all__ = ["LlamaCpp", "SGLang", "VLLM"]


class VLLM(OpenAI):
    """vLLM's OpenAI-compatible server (``vllm serve``)."""

    name = "vllm"
    default_base_url = "http://localhost:8000/v1"
    api_key_env = "OPENAI_API_KEY"    # what clients of `vllm serve --api-key` use; optional

    def extras(self, plan: RunPlan) -> dict:
        if plan.ignore_eos:
            return {"ignore_eos": True, "min_tokens": plan.max_tokens}
        return {}

    def check(self, plan: RunPlan) -> None:
        pass                            # every option applies


class SGLang(VLLM):
    """SGLang's OpenAI-compatible server (``python -m sglang.launch_server``)."""

    name = "sglang"
    default_base_url = "http://localhost:30000/v1"


class LlamaCpp(VLLM):
    """llama.cpp's ``llama-server`` on its OpenAI-compatible routes (``/v1/...``)."""

    name = "llamacpp"
    default_base_url = "http://localhost:8080/v1"

    def extras(self, plan: RunPlan) -> dict:
        # llama-server has ignore_eos but no min_tokens
        return {"ignore_eos": True} if plan.ignore_eos else {}
