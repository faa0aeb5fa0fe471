"""lens.mock: an OpenAI-compatible streaming endpoint with known latencies and a truth record.

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
