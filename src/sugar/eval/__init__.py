"""Evaluation: standard metrics, benchmarks on the world or the real datasets, reports."""
