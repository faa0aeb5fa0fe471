"""Workloads: when requests are sent (arrivals) and what they carry (prompts)."""
