from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

CONFORMANCE = Path(__file__).parent / "conformance"

# fast: every run; thorough: the slow suite CI runs (`-m "slow or fuzz"`); slow: by hand, for a
# deep search (about ten minutes on the fuzz suites alone).
settings.register_profile("fast", max_examples=60, deadline=None)
settings.register_profile("thorough", max_examples=200, deadline=None)
settings.register_profile("slow", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


@pytest.fixture
def conformance() -> Path:
    return CONFORMANCE
