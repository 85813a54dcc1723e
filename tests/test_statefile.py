"""Tests for pymm.statefile: atomic writes, safe reads, temporaries and the directory lock.

The suite usually runs as root in containers, where permission bits do not stop writes; read-only
directories are therefore simulated with the immutable attribute (``chattr +i``), which binds
root too. The chmod variants run in a forked child that drops to the ``nobody`` user when
permission bits are not enforced for this process (root with CAP_DAC_OVERRIDE).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers_statefile_child import TornPayloadError, decode_payload, encode_payload
from hypothesis import given, settings
from hypothesis import strategies as st

from pymm.errors import StateFileError, StateLockedError
from pymm.statefile import (
    LOCK_FILE_NAME,
    STATE_FILE_NAME,
    StateDirLock,
    atomic_write,
    clean_stale_temporaries,
    fsync_baseline,
    read_file,
)

HELPER = Path(__file__).with_name("helpers_statefile_child.py")
REPO_ROOT = Path(__file__).resolve().parent.parent


def _permission_bits_enforced() -> bool:
    """False for root with CAP_DAC_OVERRIDE, which writes into a mode-0500 directory anyway."""
    with tempfile.TemporaryDirectory() as raw:
        probe = Path(raw) / "ro"
        probe.mkdir(mode=0o500)
        probe.chmod(0o500)
        try:
            (probe / "x").write_bytes(b"")
        except PermissionError:
            return True
        finally:
            probe.chmod(0o700)
        return False


PERMISSIONS_BYPASSED = not _permission_bits_enforced()
NOBODY = 65534


def _unprivileged(body: Callable[[Path], None]) -> None:
    """Run ``body(directory)`` where permission bits bind: here, or as ``nobody`` in a child.

    The directory is fresh and owned by whoever runs ``body``; a failure in the child fails the
    test with the child's traceback.
    """
    directory = Path(tempfile.mkdtemp(prefix="pymm-unprivileged-"))
    try:
        if not PERMISSIONS_BYPASSED:
            body(directory)
            return
        os.chown(directory, NOBODY, NOBODY)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            status = 1
            try:
                os.close(read_end)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                body(directory)
                status = 0
            except BaseException:
                os.write(write_end, traceback.format_exc().encode())
            finally:
                os._exit(status)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            report = pipe.read().decode()
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            pytest.fail(f"as uid {NOBODY}:\n{report}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _child_env() -> dict[str, str]:
    # The child must import this checkout's pymm, not whatever else is installed.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def _assert_one_line_error(err: StateFileError, path: Path) -> None:
    assert isinstance(err, OSError)
    message = str(err)
    assert str(path) in message
    assert "\n" not in message


@contextlib.contextmanager
def _immutable(path: Path) -> Iterator[None]:
    """Make ``path`` immutable (binds root too), or skip if the file system does not allow it."""
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("chattr not installed; cannot make a directory read-only for root")
    done = subprocess.run([chattr, "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not permitted here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


# --------------------------------------------------------------------------- atomic_write


def test_state_file_name_is_kubelets() -> None:
    assert STATE_FILE_NAME == "memory_manager_state"


def test_atomic_write_creates_private_file_with_exact_bytes(tmp_path: Path) -> None:
    target = tmp_path / STATE_FILE_NAME
    data = bytes(range(256)) * 17
    old_umask = os.umask(0)  # a permissive umask must not widen the file
    try:
        atomic_write(target, data)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert _names(tmp_path) == {STATE_FILE_NAME}


def test_atomic_write_mode_is_exact_despite_umask(tmp_path: Path) -> None:
    target = tmp_path / "f"
    old_umask = os.umask(0o077)
    try:
        atomic_write(target, b"x", mode=0o644)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_atomic_write_replaces_content_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / STATE_FILE_NAME
    atomic_write(target, b"first version, longer than the second")
    first_inode = target.stat().st_ino
    atomic_write(target, b"second")
    assert target.read_bytes() == b"second"
    # A new inode shows the file was replaced by rename, not rewritten in place.
    assert target.stat().st_ino != first_inode
    atomic_write(target, b"")
    assert target.read_bytes() == b""
    assert _names(tmp_path) == {STATE_FILE_NAME}


def test_atomic_write_fsyncs_file_before_rename_and_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / STATE_FILE_NAME
    atomic_write(target, b"old")
    real_fsync = os.fsync
    calls: list[tuple[str, bytes]] = []

    def recording_fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        kind = "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"
        calls.append((kind, target.read_bytes()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write(target, b"new")
    # The data is durable before the rename publishes it; the rename is durable afterwards.
    assert calls == [("file", b"old"), ("dir", b"new")]


def test_atomic_write_fsync_failure_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / STATE_FILE_NAME
    atomic_write(target, b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StateFileError) as info:
        atomic_write(target, b"new")
    assert info.value.errno == errno.EIO
    assert os.strerror(errno.EIO) in str(info.value)
    _assert_one_line_error(info.value, target)
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == {STATE_FILE_NAME}


def test_atomic_write_directory_fsync_failure_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / STATE_FILE_NAME
    real_fsync = os.fsync

    def fsync_failing_on_dirs(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_failing_on_dirs)
    with pytest.raises(StateFileError) as info:
        atomic_write(target, b"new")
    assert info.value.errno == errno.EIO
    assert "power loss" in str(info.value)
    # The rename happened; only its durability is in doubt.
    assert target.read_bytes() == b"new"
    assert _names(tmp_path) == {STATE_FILE_NAME}


def test_atomic_write_refuses_symlink_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    link = tmp_path / STATE_FILE_NAME
    link.symlink_to(victim)
    with pytest.raises(StateFileError) as info:
        atomic_write(link, b"attacker-controlled")
    assert "symbolic link" in str(info.value)
    assert info.value.errno == errno.ELOOP
    _assert_one_line_error(info.value, link)
    assert victim.read_bytes() == b"precious"
    assert link.is_symlink()
    assert _names(tmp_path) == {"victim", STATE_FILE_NAME}


def test_atomic_write_refuses_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / STATE_FILE_NAME
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StateFileError):
        atomic_write(link, b"x")
    assert not (tmp_path / "elsewhere").exists()
    assert link.is_symlink()


def test_atomic_write_onto_directory_fails_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / STATE_FILE_NAME
    target.mkdir()
    (target / "inside").write_bytes(b"keep")
    with pytest.raises(StateFileError) as info:
        atomic_write(target, b"x")
    assert info.value.errno == errno.EISDIR
    _assert_one_line_error(info.value, target)
    assert (target / "inside").read_bytes() == b"keep"
    assert _names(tmp_path) == {STATE_FILE_NAME}


def test_atomic_write_missing_directory(tmp_path: Path) -> None:
    target = tmp_path / "missing" / STATE_FILE_NAME
    with pytest.raises(StateFileError) as info:
        atomic_write(target, b"x")
    assert info.value.errno == errno.ENOENT
    _assert_one_line_error(info.value, target)


def test_atomic_write_parent_is_regular_file(tmp_path: Path) -> None:
    parent = tmp_path / "not-a-dir"
    parent.write_bytes(b"")
    target = parent / STATE_FILE_NAME
    with pytest.raises(StateFileError) as info:
        atomic_write(target, b"x")
    assert info.value.errno == errno.ENOTDIR
    _assert_one_line_error(info.value, target)


def test_atomic_write_read_only_directory_as_any_user(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    target = state_dir / STATE_FILE_NAME
    atomic_write(target, b"old")
    with _immutable(state_dir):
        with pytest.raises(StateFileError) as info:
            atomic_write(target, b"new")
        assert info.value.errno in (errno.EPERM, errno.EACCES)
        _assert_one_line_error(info.value, target)
    assert target.read_bytes() == b"old"
    assert _names(state_dir) == {STATE_FILE_NAME}


def test_atomic_write_chmod_read_only_directory() -> None:
    def body(directory: Path) -> None:
        target = directory / STATE_FILE_NAME
        atomic_write(target, b"old")
        directory.chmod(0o500)
        try:
            with pytest.raises(StateFileError) as info:
                atomic_write(target, b"new")
        finally:
            directory.chmod(0o700)
        assert info.value.errno == errno.EACCES
        _assert_one_line_error(info.value, target)
        assert target.read_bytes() == b"old"
        assert _names(directory) == {STATE_FILE_NAME}

    _unprivileged(body)


@settings(max_examples=40, deadline=None)
@given(first=st.binary(max_size=4096), second=st.binary(max_size=4096))
def test_atomic_write_round_trips_any_bytes(first: bytes, second: bytes) -> None:
    with tempfile.TemporaryDirectory() as raw:
        target = Path(raw) / STATE_FILE_NAME
        atomic_write(target, first)
        assert read_file(target) == first
        atomic_write(target, second)
        assert read_file(target) == second
        assert _names(Path(raw)) == {STATE_FILE_NAME}


# --------------------------------------------------------------------------- crash atomicity

CRASH_KILLS = 100
CRASH_PAYLOAD = 1 << 20


@pytest.mark.slow
def test_sigkill_during_writes_never_leaves_a_torn_file(tmp_path: Path) -> None:
    target = tmp_path / STATE_FILE_NAME
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    last_generation = 0
    kills_with_leftover = 0
    for kill in range(CRASH_KILLS):
        child = subprocess.Popen(
            [sys.executable, str(HELPER), "writer", str(target), str(CRASH_PAYLOAD)],
            stdout=subprocess.PIPE,
            env=_child_env(),
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n", f"writer failed to start (kill {kill})"
            # One write cycle takes roughly 10-20 ms here; spread kills over a few of them.
            time.sleep(rng.uniform(0.0, 0.04))
        finally:
            child.kill()
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
        context = f"kill {kill}, seed {seed}"
        assert child.returncode == -signal.SIGKILL, f"writer exited on its own ({context})"

        content = read_file(target)
        if content is None:
            assert last_generation == 0, f"state file vanished after a write ({context})"
        else:
            try:
                generation = decode_payload(content)
            except TornPayloadError as exc:
                pytest.fail(f"torn state file after SIGKILL ({context}): {exc}")
            assert generation >= last_generation, f"state went back in time ({context})"
            last_generation = generation

        leftovers = _names(tmp_path) - {STATE_FILE_NAME}
        removed = clean_stale_temporaries(tmp_path)
        assert {p.name for p in removed} == leftovers
        assert all(name.startswith(f".{STATE_FILE_NAME}.tmp-{child.pid}-") for name in leftovers)
        assert _names(tmp_path) <= {STATE_FILE_NAME}
        kills_with_leftover += bool(leftovers)

    # Without these the test could pass vacuously: writes must have happened, and some kills
    # must have landed between creating a temporary and renaming it.
    assert last_generation > 0
    assert kills_with_leftover > 0, f"no kill hit a write in progress (seed {seed})"


def test_payload_codec_detects_tearing() -> None:
    a, b = encode_payload(2, 1000), encode_payload(3, 1000)
    assert decode_payload(a) == 2
    assert decode_payload(b) == 3
    for torn in (a[:500], a[:500] + b[500:], a[: len(a) - 1], b""):
        with pytest.raises(TornPayloadError):
            decode_payload(torn)


# --------------------------------------------------------------------------- temporaries


def test_clean_stale_temporaries_removes_only_our_temporaries(tmp_path: Path) -> None:
    ours = [
        f".{STATE_FILE_NAME}.tmp-123-deadbeef",
        f".{STATE_FILE_NAME}.tmp-{os.getpid()}-0a1b",
    ]
    others = [
        STATE_FILE_NAME,
        ".other_state.tmp-123-deadbeef",  # another target's temporary
        f".{STATE_FILE_NAME}.tmp-abc-deadbeef",  # not a PID
        f"{STATE_FILE_NAME}.tmp-1-ff",  # not hidden
        f".{STATE_FILE_NAME}.tmp-1-ff.bak",
        LOCK_FILE_NAME,
    ]
    for name in ours + others:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / f".{STATE_FILE_NAME}.tmp-9-aa").mkdir()  # never delete directories
    removed = clean_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(ours)
    assert _names(tmp_path) == {*others, f".{STATE_FILE_NAME}.tmp-9-aa"}
    assert clean_stale_temporaries(tmp_path) == []


def test_clean_stale_temporaries_other_name_and_missing_directory(tmp_path: Path) -> None:
    (tmp_path / ".cpu_manager_state.tmp-1-ab").write_bytes(b"x")
    (tmp_path / f".{STATE_FILE_NAME}.tmp-1-ab").write_bytes(b"x")
    removed = clean_stale_temporaries(tmp_path, "cpu_manager_state")
    assert [p.name for p in removed] == [".cpu_manager_state.tmp-1-ab"]
    assert clean_stale_temporaries(tmp_path / "missing") == []


def test_clean_stale_temporaries_unlinks_symlinks_without_following(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / f".{STATE_FILE_NAME}.tmp-1-ab").symlink_to(victim)
    assert len(clean_stale_temporaries(tmp_path)) == 1
    assert victim.read_bytes() == b"keep"


# --------------------------------------------------------------------------- read_file


def test_read_file_missing_returns_none(tmp_path: Path) -> None:
    assert read_file(tmp_path / STATE_FILE_NAME) is None
    assert read_file(tmp_path / "no-dir" / STATE_FILE_NAME) is None


def test_read_file_returns_exact_bytes(tmp_path: Path) -> None:
    target = tmp_path / STATE_FILE_NAME
    data = os.urandom(3 << 20)  # larger than one read chunk
    target.write_bytes(data)
    assert read_file(target) == data
    target.write_bytes(b"")
    assert read_file(target) == b""


def test_read_file_refuses_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_bytes(b"secret")
    link = tmp_path / STATE_FILE_NAME
    link.symlink_to(real)
    with pytest.raises(StateFileError) as info:
        read_file(link)
    assert info.value.errno == errno.ELOOP
    assert "symbolic link" in str(info.value)
    _assert_one_line_error(info.value, link)


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_read_file_refuses_non_regular_files(tmp_path: Path, kind: str) -> None:
    target = tmp_path / STATE_FILE_NAME
    if kind == "directory":
        target.mkdir()
    else:
        os.mkfifo(target)  # a blocking open would hang the test here
    with pytest.raises(StateFileError) as info:
        read_file(target)
    assert "not a regular file" in str(info.value)
    _assert_one_line_error(info.value, target)


def test_read_file_parent_is_regular_file(tmp_path: Path) -> None:
    parent = tmp_path / "file"
    parent.write_bytes(b"")
    with pytest.raises(StateFileError) as info:
        read_file(parent / STATE_FILE_NAME)
    assert info.value.errno == errno.ENOTDIR


def test_read_file_permission_denied() -> None:
    def body(directory: Path) -> None:
        target = directory / STATE_FILE_NAME
        target.write_bytes(b"x")
        target.chmod(0)
        with pytest.raises(StateFileError) as info:
            read_file(target)
        assert info.value.errno == errno.EACCES
        _assert_one_line_error(info.value, target)

    _unprivileged(body)


# --------------------------------------------------------------------------- fsync_baseline


def test_fsync_baseline_writes_size_bytes_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "baseline"
    real_fsync = os.fsync
    synced: list[int] = []

    def recording_fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    fsync_baseline(target, (1 << 20) + 3)
    inode = target.stat().st_ino
    assert target.stat().st_size == (1 << 20) + 3
    fsync_baseline(target, 10)
    assert target.stat().st_size == 10
    assert target.stat().st_ino == inode  # in place: no new file
    assert synced == [inode, inode]
    fsync_baseline(target, 0)
    assert target.read_bytes() == b""
    with pytest.raises(ValueError):
        fsync_baseline(target, -1)


# --------------------------------------------------------------------------- StateDirLock


@contextlib.contextmanager
def _holder(
    directory: Path, release_after: float | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A separate process holding the lock on ``directory`` until the block exits."""
    args = [sys.executable, str(HELPER), "hold", str(directory)]
    if release_after is not None:
        args.append(str(release_after))
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_child_env())
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().decode() == f"locked {proc.pid}\n"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def test_lock_held_by_another_process_fails_naming_its_pid(tmp_path: Path) -> None:
    with _holder(tmp_path) as holder:
        assert (tmp_path / LOCK_FILE_NAME).read_text() == f"{holder.pid}\n"
        lock = StateDirLock(tmp_path)
        start = time.monotonic()
        with pytest.raises(StateLockedError) as info:
            lock.acquire()
        assert time.monotonic() - start < 0.2  # wait=False must not wait
        err = info.value
        assert isinstance(err, StateFileError)
        assert isinstance(err, OSError)
        assert err.errno == errno.EWOULDBLOCK
        assert f"process {holder.pid}" in str(err)
        assert str(tmp_path) in str(err)
        assert "\n" not in str(err)
        assert not lock.held
        # The failed attempt must not have clobbered the holder's PID.
        assert (tmp_path / LOCK_FILE_NAME).read_text() == f"{holder.pid}\n"


def test_lock_wait_seconds_times_out(tmp_path: Path) -> None:
    with _holder(tmp_path) as holder:
        lock = StateDirLock(tmp_path, wait=0.5)
        start = time.monotonic()
        with pytest.raises(StateLockedError) as info:
            lock.acquire()
        elapsed = time.monotonic() - start
        assert 0.45 <= elapsed < 2.0
        assert f"process {holder.pid}" in str(info.value)
        assert "0.5 s" in str(info.value)


def test_lock_wait_seconds_succeeds_when_released_in_time(tmp_path: Path) -> None:
    with _holder(tmp_path, release_after=0.3) as holder:
        with StateDirLock(tmp_path, wait=5.0) as lock:
            assert lock.held
            assert holder.poll() is None


def test_lock_wait_true_blocks_until_holder_releases(tmp_path: Path) -> None:
    with _holder(tmp_path, release_after=0.5) as holder:
        start = time.monotonic()
        with StateDirLock(tmp_path, wait=True):
            elapsed = time.monotonic() - start
            # The holder released without exiting: flock, not process death, freed it.
            assert holder.poll() is None
            assert holder.stdout is not None
            assert holder.stdout.readline() == b"released\n"
            assert (tmp_path / LOCK_FILE_NAME).read_text() == f"{os.getpid()}\n"
        assert 0.3 <= elapsed < 5.0


def test_lock_is_released_when_holder_is_killed(tmp_path: Path) -> None:
    with _holder(tmp_path) as holder:
        with pytest.raises(StateLockedError):
            StateDirLock(tmp_path).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        # The dead holder's PID is still in the file; the lock must be free regardless.
        assert (tmp_path / LOCK_FILE_NAME).read_text() == f"{holder.pid}\n"
        with StateDirLock(tmp_path) as lock:
            assert lock.held
            assert (tmp_path / LOCK_FILE_NAME).read_text() == f"{os.getpid()}\n"


def test_lock_conflicts_within_one_process(tmp_path: Path) -> None:
    with StateDirLock(tmp_path):
        with pytest.raises(StateLockedError) as info:
            StateDirLock(tmp_path).acquire()
        assert f"this process ({os.getpid()})" in str(info.value)


def test_lock_release_is_idempotent_and_reacquirable(tmp_path: Path) -> None:
    lock = StateDirLock(tmp_path)
    lock.release()  # never acquired: no-op
    lock.acquire()
    with pytest.raises(RuntimeError):
        lock.acquire()
    lock.release()
    lock.release()
    assert not lock.held
    assert (tmp_path / LOCK_FILE_NAME).read_bytes() == b""  # no stale PID after release
    with StateDirLock(tmp_path):  # really free now
        pass
    lock.acquire()
    assert lock.held
    lock.release()


def test_lock_creates_missing_private_directory(tmp_path: Path) -> None:
    state_dir = tmp_path / "var" / "lib" / "kubelet"
    old_umask = os.umask(0)
    try:
        with StateDirLock(state_dir) as lock:
            assert lock.path == state_dir / LOCK_FILE_NAME
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / LOCK_FILE_NAME).stat().st_mode) == 0o600


def test_lock_keeps_existing_directory_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    with StateDirLock(tmp_path):
        pass
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def test_lock_directory_is_a_regular_file(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "state"
    not_a_dir.write_bytes(b"")
    with pytest.raises(StateFileError) as info:
        StateDirLock(not_a_dir).acquire()
    assert not isinstance(info.value, StateLockedError)
    assert info.value.errno == errno.ENOTDIR
    with pytest.raises(StateFileError) as info:
        StateDirLock(not_a_dir / "sub").acquire()
    assert info.value.errno == errno.ENOTDIR


def test_lock_in_read_only_directory(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    with _immutable(state_dir):
        with pytest.raises(StateFileError) as info:
            StateDirLock(state_dir).acquire()
    assert not isinstance(info.value, StateLockedError)
    assert info.value.errno in (errno.EPERM, errno.EACCES)
    _assert_one_line_error(info.value, state_dir)


def test_lock_refuses_symlinked_lock_file(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / LOCK_FILE_NAME).symlink_to(victim)
    with pytest.raises(StateFileError) as info:
        StateDirLock(state_dir).acquire()
    assert info.value.errno == errno.ELOOP
    assert victim.read_bytes() == b"precious"


@pytest.mark.parametrize("wait", [-1, float("nan"), "1", None])
def test_lock_rejects_bad_wait(tmp_path: Path, wait: object) -> None:
    with pytest.raises(ValueError):
        StateDirLock(tmp_path, wait=wait)  # type: ignore[arg-type]


def test_lock_in_chmod_read_only_directory() -> None:
    def body(directory: Path) -> None:
        state_dir = directory / "state"
        state_dir.mkdir(mode=0o500)
        try:
            with pytest.raises(StateFileError) as info:
                StateDirLock(state_dir).acquire()
        finally:
            state_dir.chmod(0o700)
        assert not isinstance(info.value, StateLockedError)
        assert info.value.errno == errno.EACCES

    _unprivileged(body)
