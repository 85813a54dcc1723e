"""Child process for tests/test_statefile.py: a writer to SIGKILL and a lock holder.

Run as a script (``python helpers_statefile_child.py <mode> ...``); the test module also
imports the payload codec from here so that the writer and the checker cannot disagree.

Modes:
  writer <path> <size>        loop forever: read the state, atomic_write the next generation.
  hold <dir> [release_after]  take StateDirLock, print "locked <pid>"; optionally release after
                              <release_after> s and print "released"; exit at stdin EOF.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
import time
from pathlib import Path

MAGIC = b"PYMMTEST"
_HEADER = struct.Struct(">8sQQ32s")  # magic, generation, body length, sha256(body)


class TornPayloadError(ValueError):
    """The file is not one complete payload written by the writer."""


def encode_payload(generation: int, size: int) -> bytes:
    # Alternating letters make a mix of two generations visible even if the checksum were wrong.
    body = (b"A" if generation % 2 == 0 else b"B") * size
    return _HEADER.pack(MAGIC, generation, size, hashlib.sha256(body).digest()) + body


def decode_payload(data: bytes) -> int:
    """Return the generation of a complete payload, or raise TornPayloadError."""
    if len(data) < _HEADER.size:
        raise TornPayloadError(f"short file: {len(data)} bytes")
    magic, generation, size, digest = _HEADER.unpack_from(data)
    body = data[_HEADER.size :]
    if magic != MAGIC:
        raise TornPayloadError(f"bad magic {magic!r}")
    if len(body) != size:
        raise TornPayloadError(f"body is {len(body)} bytes, header says {size}")
    if hashlib.sha256(body).digest() != digest:
        raise TornPayloadError("checksum mismatch")
    letter = b"A" if generation % 2 == 0 else b"B"
    if body.strip(letter):
        raise TornPayloadError(f"body is not all {letter!r}")
    return int(generation)


def _writer(path: Path, size: int) -> None:
    from pymm.statefile import atomic_write, read_file

    print("ready", flush=True)
    while True:
        current = read_file(path)
        generation = 0 if current is None else decode_payload(current)
        atomic_write(path, encode_payload(generation + 1, size))


def _hold(directory: Path, release_after: float | None) -> None:
    from pymm.statefile import StateDirLock

    lock = StateDirLock(directory)
    lock.acquire()
    print(f"locked {os.getpid()}", flush=True)
    if release_after is not None:
        time.sleep(release_after)
        lock.release()
        print("released", flush=True)
    # Stay alive until the test closes stdin, so a test can tell release from process exit.
    sys.stdin.read()
    lock.release()


def main(argv: list[str]) -> int:
    mode, *args = argv
    if mode == "writer":
        _writer(Path(args[0]), int(args[1]))
    elif mode == "hold":
        _hold(Path(args[0]), float(args[1]) if len(args) > 1 else None)
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
