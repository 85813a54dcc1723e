"""Benchmarks are tests too: each asserts its result before timing it. In CI they run with
``--benchmark-disable`` (once each, as smoke tests)."""
