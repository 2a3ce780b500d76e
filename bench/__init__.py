"""Benchmark of the community bridge against the numbers of ARCHITECTURE.md section 6.

``scripts/bench`` (or ``python -m bench``) runs the real mock grid, the real bridge and
simulated homes in several client processes on 127.0.0.1; see ``bench.harness``.
"""
