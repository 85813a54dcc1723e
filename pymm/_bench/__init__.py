"""Benchmark scenarios for ``benches/`` and ``pymm bench``.

Kept out of the runtime import path: only ``pymm bench`` (lazily) and the benchmark tests
import :mod:`pymm._bench.suite`, so ``import pymm`` and every other command stay light.
"""
