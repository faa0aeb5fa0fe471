"""Distributed load generation on Ray: one host agent per node, one global schedule.

``pip install 'lens-fast[ray]'``, then ``lens-fast run … --ray auto --hosts N`` or
``run_distributed(plan, address=…, hosts=N, out_dir=…)``. docs/ray.md describes the setup.
Ray is imported only when a distributed run starts.
"""
from lens.distributed.driver import DEFAULT_LEAD_S, require_ray, run_distributed
from lens.distributed.merge import merge_parquet, merge_summaries

__all__ = ["DEFAULT_LEAD_S", "merge_parquet", "merge_summaries", "require_ray",
           "run_distributed"]
