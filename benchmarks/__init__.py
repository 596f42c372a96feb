"""Benchmarks: accuracy of every sampler per dataset, and efficiency (latency, FLOPs, memory)."""
