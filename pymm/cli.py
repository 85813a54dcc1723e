"""The ``pymm`` command line. ``main(argv) -> int``; bad input gives one line and exit 2.

Each command lives in its own module under :mod:`pymm.commands` with ``register(subparsers)``
(which sets ``func``); this module only assembles the parser and reports errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pymm import __version__
from pymm.commands import admit, bench, demo, hints, machines, remove, replay, state, topology
from pymm.errors import PymmError, StateError, advice_for

# In the order ``pymm --help`` lists them.
COMMANDS = (demo, admit, hints, remove, machines, replay, topology, state, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pymm",
        description="NUMA-aware memory manager with kubelet-exact Memory/Topology Manager "
        "semantics.",
    )
    parser.add_argument("--version", action="version", version=f"pymm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (PymmError, OSError) as e:
        msg = str(e) or type(e).__name__
        print(f"pymm: error: {msg.splitlines()[0] if msg else msg}", file=sys.stderr)
        if isinstance(e, StateError):
            for line in getattr(e, "details", ()):
                print(f"  {line}", file=sys.stderr)
            print(f"pymm: advice: {advice_for(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
