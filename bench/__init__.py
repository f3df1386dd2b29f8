"""Benchmarks: each hot path beside its real alternative, measured in the same run."""
