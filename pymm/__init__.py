"""pymm: a NUMA-aware memory manager engine (placeholder until the engine lands)."""
