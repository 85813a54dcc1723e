"""MemoryManager(state_dir=...): the state file survives SIGKILL, refuses damaged input without
touching it, serialises concurrent writers, and restores exactly.

Child processes come from tests/helpers_durable_child.py. The crash test kills workers of a
fork server (see that file) PYMM_CRASH_KILLS times (default 300); PYMM_CRASH_SEED replays a
run.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_durable_child import MACHINE, RESERVED, manager, pod

from pymm import Container, MemoryManager, Pod, _engine
from pymm.errors import (
    CheckpointCorruptedError,
    StateFileError,
    StateLockedError,
    StateMismatchError,
)
from pymm.machine import Machine
from pymm.statefile import STATE_FILE_NAME

HELPER = Path(__file__).with_name("helpers_durable_child.py")
REPO_ROOT = Path(__file__).resolve().parent.parent
TMP_GLOB = f".{STATE_FILE_NAME}.tmp-*"


def _child_env() -> dict[str, str]:
    # The children must import this checkout's pymm and the helper next to this file.
    env = dict(os.environ)
    paths = [str(REPO_ROOT), str(HELPER.parent), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def _entries(text: str) -> set[str]:
    _, _, data = _engine.decode_checkpoint(text)
    return set(data["entries"])


# -- crash safety ---------------------------------------------------------------------------


class _Lines:
    """Line reader over a pipe with a deadline, so a stuck child fails the test, not CI."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buf = b""

    def next(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line from the child within {timeout} s")
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if ready:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    raise AssertionError(f"child closed its output; pending: {self._buf!r}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()


def _expected_entries(before: set[str], events: list[tuple[str, str]]) -> list[set[str]]:
    """The entry sets the file may hold after a worker that printed ``events`` was killed.

    A worker's manager restores every pod of the file as running, then adds and removes its
    own. A step announced but not completed may or may not have reached the file.
    """
    current = set(before)
    pending: tuple[str, str] | None = None
    for verb, uid in events:
        if verb in ("ADMITTING", "REMOVING"):
            pending = (verb, uid)
        elif verb == "ADMITTED":
            current = current | {uid}
            pending = None
        elif verb == "REMOVED":
            current = current - {uid}
            pending = None
    options = [current]
    if pending is not None:
        verb, uid = pending
        options.append(current | {uid} if verb == "ADMITTING" else current - {uid})
    return options


@pytest.mark.slow
def test_sigkill_at_random_moments_never_tears_or_loses_state(tmp_path: Path) -> None:
    kills = int(os.environ.get("PYMM_CRASH_KILLS", "300"))
    seed = int(os.environ.get("PYMM_CRASH_SEED", str(random.randrange(2**32))))
    rng = random.Random(seed)
    state_dir = tmp_path / "state"
    path = state_dir / STATE_FILE_NAME
    server = subprocess.Popen(
        [sys.executable, str(HELPER), "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_child_env(),
    )
    assert server.stdin is not None and server.stdout is not None
    lines = _Lines(server.stdout.fileno())
    stats = {"in_flight": 0, "temporaries_left": 0, "admitted": 0, "removed": 0, "no_file": 0}
    before: set[str] | None = None  # None: no state file yet
    try:
        for gen in range(kills):
            where = f"seed {seed}, worker {gen}"
            server.stdin.write(f"RUN {state_dir} {gen} {rng.randrange(2**32)}\n".encode())
            server.stdin.flush()
            output: list[str] = []
            pid = None
            while pid is None:
                line = lines.next()
                if line.startswith(f"PID {gen} "):
                    pid = int(line.split()[2])
                else:
                    output.append(line)
            # Up to ~5 operations of ~10 ms: kills land in start-up, admission and removal.
            time.sleep(rng.uniform(0, 0.05))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while not (line := lines.next()).startswith(f"EXIT {gen} "):
                output.append(line)
            errors = [x for x in output if " ERROR " in x]
            assert not errors, (where, errors)
            assert int(line.split()[2]) == signal.SIGKILL, (where, output)
            events = [(v, u) for _, v, u in (x.split() for x in output)]

            if not path.exists():
                # Killed before its first write on an empty directory: nothing to check.
                assert before is None and not events, (where, events)
                stats["no_file"] += 1
                continue
            text = path.read_text()
            got = _entries(text)  # raises if the checksum or structure is broken
            options = _expected_entries(before or set(), events)
            assert got in options, (where, sorted(got), [sorted(o) for o in options], events)

            # The wording of the same invariant, for the steps this worker finished.
            done = [u for v, u in events if v == "ADMITTED"]
            removed = {u for v, u in events if v == "REMOVED"}
            removing = events[-1][1] if events and events[-1][0] == "REMOVING" else None
            assert {u for u in done if u not in removed and u != removing} <= got, where
            assert not removed & got, where

            stats["temporaries_left"] += len(list(state_dir.glob(TMP_GLOB)))
            with manager(state_dir) as mm:
                assert mm.checkpoint() == text, where
            assert not list(state_dir.glob(TMP_GLOB)), "opening must clean stale temporaries"
            stats["in_flight"] += bool(events) and events[-1][0].endswith("ING")
            stats["admitted"] += len(done)
            stats["removed"] += len(removed)
            before = got
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    print(f"crash test: {kills} kills, seed {seed}, {stats}")
    if kills >= 50:
        # Otherwise the loop did not exercise what it claims to.
        assert stats["in_flight"] > 0 and stats["admitted"] > kills // 2, stats


def test_expected_entries_model() -> None:
    # The crash test's oracle, checked on its own so a wrong model cannot hide a bug.
    assert _expected_entries({"old"}, []) == [{"old"}]
    assert _expected_entries({"old"}, [("ADMITTING", "a")]) == [{"old"}, {"old", "a"}]
    assert _expected_entries({"old"}, [("ADMITTING", "a"), ("ADMITTED", "a")]) == [{"old", "a"}]
    steps = [("ADMITTING", "a"), ("ADMITTED", "a"), ("ADMITTING", "b"), ("ADMITTED", "b")]
    assert _expected_entries(set(), [*steps, ("REMOVING", "a")]) == [{"a", "b"}, {"b"}]
    assert _expected_entries(set(), [*steps, ("REMOVING", "a"), ("REMOVED", "a")]) == [{"b"}]


# -- damaged input is refused and left alone ------------------------------------------------


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, bytes]:
    """A state directory whose file holds one admitted pod; returns it and the file's bytes."""
    state_dir = tmp_path / "state"
    with manager(state_dir) as mm:
        assert mm.admit(pod("a")).admitted
    return state_dir, (state_dir / STATE_FILE_NAME).read_bytes()


def _flip_digit(data: bytes) -> bytes:
    # In the part the kubelet reads: a V3 file's data (1.37+ ignore its V1 fields).
    quote, start = (b'"', 0)
    if b'"data":' in data:
        quote, start = (b'\\"', data.index(b'"data":'))
    key = quote + b"free" + quote + b":"
    at = data.index(key, data.index(quote + b"memory" + quote + b":", start)) + len(key) + 1
    assert data[at - 1 : at + 1].isdigit()
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


DAMAGE = {
    "bit-flip": (_flip_digit, "checkpoint is corrupted"),
    "truncated": (lambda d: d[: len(d) // 2], "unexpected end of JSON input"),
    "empty": (lambda d: b"", "unexpected end of JSON input"),
    "garbage-json": (lambda d: b'{"policyName":"Static","machineState":{"0":[', "JSON"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_file_is_refused_and_kept(kind: str, written: tuple[Path, bytes]) -> None:
    state_dir, good = written
    path = state_dir / STATE_FILE_NAME
    damage, reason = DAMAGE[kind]
    bad = damage(good)
    path.write_bytes(bad)
    with pytest.raises(CheckpointCorruptedError) as info:
        manager(state_dir)
    message = str(info.value)
    assert reason in message
    assert message.startswith("could not restore state from checkpoint: ")
    # What to do, in the kubelet's words, naming the file.
    assert f'please drain this node and delete the memory manager checkpoint file "{path}"' in (
        message
    )
    assert path.read_bytes() == bad
    # Nothing was written beside it either.
    assert sorted(p.name for p in state_dir.iterdir()) == [".pymm.lock", STATE_FILE_NAME]


def test_other_policy_in_file_is_refused_and_kept(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    MemoryManager(MACHINE, memory_policy="None", state_dir=state_dir).close()
    path = state_dir / STATE_FILE_NAME
    written = path.read_bytes()
    assert json.loads(written)["policyName"] == "None"
    with pytest.raises(StateMismatchError) as info:
        manager(state_dir)
    assert 'configured policy "Static" differs from state checkpoint policy "None"' in str(
        info.value
    )
    assert "please drain this node and delete the memory manager checkpoint file" in str(info.value)
    assert path.read_bytes() == written


def test_changed_machine_is_refused_and_kept(written: tuple[Path, bytes]) -> None:
    state_dir, good = written
    smaller = Machine.synthetic(4, memory="32Gi")
    with pytest.raises(StateMismatchError) as info:
        MemoryManager(smaller, reserved_memory=RESERVED, state_dir=state_dir)
    assert "the expected machine state is different from the real one" in str(info.value)
    assert (state_dir / STATE_FILE_NAME).read_bytes() == good


def test_non_utf8_file_is_refused_and_kept(written: tuple[Path, bytes]) -> None:
    state_dir, _ = written
    path = state_dir / STATE_FILE_NAME
    path.write_bytes(b"\xff\xfe\x00garbage")
    # Either class is an honest refusal; what matters is that nothing is overwritten.
    with pytest.raises((CheckpointCorruptedError, StateFileError)) as info:
        manager(state_dir)
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"\xff\xfe\x00garbage"


def test_symlink_at_state_file_is_refused_and_not_followed(
    written: tuple[Path, bytes], tmp_path: Path
) -> None:
    state_dir, good = written
    path = state_dir / STATE_FILE_NAME
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(good)  # a valid file: the refusal must not depend on the content
    path.unlink()
    path.symlink_to(elsewhere)
    with pytest.raises(StateFileError) as info:
        manager(state_dir)
    assert info.value.errno == errno.ELOOP
    assert "symbolic link" in str(info.value) and str(path) in str(info.value)
    assert path.is_symlink() and os.readlink(path) == str(elsewhere)
    assert elsewhere.read_bytes() == good


def test_state_dir_that_is_a_file_is_refused_and_kept(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "state"
    not_a_dir.write_bytes(b"precious")
    with pytest.raises(StateFileError) as info:
        manager(not_a_dir)
    assert info.value.errno == errno.ENOTDIR
    assert f"state directory {not_a_dir} exists but is not a directory" in str(info.value)
    assert not_a_dir.read_bytes() == b"precious"


@contextlib.contextmanager
def _immutable(path: Path) -> Iterator[None]:
    """``chattr +i`` binds root too (the suite usually runs as root, for whom chmod is no
    barrier); skip where the tool or the file system does not allow it."""
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("chattr not installed")
    done = subprocess.run([chattr, "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not permitted here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def test_immutable_state_dir_fails_the_write_and_keeps_the_file(
    written: tuple[Path, bytes],
) -> None:
    state_dir, good = written
    path = state_dir / STATE_FILE_NAME
    with _immutable(state_dir):
        with manager(state_dir) as mm:  # reading and locking still work
            with pytest.raises(StateFileError) as info:
                mm.admit(pod("b"))
        assert info.value.errno in (errno.EPERM, errno.EACCES, errno.EROFS)
        assert f"cannot write state file {path}" in str(info.value)
        assert path.read_bytes() == good
        assert not list(state_dir.glob(TMP_GLOB))


def _replace_with_symlink(path: Path, _good: bytes) -> None:
    path.unlink()
    path.symlink_to(path.with_name("x"))


READ_FAILURES: dict[str, Callable[[Path, bytes], object]] = {
    # The engine's refusal: MemoryManager closes its store before re-raising.
    "corrupted": lambda path, good: path.write_bytes(good[:10]),
    # Refusals while reading the file, before the engine is involved.
    "symlink": _replace_with_symlink,
    "non-utf8": lambda path, good: path.write_bytes(b"\xff"),
}


@pytest.mark.parametrize(
    "kind",
    [
        "corrupted",
        "symlink",
        "non-utf8",
    ],
)
def test_failed_open_releases_the_lock(kind: str, written: tuple[Path, bytes]) -> None:
    state_dir, good = written
    path = state_dir / STATE_FILE_NAME
    READ_FAILURES[kind](path, good)
    with pytest.raises((StateFileError, CheckpointCorruptedError)) as info:
        manager(state_dir)
    # An operator fixes the file and retries while the first error is still being handled.
    if path.is_symlink():
        path.unlink()
    path.write_bytes(good)
    with manager(state_dir) as mm:
        assert set(mm.state["entries"]) == {"a"}
    assert info.value is not None


# -- concurrent writers ---------------------------------------------------------------------


def test_second_process_without_wait_gets_state_locked_error(written: tuple[Path, bytes]) -> None:
    state_dir, good = written

    def try_lock() -> str:
        done = subprocess.run(
            [sys.executable, str(HELPER), "try-lock", str(state_dir)],
            capture_output=True,
            text=True,
            env=_child_env(),
            timeout=30,
            check=True,
        )
        return done.stdout.strip()

    with manager(state_dir) as mm:
        answer = try_lock()
        assert answer.startswith(f"LOCKED state directory {state_dir} is locked by process ")
        assert str(os.getpid()) in answer
        assert "stop that pymm process or wait for it to finish" in answer
        assert (state_dir / STATE_FILE_NAME).read_bytes() == good
        assert mm.admit(pod("b")).admitted  # the holder is unaffected
    assert try_lock() == "ACQUIRED"


def test_same_process_second_manager_is_locked_out(written: tuple[Path, bytes]) -> None:
    state_dir, _ = written
    with manager(state_dir):
        with pytest.raises(StateLockedError, match="locked by this process"):
            manager(state_dir)


SESSIONS_PER_WRITER = 40


@pytest.fixture(scope="module")
def two_writers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Two processes each doing open (lock_wait=True) -> admit one pod -> close, repeatedly."""
    state_dir = tmp_path_factory.mktemp("two-writers") / "state"
    manager(state_dir).close()  # the initial (empty) state, so every session reads a file
    start = time.monotonic_ns() + 2 * 10**9
    children = [
        subprocess.Popen(
            [sys.executable, str(HELPER), "lock-loop", str(state_dir), name, str(n), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_child_env(),
        )
        for name, n in (("w1", SESSIONS_PER_WRITER), ("w2", SESSIONS_PER_WRITER))
    ]
    sessions = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        sessions += [json.loads(line) for line in out.splitlines()]
    sessions.sort(key=lambda s: s["acquired"])
    return state_dir, sessions


def test_two_writers_hold_the_lock_one_at_a_time(
    two_writers: tuple[Path, list[dict[str, Any]]],
) -> None:
    _, sessions = two_writers
    assert len(sessions) == 2 * SESSIONS_PER_WRITER
    assert all(s["admitted"] for s in sessions)
    for prev, cur in itertools.pairwise(sessions):
        assert prev["released"] < cur["acquired"], (prev["uid"], cur["uid"])
    writers = [s["uid"].split("-")[0] for s in sessions]
    switches = sum(a != b for a, b in itertools.pairwise(writers))
    # Both really competed for the lock; otherwise this proved nothing.
    assert switches >= 2, writers


def test_two_writers_never_lose_an_update(
    two_writers: tuple[Path, list[dict[str, Any]]],
) -> None:
    # Each session starts from exactly the file the previous one left: no write was based
    # on a stale read, whichever process made it.
    state_dir, sessions = two_writers
    for prev, cur in itertools.pairwise(sessions):
        assert cur["before"] == prev["after"], (prev["uid"], cur["uid"])
    final = (state_dir / STATE_FILE_NAME).read_bytes()
    assert hashlib.sha256(final).hexdigest() == sessions[-1]["after"]


def test_two_writers_never_over_commit(two_writers: tuple[Path, list[dict[str, Any]]]) -> None:
    state_dir, sessions = two_writers
    text = (state_dir / STATE_FILE_NAME).read_text()
    _, _, data = _engine.decode_checkpoint(text)
    for node, state in data["machineState"].items():
        for resource, table in state["memoryMap"].items():
            assert table["reserved"] <= table["allocatable"], (node, resource)
            assert table["reserved"] + table["free"] == table["allocatable"], (node, resource)
    admitted = {s["uid"] for s in sessions}
    assert set(data["entries"]) <= admitted
    assert sessions[-1]["uid"] in data["entries"]
    with manager(state_dir) as mm:
        assert mm.checkpoint() == text


def test_two_writers_keep_every_admitted_pod_exactly_once(
    two_writers: tuple[Path, list[dict[str, Any]]],
) -> None:
    state_dir, sessions = two_writers
    _, _, data = _engine.decode_checkpoint((state_dir / STATE_FILE_NAME).read_text())
    assert sorted(data["entries"]) == sorted(s["uid"] for s in sessions)


# -- restart through the file ---------------------------------------------------------------


def test_restart_through_the_file_restores_the_same_checkpoint(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    machine = Machine.synthetic(4, memory="16Gi", hugepages={"2Mi": 512})
    reserved = machine.reserve_per_node("1Gi")

    def open_manager() -> MemoryManager:
        return MemoryManager(machine, reserved_memory=reserved, state_dir=state_dir)

    with open_manager() as mm:
        assert mm.admit(Pod.of("wide", Container.of("c", cpu="1", memory="20Gi")))
        assert mm.admit(
            Pod.of("hp", Container.of("c", cpu="1", memory="1Gi", hugepages={"2Mi": "64Mi"}))
        )
        assert mm.admit(Pod.of("gone", Container.of("c", cpu="1", memory="1Gi")))
        mm.remove("gone")
        text = mm.checkpoint()
        usage = mm.usage()
    path = state_dir / STATE_FILE_NAME
    assert path.read_text() == text
    inode = path.stat().st_ino

    with open_manager() as again:
        assert again.checkpoint() == text
        assert again.usage() == usage
        assert again.groups()[0] == (0, 1)
    # Opening and closing without a change does not rewrite the file.
    assert path.stat().st_ino == inode
    assert path.read_text() == text
