"""lens-fast: latency profiler and load generator for LLM inference endpoints."""
from lens._version import __version__
from lens.errors import ConfigError, EndpointError, LensError, RunError

__all__ = ["ConfigError", "EndpointError", "LensError", "RunError", "__version__"]
