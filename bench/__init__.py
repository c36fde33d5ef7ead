"""Benchmarks: ``python -m bench.queue_bench`` (queue), ``python -m bench.run_all`` (all)."""
