"""matplotlib, loaded only by the commands that draw (``--plot``), for a headless PNG."""

from __future__ import annotations

from types import ModuleType

from pymm.errors import PymmError


def pyplot() -> ModuleType:
    try:
        import matplotlib
    except ImportError:
        raise PymmError(
            "--plot needs matplotlib: pip install 'pymm[plot]' (or drop --plot)"
        ) from None
    # A PNG needs no display, and a headless CI has none.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
