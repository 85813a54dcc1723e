"""Removing what does not exist (issue 9): the kubelet ignores it; pymm's API raises
NotFoundError unless ``missing_ok=True``, and ``pymm remove`` exits 2 with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pymm import Container, Machine, MemoryManager, Pod
from pymm.cli import main
from pymm.errors import NotFoundError
from pymm.statefile import STATE_FILE_NAME

POD = """\
kind: Pod
metadata: {name: db, uid: u-1}
spec:
  containers:
  - name: postgres
    resources: {limits: {cpu: "1", memory: 1Gi}}
  - name: sidecar
    resources: {limits: {cpu: "1", memory: 1Gi}}
"""


@pytest.fixture
def admitted(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    pod = tmp_path / "pod.yaml"
    pod.write_text(POD)
    assert main(["admit", str(pod), "--state-dir", str(state), "--quiet"]) == 0
    return state


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["remove", "UNKNOWN"], ["UNKNOWN"]),
        (["remove", "u-1", "--container", "nope"], ["u-1", "nope"]),
    ],
)
def test_cli_removing_what_does_not_exist_is_exit_2_with_one_line(
    admitted: Path, argv: list[str], words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    before = (admitted / STATE_FILE_NAME).read_bytes()
    capsys.readouterr()
    assert main([*argv, "--state-dir", str(admitted)]) == 2
    out = capsys.readouterr()
    lines = out.err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("pymm: error: ")
    for word in words:
        assert word in lines[0]
    assert out.out == ""
    assert (admitted / STATE_FILE_NAME).read_bytes() == before
    # What exists is still removable, container by container.
    assert main(["remove", "u-1", "--container", "postgres", "--state-dir", str(admitted)]) == 0
    assert main(["remove", "u-1", "--container", "postgres", "--state-dir", str(admitted)]) == 2


def test_api_removing_what_does_not_exist_raises_not_found_unless_missing_ok() -> None:
    mm = MemoryManager(Machine.synthetic(2, memory="8Gi"))
    mm.admit(Pod.of("p", Container.of("c", cpu="1", memory="1Gi")))
    before = mm.checkpoint()
    with pytest.raises(NotFoundError) as pod_info:
        mm.remove("nope")
    assert (pod_info.value.pod_uid, pod_info.value.container) == ("nope", None)
    assert isinstance(pod_info.value, LookupError)
    with pytest.raises(NotFoundError) as container_info:
        mm.remove("p", "nope")
    assert (container_info.value.pod_uid, container_info.value.container) == ("p", "nope")
    with pytest.raises(NotFoundError):
        mm.remove_many(["p", "nope"])  # all or nothing: p stays
    assert mm.checkpoint() == before
    mm.remove("nope", missing_ok=True)
    mm.remove("p", "nope", missing_ok=True)
    assert mm.checkpoint() == before
    mm.remove("p")
    assert mm.checkpoint() != before
