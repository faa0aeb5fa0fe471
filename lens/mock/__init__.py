"""lens.mock: a streaming LLM endpoint in the OpenAI, Anthropic, Gemini, Cohere or TGI dialect, with
known latencies, a truth record and a record of the requests it received.

``lens-fast mock`` serves it; ``MockProcess`` runs it in a child process; ``load_truth`` reads
what it really did; ``saturation_rps`` says where its capacity model saturates.
See docs/mock.md.
"""
from lens.mock.capacity import saturation_rps
from lens.mock.config import MockConfig
from lens.mock.distributions import DistSpec
from lens.mock.process import MockProcess
from lens.mock.truth import load_truth

__all__ = ["DistSpec", "MockConfig", "MockProcess", "load_truth", "saturation_rps"]
