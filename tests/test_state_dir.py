"""The state directory: who may own it, read-only use, error messages that name the path, the
configuration it remembers for the command line, and waiting for its lock."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_statefile import NOBODY, REPO_ROOT, _unprivileged

from pymm import Container, Machine, MemoryManager, Pod
from pymm.cli import main
from pymm.errors import MachineError, StateFileError
from pymm.statefile import CONFIG_FILE_NAME, LOCK_FILE_NAME, STATE_FILE_NAME

MACHINE = "xeon-gold-6242-2s"
POD = """\
apiVersion: v1
kind: Pod
metadata: {name: db, uid: UID}
spec:
  containers:
  - name: postgres
    resources:
      limits: {cpu: "4", memory: 8Gi, hugepages-2Mi: 512Mi}
"""
IS_ROOT = os.geteuid() == 0


def manifest(directory: Path, uid: str = "db-1") -> str:
    path = directory / f"{uid}.yaml"
    path.write_text(POD.replace("UID", uid))
    return str(path)


def pod(uid: str) -> Pod:
    return Pod.of(uid, Container.of("c", cpu="1", memory="1Gi"))


def entries(state: Path) -> dict[str, object]:
    data = json.loads((state / STATE_FILE_NAME).read_text())
    return dict(data.get("entries", {}))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# -- who may own the directory ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        (0o770, "group-writable (mode 0770)"),
        (0o703, "world-writable (mode 0703)"),
        (0o777, "group- and world-writable (mode 0777)"),
    ],
)
def test_writable_by_others_is_refused_with_the_fix(tmp_path: Path, mode: int, words: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    with pytest.raises(StateFileError) as info:
        MemoryManager(MACHINE, state_dir=state)
    message = str(info.value)
    assert words in message and f"fix: chmod 700 {state}" in message
    assert isinstance(info.value, OSError) and info.value.errno == errno.EPERM
    assert os.listdir(state) == []  # refused before anything was written


def test_private_and_read_only_modes_are_accepted(tmp_path: Path) -> None:
    for mode in (0o700, 0o755, 0o500):
        state = tmp_path / f"state-{mode:o}"
        state.mkdir()
        MemoryManager(MACHINE, state_dir=state, read_only=True).close()
        state.chmod(mode)
        MemoryManager(MACHINE, state_dir=state, read_only=True).close()


@pytest.mark.skipif(not IS_ROOT, reason="giving a directory to another user needs root")
def test_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    with pytest.raises(StateFileError) as info:
        MemoryManager(MACHINE, state_dir=state)
    message = str(info.value)
    assert f"owned by uid {NOBODY}, not by uid 0" in message
    assert f"chown 0 {state}" in message


def test_symlinked_directory_is_resolved_and_the_real_one_checked(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with MemoryManager(MACHINE, state_dir=link) as mm:
        assert mm.state_path == str(real / STATE_FILE_NAME)
        assert mm.admit(pod("p"))
    real.chmod(0o777)
    with pytest.raises(StateFileError) as info:
        MemoryManager(MACHINE, state_dir=link)
    assert f"{link} (really {real})" in str(info.value)
    assert f"chmod 700 {real}" in str(info.value)


def test_cli_refuses_an_unsafe_directory_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    code, _, err = cli(capsys, "admit", manifest(tmp_path), "--state-dir", str(state))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("pymm: error: refusing state directory") and "chmod 700" in err


# -- read-only --------------------------------------------------------------------------------


def test_read_only_takes_no_lock_writes_nothing_and_refuses_changes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with MemoryManager(MACHINE, state_dir=state) as writer:
        writer.admit(pod("kept"))
        before = (state / STATE_FILE_NAME).read_bytes()
        # The writer still holds the lock: a read-only manager does not need it.
        with MemoryManager(MACHINE, state_dir=state, read_only=True) as reader:
            assert reader.read_only and reader.restored
            assert "kept" in reader.state["entries"]
            assert reader.hints(pod("new"), "c") is not None
            calls: list[tuple[str, Callable[[], object]]] = [
                ("admit", lambda: reader.admit(pod("new"))),
                ("start", lambda: reader.start("kept")),
                ("release", lambda: reader.release("kept")),
                ("release", lambda: reader.remove("kept")),
                ("stop", lambda: reader.stop("kept", "c")),
                ("stop_pod", lambda: reader.stop_pod("kept")),
            ]
            for name, call in calls:
                with pytest.raises(StateFileError) as info:
                    call()
                assert str(info.value).startswith(f"cannot {name}: ")
                assert str(state / STATE_FILE_NAME) in str(info.value)
            assert "kept" in reader.state["entries"]
    assert (state / STATE_FILE_NAME).read_bytes() == before


def test_read_only_on_a_missing_directory_creates_nothing(tmp_path: Path) -> None:
    with MemoryManager(MACHINE, state_dir=tmp_path / "none", read_only=True) as mm:
        assert not mm.restored
    assert not (tmp_path / "none").exists()


def test_read_only_needs_a_state_dir() -> None:
    with pytest.raises(ValueError, match="read_only=True needs a state_dir"):
        MemoryManager(MACHINE, read_only=True)


def test_read_only_commands_work_on_a_chmod_500_directory(tmp_path: Path) -> None:
    # The child may not be able to import anything new (the interpreter's files can be
    # private to root): the same commands run here first load every module they need.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warm = ["--machine", MACHINE, "--state-dir", str(tmp_path / "warm")]
        assert main(["admit", manifest(tmp_path), *warm, "--hugepages", "2Mi=1024"]) == 0
        assert main(["hints", manifest(tmp_path), *warm]) == 0
        assert main(["state", "validate", str(tmp_path / "warm")]) == 0
        assert main(["state", "inspect", str(tmp_path / "warm")]) == 0

    def body(directory: Path) -> None:
        state = directory / "state"
        pod_file = manifest(directory)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            args = ["--machine", MACHINE, "--hugepages", "2Mi=1024", "--state-dir", str(state)]
            assert main(["admit", pod_file, *args, "--quiet"]) == 0, out.getvalue()
            lock_mtime = (state / LOCK_FILE_NAME).stat().st_mtime_ns
            state.chmod(0o500)
            # Permission bits bind here (as nobody when the suite runs as root).
            with pytest.raises(PermissionError):
                (state / "probe").write_text("x")
            assert main(["hints", pod_file, "--state-dir", str(state), "--json"]) == 0, out
            assert main(["state", "validate", str(state)]) == 0, out.getvalue()
            assert main(["state", "inspect", str(state)]) == 0, out.getvalue()
            # None of them took the lock (taking it writes the holder's PID into the file).
            assert (state / LOCK_FILE_NAME).stat().st_mtime_ns == lock_mtime
            assert main(["admit", manifest(directory, "db-2"), "--state-dir", str(state)]) == 2
        text = out.getvalue()
        assert '"db-1"' in text and "would start:" in text
        assert f"cannot write state file {state / STATE_FILE_NAME}: Permission denied" in text
        state.chmod(0o700)

    _unprivileged(body)


def test_catalog_names_work_from_a_directory_the_user_may_not_search() -> None:
    """``--machine NAME`` first asks whether NAME is a file; in a working directory the user
    may not search, that question fails with EACCES, and the answer must be the catalog's."""
    Machine.from_catalog(MACHINE)  # the catalog's files are loaded before privileges drop
    back = os.getcwd()

    def body(directory: Path) -> None:
        private = directory / "private"
        private.mkdir()
        os.chdir(private)
        try:
            private.chmod(0)
            with pytest.raises(PermissionError):
                Path("probe").exists()
            assert Machine.load(MACHINE).name == MACHINE
            with pytest.raises(MachineError, match="no-such-machine"):
                Machine.load("no-such-machine")
        finally:
            private.chmod(0o700)
            # Not `back`: the child, as nobody, may not enter the test's own directory.
            os.chdir(directory)

    try:
        _unprivileged(body)
    finally:
        os.chdir(back)


# -- I/O errors name the path -----------------------------------------------------------------


def test_full_disk_names_the_state_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    with MemoryManager(MACHINE, state_dir=state) as mm:

        def full(fd: int, data: object) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "write", full)
        with pytest.raises(StateFileError) as info:
            mm.admit(pod("p"))
        monkeypatch.undo()
    assert str(info.value) == (
        f"cannot write state file {state / STATE_FILE_NAME}: No space left on device"
    )
    assert info.value.errno == errno.ENOSPC


def test_lock_file_write_error_names_the_lock_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(StateFileError) as info:
        MemoryManager(MACHINE, state_dir=tmp_path / "state")
    monkeypatch.undo()
    assert str(info.value) == (
        f"cannot write lock file {tmp_path / 'state' / LOCK_FILE_NAME}: No space left on device"
    )
    # The failed open released everything: a second manager gets the lock at once.
    MemoryManager(MACHINE, state_dir=tmp_path / "state").close()


# -- the recorded configuration ---------------------------------------------------------------


def test_first_admit_records_machine_and_flags_privately(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    code, _, err = cli(
        capsys,
        "admit",
        manifest(tmp_path),
        "--machine",
        MACHINE,
        "--hugepages",
        "2Mi=1024",
        "--topology-policy",
        "single-numa-node",
        "--state-dir",
        str(state),
        "--quiet",
    )
    assert code == 0, err
    config = state / CONFIG_FILE_NAME
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    doc = json.loads(config.read_text())
    assert doc["machine"] == Machine.load(MACHINE).to_dict()
    assert doc["machineSource"] == MACHINE
    assert doc["flags"]["hugepages"] == ["2Mi=1024"]
    assert doc["flags"]["topology_policy"] == "single-numa-node"
    assert doc["flags"]["reserved_memory"] is None  # the default: 1Gi per node


def test_remove_without_repeating_flags_just_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    flags = ["--machine", MACHINE, "--hugepages", "2Mi=1024", "--state-dir", str(state)]
    assert cli(capsys, "admit", manifest(tmp_path), *flags, "--quiet")[0] == 0
    code, out, err = cli(capsys, "remove", "db-1", "--state-dir", str(state))
    assert (code, out, err) == (0, "released db-1\n", "")
    assert entries(state) == {}


def test_the_machine_is_embedded_not_looked_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    machine_file = tmp_path / "box.json"
    machine_file.write_text(json.dumps(Machine.synthetic(2, memory="32Gi", name="box").to_dict()))
    state = tmp_path / "state"
    flags = ["--hugepages", "2Mi=1024", "--state-dir", str(state), "--quiet"]
    assert cli(capsys, "admit", manifest(tmp_path), "--machine", str(machine_file), *flags)[0] == 0
    machine_file.unlink()
    code, _, err = cli(capsys, "admit", manifest(tmp_path, "db-2"), "--state-dir", str(state))
    assert code == 0, err
    assert set(entries(state)) == {"db-1", "db-2"}


@pytest.mark.parametrize(
    ("flag", "value", "recorded"),
    [
        ("--topology-policy", "single-numa-node", "best-effort"),
        ("--scope", "pod", "container"),
        ("--hugepages", "2Mi=512", "2Mi=1024"),
        ("--kubelet-version", "1.26", "1.38"),
        ("--feature-gates", "PodLevelResourceManagers=true", "none"),
        ("--search", "bounded", "auto"),
        ("--reserved-memory", "0:memory=2Gi;1:memory=1Gi", "default (1Gi of memory on every node)"),
        ("--policy-option", "prefer-closest-numa-nodes=true", "none"),
        ("--memory-policy-option", "admit-when-fits=true", "none"),
        ("--memory-policy", "None", "Static"),
    ],
)
def test_a_conflicting_flag_says_what_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, recorded: str
) -> None:
    state = tmp_path / "state"
    flags = ["--machine", MACHINE, "--hugepages", "2Mi=1024", "--state-dir", str(state)]
    assert cli(capsys, "admit", manifest(tmp_path), *flags, "--quiet")[0] == 0
    before = (state / STATE_FILE_NAME).read_bytes()
    code, _, err = cli(capsys, "remove", "db-1", "--state-dir", str(state), flag, value)
    assert code == 2
    assert err == (
        f"pymm: error: {flag} {value} conflicts with the state directory's {recorded} "
        f"(recorded in {state / CONFIG_FILE_NAME})\n"
    )
    assert (state / STATE_FILE_NAME).read_bytes() == before


def test_a_directory_recorded_as_latest_before_1_38_keeps_1_32(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before 1.38 became the newest, a directory created with the default recorded
    ``latest`` for the 1.32 kubelet (and its V1 state file): it keeps that meaning."""
    state = tmp_path / "state"
    flags = ["--machine", MACHINE, "--hugepages", "2Mi=1024", "--state-dir", str(state), "--quiet"]
    assert cli(capsys, "admit", manifest(tmp_path), *flags, "--kubelet-version", "1.32")[0] == 0
    config = state / CONFIG_FILE_NAME
    doc = json.loads(config.read_text())
    assert doc["flags"]["kubelet_version"] == "1.32"
    doc["flags"]["kubelet_version"] = "latest"  # as a pymm before this change wrote it
    config.write_text(json.dumps(doc))
    second = manifest(tmp_path, uid="db-2")
    code, _, err = cli(capsys, "admit", second, "--state-dir", str(state), "--quiet")
    assert code == 0, err
    # Still the 1.32 kubelet: the state file stays V1, and naming 1.32 agrees with it.
    assert "data" not in json.loads((state / STATE_FILE_NAME).read_text())
    assert set(entries(state)) == {"db-1", "db-2"}
    by_name = ["--state-dir", str(state), "--kubelet-version", "1.32"]
    assert cli(capsys, "remove", "db-2", *by_name)[0] == 0
    # "latest" now names 1.38: another kubelet than the one the directory records.
    latest = ["--state-dir", str(state), "--kubelet-version", "latest"]
    code, _, err = cli(capsys, "remove", "db-1", *latest)
    assert code == 2
    assert err.startswith(
        "pymm: error: --kubelet-version latest conflicts with the state directory's 1.32 "
    )


def test_a_new_directory_records_the_concrete_kubelet_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    flags = ["--machine", MACHINE, "--hugepages", "2Mi=1024", "--state-dir", str(state), "--quiet"]
    assert cli(capsys, "admit", manifest(tmp_path), *flags, "--kubelet-version", "latest")[0] == 0
    assert json.loads((state / CONFIG_FILE_NAME).read_text())["flags"]["kubelet_version"] == "1.38"
    assert "data" in json.loads((state / STATE_FILE_NAME).read_text())
    # Naming it "1.38", or "latest" again, agrees with it.
    second = manifest(tmp_path, uid="db-2")
    for name, argv in (("1.38", ["admit", second, "--quiet"]), ("latest", ["remove", "db-2"])):
        code, _, err = cli(capsys, *argv, "--state-dir", str(state), "--kubelet-version", name)
        assert code == 0, err


def test_flags_equal_to_the_recorded_ones_are_fine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    flags = ["--machine", MACHINE, "--hugepages", "2Mi=1024", "--state-dir", str(state)]
    assert cli(capsys, "admit", manifest(tmp_path), *flags, "--quiet")[0] == 0
    same = [
        "--topology-policy",
        "best-effort",
        "--hugepages",
        "2Mi=1024",
        "--reserved-memory",
        "0:memory=1024Mi",
        "--reserved-memory",
        "1:memory=1Gi",
    ]
    code, _, err = cli(capsys, "remove", "db-1", "--state-dir", str(state), *same)
    assert code == 0, err


def test_hints_and_validate_use_the_recorded_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    flags = ["--machine", MACHINE, "--hugepages", "2Mi=1024", "--state-dir", str(state)]
    pod_file = manifest(tmp_path)
    assert cli(capsys, "admit", pod_file, *flags, "--quiet")[0] == 0
    code, out, _ = cli(capsys, "hints", pod_file, "--state-dir", str(state), "--json")
    # The 2Mi pages are known without --hugepages: node 0 holds the pod's 512Mi, and both nodes
    # can hold another.
    assert code == 0
    assert json.loads(out)["db-1"]["postgres"]["hugepages-2Mi"][0]["affinity"] == [0]
    code, out, _ = cli(capsys, "state", "validate", str(state))
    assert code == 0 and f"restores on the recorded machine {MACHINE}" in out
    code, _, err = cli(capsys, "state", "validate", str(state), "--policy", "None")
    assert code == 2 and "--policy None conflicts with the state directory's Static" in err


def test_state_validate_of_a_directory_without_configuration_needs_a_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    MemoryManager(MACHINE, state_dir=state).close()
    code, _, err = cli(capsys, "state", "validate", str(state))
    assert code == 2 and "needs --machine NAME|FILE or --sysfs ROOT" in err
    code, out, _ = cli(capsys, "state", "validate", str(state), "--machine", MACHINE)
    assert code == 0 and out.startswith("would start:")


def test_a_tolerated_drift_is_remembered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    flags = ["--machine", MACHINE, "--hugepages", "2Mi=1024", "--state-dir", str(state)]
    assert cli(capsys, "admit", manifest(tmp_path), *flags, "--quiet")[0] == 0
    drifted = Machine.load(MACHINE).to_dict()
    for node in drifted["nodes"]:
        node["memory_bytes"] -= 48 << 20
    drifted_file = tmp_path / "drifted.json"
    drifted_file.write_text(json.dumps(drifted))
    code, _, err = cli(
        capsys,
        "admit",
        manifest(tmp_path, "db-2"),
        "--state-dir",
        str(state),
        "--machine",
        str(drifted_file),
        "--tolerate-drift",
        "64Mi",
        "--quiet",
    )
    assert code == 0, err
    assert json.loads((state / CONFIG_FILE_NAME).read_text())["machine"] == drifted
    # The next run needs neither the machine nor the tolerance.
    code, _, err = cli(capsys, "remove", "db-1", "--state-dir", str(state))
    assert code == 0, err


# -- waiting for the lock ---------------------------------------------------------------------


@pytest.mark.slow
def test_parallel_admits_with_lock_wait_all_succeed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    flags = ["--machine", MACHINE, "--hugepages", "2Mi=4096", "--state-dir", str(state)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pymm.cli",
                "admit",
                manifest(tmp_path, f"p-{i}"),
                *flags,
                "--lock-wait",
                "30",
                "--quiet",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        for i in range(20)
    ]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, outputs
    assert set(entries(state)) == {f"p-{i}" for i in range(20)}


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_lock_wait_must_be_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    code, _, err = cli(capsys, "remove", "x", "--state-dir", str(tmp_path), "--lock-wait", value)
    assert code == 2 and err.count("\n") == 1 and "--lock-wait" in err
