"""purgewarden's benchmark suite: `uv run python -m bench` (see bench/__main__.py and BENCHMARKS.md)."""
