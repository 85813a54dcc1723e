"""A durable write that fails changes nothing (issue 9).

For every mutating call (admit, admit_many, start, remove of a pod and of a container,
remove_many, stop_pod, restart) the state file's write is made to fail, for real on a full
64 KiB tmpfs and by injected faults at each step of ``pymm.statefile.atomic_write``. A
failure before the rename (the commit point) must raise a ``StateFileError`` naming the path
and leave the manager's state, usage, active pods and checkpoint as they were and the file
untouched; the next successful write must persist only acknowledged changes, checked by
reopening the directory and comparing with a manager that only ever saw those changes.

A failure after the rename (the directory fsync) cannot be undone by rolling memory back: the
file already holds the change. It raises ``StateNotDurableError`` instead, with memory
keeping the change so that memory and file agree (see ``MemoryManager._durably``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pymm import Container, Machine, MemoryManager, Pod
from pymm.cli import main
from pymm.errors import StateFileError, StateNotDurableError
from pymm.statefile import STATE_FILE_NAME

MACHINE = Machine.synthetic(2, memory="8Gi")
# Within the tolerance below, so a restart onto it succeeds and rewrites the node totals.
DRIFTED = Machine.synthetic(2, memory=8 * 2**30 - 2**27)
TOLERANCE = "256Mi"


def _pod(uid: str, memory: str = "512Mi") -> Pod:
    return Pod.of(uid, Container.of("c", cpu="1", memory=memory))


def _manager(state_dir: Path | None, machine: Machine = MACHINE) -> MemoryManager:
    return MemoryManager(machine, tolerate_drift=TOLERANCE, state_dir=state_dir)


# -- the operations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """``prepare`` makes acknowledged changes; ``run`` is the call whose write fails."""

    name: str
    prepare: Callable[[MemoryManager], object]
    run: Callable[[MemoryManager], object]


def _admit_all(*pods: Pod, start: bool = True) -> Callable[[MemoryManager], object]:
    return lambda mm: [mm.admit(p, start=start) for p in pods]


KEEP = _pod("keep", "1Gi")
TWO = Pod.of(
    "two", Container.of("c1", cpu="1", memory="1Gi"), Container.of("c2", cpu="1", memory="2Gi")
)
# Starting a pod hands its init container's memory back, so start changes the state file.
WITH_INIT = Pod.of(
    "init-pod",
    Container.of("app", cpu="1", memory="1Gi"),
    init=[Container.of("setup", cpu="1", memory="1Gi")],
)

OPS = [
    Op("admit", _admit_all(KEEP), lambda mm: mm.admit(_pod("new"))),
    Op(
        "admit_many",
        _admit_all(KEEP),
        lambda mm: mm.admit_many([_pod("new-a"), _pod("new-b", "3Gi")]),
    ),
    Op("start", _admit_all(KEEP, WITH_INIT, start=False), lambda mm: mm.start("init-pod")),
    Op("remove", _admit_all(KEEP, _pod("victim")), lambda mm: mm.remove("victim")),
    Op("remove-container", _admit_all(KEEP, TWO), lambda mm: mm.remove("two", "c2")),
    Op(
        "remove_many",
        _admit_all(KEEP, _pod("v1"), _pod("v2")),
        lambda mm: mm.remove_many(["v1", "v2"]),
    ),
    Op("stop_pod", _admit_all(KEEP, _pod("victim")), lambda mm: mm.stop_pod("victim")),
    Op("restart", _admit_all(KEEP), lambda mm: mm.restart(machine=DRIFTED)),
]
OP_IDS = [op.name for op in OPS]
AFTER = _pod("after", "256Mi")


def _reference(op: Op, *, failed_call_happened: bool) -> str:
    """The state file a manager without a state directory reaches through the acknowledged
    changes only (plus the failed call where it did commit), then the admission of AFTER."""
    ref = _manager(None)
    op.prepare(ref)
    if failed_call_happened:
        op.run(ref)
    ref.admit(AFTER)
    return ref.checkpoint()


def _observe(mm: MemoryManager) -> tuple[Any, ...]:
    return (mm.checkpoint(), mm.state, mm.usage(), mm.active_pods, mm.config, mm.machine)


def _temporaries(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if ".tmp-" in p.name]


def _assert_names_path(err: BaseException, path: Path) -> None:
    assert isinstance(err, OSError)
    message = str(err)
    assert str(path) in message
    assert len(message.splitlines()) == 1, message


def _assert_reopens_as(state_dir: Path, machine: Machine, expected: str) -> None:
    with _manager(state_dir, machine) as again:
        assert again.checkpoint() == expected


def _operation_changes_the_file(op: Op) -> None:
    # Guards the cases themselves: a call that writes nothing cannot fail its write.
    mm = _manager(None)
    op.prepare(mm)
    before = mm.checkpoint()
    op.run(mm)
    assert mm.checkpoint() != before, op.name


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_every_operation_rewrites_the_state_file(op: Op) -> None:
    _operation_changes_the_file(op)


# -- for real: a full tmpfs ---------------------------------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs of our own, unmounted afterwards."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir(mode=0o700)
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("mount(8) is not installed, so no tmpfs can be mounted for the test")
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


PAGE = 4096


def _fill(directory: Path, leave_pages: int = 0) -> Path:
    """Takes every free page of the file system but ``leave_pages``; the filler is deleted to
    free them again."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"x" * PAGE)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)
    os.truncate(filler, filler.stat().st_size - leave_pages * PAGE)
    return filler


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_full_disk_fails_the_call_and_changes_nothing(op: Op, tiny_fs: Path) -> None:
    state_dir = tiny_fs / "state"
    path = state_dir / STATE_FILE_NAME
    mm = _manager(state_dir)
    try:
        op.prepare(mm)
        before = _observe(mm)
        on_disk = path.read_bytes()
        filler = _fill(tiny_fs)
        with pytest.raises(StateFileError) as info:
            op.run(mm)
        assert not isinstance(info.value, StateNotDurableError)
        assert info.value.errno == errno.ENOSPC
        _assert_names_path(info.value, path)
        assert "No space left on device" in str(info.value)
        assert _observe(mm) == before
        assert path.read_bytes() == on_disk
        assert _temporaries(state_dir) == []

        filler.unlink()
        mm.admit(AFTER)
    finally:
        mm.close()
    _assert_reopens_as(state_dir, MACHINE, _reference(op, failed_call_happened=False))


def test_full_disk_in_the_cli_is_one_line_naming_the_file(
    tiny_fs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "pods.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: db, uid: UID}\nspec:\n  containers:\n"
        "  - name: c\n    resources:\n      limits: {cpu: '1', memory: 1Gi}\n"
    )
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(manifest.read_text().replace("UID", "first"))
    second.write_text(manifest.read_text().replace("UID", "second"))
    state_dir = tiny_fs / "state"
    common = ["--state-dir", str(state_dir), "--machine", "xeon-gold-6242-2s", "--quiet"]
    assert main(["admit", str(first), *common]) == 0
    on_disk = (state_dir / STATE_FILE_NAME).read_bytes()
    capsys.readouterr()
    # One page for the lock file's PID, none for the new state.
    filler = _fill(tiny_fs, leave_pages=1)
    assert main(["admit", str(second), *common]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("pymm: error: ")
    assert str(state_dir / STATE_FILE_NAME) in lines[0]
    assert "No space left on device" in lines[0]
    assert (state_dir / STATE_FILE_NAME).read_bytes() == on_disk
    filler.unlink()
    assert main(["remove", "second", "--state-dir", str(state_dir)]) == 2
    assert "second" in capsys.readouterr().err


# -- injected faults at each step of atomic_write -----------------------------------------------

STEPS = ["open-temporary", "write", "fsync-file", "rename", "open-directory", "fsync-directory"]
#: The steps after the rename, where the new state is already in the file.
COMMITTED = {"open-directory", "fsync-directory"}
ERRORS = [errno.EIO, errno.ENOSPC, errno.EROFS]


def _is_directory(fd: int) -> bool:
    return stat.S_ISDIR(os.fstat(fd).st_mode)


@contextlib.contextmanager
def _fault(monkeypatch: pytest.MonkeyPatch, step: str, code: int) -> Iterator[list[str]]:
    """Makes ``step`` of the next state-file write fail with ``code``; yields the steps hit."""
    hits: list[str] = []

    def fail() -> None:
        hits.append(step)
        raise OSError(code, os.strerror(code))

    real_open, real_write, real_fsync, real_rename = os.open, os.write, os.fsync, os.rename

    def fake_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        is_temporary = ".tmp-" in os.fspath(path) and flags & os.O_CREAT
        is_directory = flags & os.O_DIRECTORY
        if (step == "open-temporary" and is_temporary) or (
            step == "open-directory" and is_directory
        ):
            fail()
        return real_open(path, flags, *args, **kwargs)

    def fake_write(fd: int, data: Any) -> int:
        if step == "write":
            fail()
        return real_write(fd, data)

    def fake_fsync(fd: int) -> None:
        if (step == "fsync-file" and not _is_directory(fd)) or (
            step == "fsync-directory" and _is_directory(fd)
        ):
            fail()
        real_fsync(fd)

    def fake_rename(src: Any, dst: Any) -> None:
        if step == "rename":
            fail()
        real_rename(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "open", fake_open)
        m.setattr(os, "write", fake_write)
        m.setattr(os, "fsync", fake_fsync)
        m.setattr(os, "rename", fake_rename)
        yield hits


@pytest.mark.parametrize("code", ERRORS, ids=errno.errorcode.__getitem__)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_injected_fault_changes_nothing_or_keeps_memory_and_file_equal(
    op: Op, step: str, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir = tmp_path / "state"
    path = state_dir / STATE_FILE_NAME
    committed = step in COMMITTED
    mm = _manager(state_dir)
    try:
        op.prepare(mm)
        before = _observe(mm)
        on_disk = path.read_bytes()
        with _fault(monkeypatch, step, code) as hits, pytest.raises(StateFileError) as info:
            op.run(mm)
        assert hits == [step]
        assert info.value.errno == code
        _assert_names_path(info.value, path)
        assert os.strerror(code) in str(info.value)
        assert _temporaries(state_dir) == []
        if committed:
            # The rename published the change: memory keeps it, the file holds it, and the
            # error says it may not survive a power loss.
            assert isinstance(info.value, StateNotDurableError)
            assert "power loss" in str(info.value)
            assert path.read_text() == mm.checkpoint() != on_disk.decode()
        else:
            assert not isinstance(info.value, StateNotDurableError)
            assert _observe(mm) == before
            assert path.read_bytes() == on_disk
        mm.admit(AFTER)
        machine = mm.machine
    finally:
        mm.close()
    expected = _reference(op, failed_call_happened=committed)
    _assert_reopens_as(state_dir, machine, expected)


def test_not_durable_admission_carries_its_result_and_is_pinned_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _manager(tmp_path / "state") as mm:
        with (
            _fault(monkeypatch, "fsync-directory", errno.EIO),
            pytest.raises(StateNotDurableError) as info,
        ):
            mm.admit(_pod("p"))
        admission = info.value.result
        assert admission.admitted
        assert admission["c"].numa_nodes == mm.numa_nodes("p", "c")
        assert "p" in mm.active_pods


def test_unchanged_state_after_a_not_durable_write_is_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The directory fsync that failed is what makes the rename durable; the next call must
    # redo it even when it changes nothing, instead of skipping an identical write.
    state_dir = tmp_path / "state"
    with _manager(state_dir) as mm:
        with _fault(monkeypatch, "fsync-directory", errno.EIO), pytest.raises(StateFileError):
            mm.admit(_pod("p"))
        with _fault(monkeypatch, "fsync-directory", errno.EIO) as hits:
            with pytest.raises(StateNotDurableError):
                mm.admit(_pod("p"))  # admitted already: the state does not change
            assert hits == ["fsync-directory"]
        synced: list[int] = []
        real_fsync = os.fsync

        def recording(fd: int) -> None:
            if _is_directory(fd):
                synced.append(fd)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", recording)
        mm.admit(_pod("p"))
        assert len(synced) == 1
        synced.clear()
        mm.admit(_pod("p"))
        assert synced == []  # durable again: an unchanged state is not rewritten


# -- the directory removed under the manager ----------------------------------------------------


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_removed_directory_fails_the_call_and_changes_nothing(op: Op, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    path = state_dir / STATE_FILE_NAME
    mm = _manager(state_dir)
    try:
        op.prepare(mm)
        before = _observe(mm)
        shutil.rmtree(state_dir)
        with pytest.raises(StateFileError) as info:
            op.run(mm)
        assert info.value.errno == errno.ENOENT
        _assert_names_path(info.value, path)
        assert _observe(mm) == before
        assert not state_dir.exists()

        state_dir.mkdir(mode=0o700)
        mm.admit(AFTER)
    finally:
        mm.close()
    _assert_reopens_as(state_dir, MACHINE, _reference(op, failed_call_happened=False))
