"""Load benchmarks. Not imported by the app; run them as scripts (see bench/README.md)."""
