"""Benchmarks (`make bench`), never timed assertions in tests.

The machines are shared and noisy, so every benchmark measures Tasuki side by side with a
baseline in the same run and reports the ratio. Each `bench_*.py` module here has a
`main() -> dict` that prints its figures and returns them; `python -m tests.bench [NAME ...]`
runs them all (or the named ones) and writes `.tasuki/bench.json`.
"""
