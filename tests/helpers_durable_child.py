"""Child processes for tests/test_durable.py. Run as a script; the first argument is the mode.

``serve``: a fork server for the crash test. Starting Python and importing pymm costs more
than a whole admit/remove cycle, so the server imports once and forks one worker per line
``RUN <dir> <gen> <seed>`` read from stdin. It prints ``PID <gen> <pid>`` and, once the worker
is gone, ``EXIT <gen> <signal or -status>``. The worker admits and removes pods for ever and
announces each step as ``<gen> ADMITTING|ADMITTED|REMOVING|REMOVED <uid>``: the -ING line
before the call, the -ED line only after it returned, so the test knows what the state file
must contain whenever it kills the worker.

``lock-loop <dir> <name> <n> <start_ns>``: from monotonic time start_ns on, n sessions of
open (waiting for the lock) -> admit one pod -> close, each printed as one JSON line with the
time the lock was held and a digest of the state file when the session began and after its
admission.

``try-lock <dir>``: open without waiting; print ``LOCKED <message>`` or ``ACQUIRED``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

from pymm import Container, Machine, MemoryManager, Pod
from pymm.errors import StateLockedError
from pymm.statefile import STATE_FILE_NAME

MACHINE = Machine.synthetic(4, memory="64Gi")
RESERVED = MACHINE.reserve_per_node("1Gi")
# Well below the 4 x 63Gi allocatable, so admissions never fail for lack of memory.
LIVE_CAP = 24


def manager(state_dir: str | Path, *, lock_wait: bool | float = False) -> MemoryManager:
    return MemoryManager(
        MACHINE, reserved_memory=RESERVED, state_dir=state_dir, lock_wait=lock_wait
    )


def pod(uid: str) -> Pod:
    return Pod.of(uid, Container.of("c", cpu="1", memory="1Gi"))


def _say(line: str) -> None:
    # One write(2) per line: a pipe write below PIPE_BUF is atomic, so a kill never leaves
    # half a line, and nothing sits in a Python buffer that dies with the process.
    os.write(1, (line + "\n").encode())


def _worker(state_dir: str, gen: int, seed: int) -> None:
    rng = random.Random(seed)
    mm = manager(state_dir)
    # Pods restored from the file are still running: they count against the cap too.
    live: list[str] = sorted(mm.state.get("entries", {}))
    i = 0
    while True:
        uid = f"g{gen}-p{i}"
        i += 1
        _say(f"{gen} ADMITTING {uid}")
        result = mm.admit(pod(uid))
        if not result.admitted:
            _say(f"{gen} ERROR rejected {uid}: {result.reason}: {result.message}")
            os._exit(3)
        _say(f"{gen} ADMITTED {uid}")
        live.append(uid)
        while live and (len(live) > LIVE_CAP or rng.random() < 0.4):
            victim = live.pop(rng.randrange(len(live)))
            _say(f"{gen} REMOVING {victim}")
            mm.remove(victim)
            _say(f"{gen} REMOVED {victim}")


def serve() -> None:
    for line in sys.stdin:
        _, state_dir, gen, seed = line.split()
        pid = os.fork()
        if pid == 0:
            try:
                _worker(state_dir, int(gen), int(seed))
            except BaseException as e:
                _say(f"{gen} ERROR {type(e).__name__}: {e}")
                os._exit(4)
        _say(f"PID {gen} {pid}")
        _, status = os.waitpid(pid, 0)
        code = os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)
        _say(f"EXIT {gen} {code}")


def _digest(state_dir: str) -> str:
    return hashlib.sha256((Path(state_dir) / STATE_FILE_NAME).read_bytes()).hexdigest()


def lock_loop(state_dir: str, name: str, n: int, start_ns: int) -> None:
    # Both writers start together (CLOCK_MONOTONIC is system-wide), so they really contend
    # instead of one finishing before the other has imported pymm.
    time.sleep(max(0, start_ns - time.monotonic_ns()) / 1e9)
    for i in range(n):
        uid = f"{name}-{i}"
        with manager(state_dir, lock_wait=True) as mm:
            acquired = time.monotonic_ns()
            before = _digest(state_dir)
            admitted = mm.admit(pod(uid)).admitted
            after = _digest(state_dir)
            released = time.monotonic_ns()
        record = {
            "uid": uid,
            "admitted": admitted,
            "acquired": acquired,
            "released": released,
            "before": before,
            "after": after,
        }
        _say(json.dumps(record))


def try_lock(state_dir: str) -> None:
    try:
        mm = manager(state_dir)
    except StateLockedError as e:
        _say(f"LOCKED {e}")
        return
    mm.close()
    _say("ACQUIRED")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    mode, *rest = sys.argv[1:]
    if mode == "serve":
        serve()
    elif mode == "lock-loop":
        lock_loop(rest[0], rest[1], int(rest[2]), int(rest[3]))
    elif mode == "try-lock":
        try_lock(rest[0])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
