"""Benchmark harness for mavera (issue #8): ``python bench/run.py`` or ``python -m bench``."""
