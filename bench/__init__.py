"""Benchmarks: `make bench SIZE=S|M|L` (python -m bench --size S)."""
