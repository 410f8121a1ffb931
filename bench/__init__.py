"""Benchmarks: our code against a baseline measured in the same run, reported as ratios.

Each module runs as `python -m bench.<name>` (or `python bench/<name>.py`); results and how they
were obtained are in bench/README.md.
"""
