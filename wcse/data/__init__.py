"""Benchmark datasets: raw rows from local files or the HF hub, loaded into ``Problem`` records."""
