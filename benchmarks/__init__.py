"""Benchmarks of tf_realnvp: `python -m benchmarks.benchmark` (see BENCHMARKS.md)."""
