"""The ``pymm`` command line. ``main(argv) -> int``; bad input gives one line and exit 2.

Each command lives in its own module under :mod:`pymm.commands` with ``register(subparsers)``
(which sets ``func``); this module only assembles the parser and reports errors.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn

from pymm import __version__
from pymm._text import printable
from pymm.commands import (
    admit,
    agent,
    bench,
    defrag,
    demo,
    hints,
    machines,
    nrt,
    plan,
    remove,
    replay,
    resize,
    simulate,
    state,
    topology,
)
from pymm.errors import PymmError, StateError, advice_for

# In the order ``pymm --help`` lists them.
COMMANDS = (
    demo,
    admit,
    plan,
    defrag,
    hints,
    resize,
    remove,
    machines,
    replay,
    simulate,
    topology,
    state,
    nrt,
    agent,
    bench,
)

#: The exit status of a command whose reader went away (128 + SIGPIPE, as a shell reports a
#: program killed by the signal), so ``set -o pipefail`` scripts see what happened.
EXIT_BROKEN_PIPE = 141


class _Parser(argparse.ArgumentParser):
    """argparse with pymm's error format: one ``pymm: error:`` line instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"pymm: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pymm",
        description="NUMA-aware memory manager with kubelet-exact Memory/Topology Manager "
        "semantics.",
    )
    parser.add_argument("--version", action="version", version=f"pymm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def _report(e: PymmError | OSError) -> None:
    # Escaped whole: a name quoted in a message (a pod uid, a path) cannot forge a line.
    msg = printable(str(e).strip()) or type(e).__name__
    print(f"pymm: error: {msg}", file=sys.stderr)
    if isinstance(e, StateError):
        for line in getattr(e, "details", ()):
            print(f"  {printable(line)}", file=sys.stderr)
        print(f"pymm: advice: {printable(advice_for(e))}", file=sys.stderr)


class _EscapedLines(logging.Handler):
    """The ``pymm`` loggers' records while a command runs: one line each on stderr, escaped
    like every other output (``pymm agent`` and ``nrt --watch`` replace this with JSON)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = printable(record.getMessage())
            print(f"pymm: {record.levelname.lower()}: {line}", file=sys.stderr)
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def _log_to_stderr() -> Iterator[None]:
    # For the command's run only: main() called in-process (tests, an embedding program) must
    # leave the program's logging as it found it.
    logger = logging.getLogger("pymm")
    if logger.handlers:
        yield
        return
    handler = _EscapedLines(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _quiet_broken_pipe() -> int:
    # Python would flush stdout again at exit and print "Exception ignored ... BrokenPipeError";
    # pointing the descriptor at /dev/null makes that last flush succeed silently.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        # --help, --version and usage errors: a status to return, as from any command.
        return e.code if isinstance(e.code, int) else 2
    try:
        with _log_to_stderr():
            status = int(args.func(args))
        # Surface a closed pipe here, not in the interpreter's final flush.
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (PymmError, OSError) as e:
        _report(e)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
