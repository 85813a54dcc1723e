"""What the commands print: rejections explained, compact hints, replay summary, narrow
terminals and closed pipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pymm import Container, Machine, MemoryManager, Pod
from pymm.cli import EXIT_BROKEN_PIPE, main
from pymm.explain import explain_rejection, human_size

CONF = Path(__file__).parent / "conformance"
SYSFS = Path(__file__).parent / "fixtures" / "sysfs" / "threadripper-3960x-nps4"
GI = 1 << 30


def pod(uid: str, memory: str, **hugepages: str) -> Pod:
    pages = {size.removeprefix("p"): q for size, q in hugepages.items()}
    return Pod.of(uid, Container.of("c", cpu="1", memory=memory, hugepages=pages or None))


def two_nodes(topology_policy: str = "best-effort") -> MemoryManager:
    # 16Gi per node, 1Gi reserved per node by default: 15Gi allocatable each, 30Gi in all.
    return MemoryManager(Machine.synthetic(2, memory="16Gi"), topology_policy=topology_policy)


# -- explain_rejection ------------------------------------------------------------------------


def test_human_size() -> None:
    assert [human_size(n) for n in (2000 * GI, 512 << 20, GI + GI // 2, 3 << 40, 500)] == [
        "2000Gi",
        "512Mi",
        "1536Mi",
        "3Ti",
        "500",
    ]
    assert human_size(20_000 * GI + 1) == "19.5Ti"


def test_explains_a_pod_larger_than_the_machine() -> None:
    mm = two_nodes()
    p = pod("big", "40Gi")
    a = mm.admit(p)
    assert not a.admitted
    assert explain_rejection(mm, p, a) == (
        "the pod needs 40Gi of memory; the whole machine has 30Gi allocatable, "
        "the largest node 15Gi free"
    )


def test_explains_memory_held_by_other_pods() -> None:
    mm = two_nodes()
    assert mm.admit(pod("a", "10Gi")) and mm.admit(pod("b", "10Gi"))
    p = pod("c", "12Gi")
    a = mm.admit(p)
    assert not a.admitted
    why = explain_rejection(mm, p, a)
    assert why is not None
    assert why.startswith("the pod needs 12Gi of memory; the whole machine has 10Gi free of 30Gi")
    assert "largest node 5Gi free" in why


def test_explains_single_numa_node_limit() -> None:
    mm = two_nodes(topology_policy="single-numa-node")
    p = pod("wide", "20Gi")
    a = mm.admit(p)
    assert a.reason == "TopologyAffinityError"
    why = explain_rejection(mm, p, a)
    assert why is not None and "single-numa-node" in why and "largest node 15Gi free" in why


def test_explains_missing_hugepage_size_and_names_the_flag() -> None:
    mm = two_nodes()
    p = pod("dpdk", "1Gi", p1Gi="2Gi")
    a = mm.admit(p)
    assert not a.admitted
    why = explain_rejection(mm, p, a)
    assert why is not None
    assert "hugepages-1Gi (2Gi)" in why and "--hugepages 1Gi=PAGES" in why


def test_no_explanation_when_admitted_or_when_nothing_simple_explains_it() -> None:
    mm = two_nodes(topology_policy="restricted")
    small = pod("small", "1Gi")
    assert explain_rejection(mm, small, mm.admit(small)) is None
    # 20Gi fits in the 29Gi left, only not where the kubelet's group rules allow it.
    wide = pod("wide", "20Gi")
    a = mm.admit(wide)
    assert not a.admitted
    assert explain_rejection(mm, wide, a) is None


def test_cli_prints_why_after_the_kubelets_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        "kind: Pod\nmetadata: {name: dpdk, uid: dpdk-1}\n"
        "spec:\n  containers:\n  - name: c\n"
        "    resources: {limits: {cpu: 1, memory: 1Gi, hugepages-1Gi: 2Gi}}\n"
    )
    assert main(["admit", str(manifest), "--machine", "xeon-gold-6242-2s", "--quiet"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("rejected dpdk-1: UnexpectedAdmissionError: ")
    assert lines[1].startswith("    why: ") and "--hugepages 1Gi=PAGES" in lines[1]


def test_demo_says_why_the_too_big_pod_does_not_fit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("rejected too-big"))
    machine = Machine.from_catalog("xeon-8480-2s-snc4")
    # Nodes 0-1 give 16 x 1Gi to hugepages; every node reserves 1Gi.
    allocatable = sum(n.memory_bytes for n in machine.nodes) - 2 * 16 * GI - 8 * GI
    assert lines[i + 1] == (
        f"    why: the pod needs 2000Gi of memory; the whole machine has "
        f"{allocatable / GI:.1f}Gi allocatable, the largest node "
        + lines[i + 1].rsplit("the largest node ", 1)[1]
    )
    assert "unexpected" in lines[i]  # the kubelet's text stays as it is


# -- hints ------------------------------------------------------------------------------------


def test_hints_table_is_compact_and_json_keeps_every_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        "kind: Pod\nmetadata: {name: db, uid: db-1}\nspec:\n  containers:\n  - name: pg\n"
        "    resources: {limits: {cpu: 1, memory: 8Gi, hugepages-2Mi: 64Mi}}\n"
    )
    args = ["hints", str(manifest), "--machine", "xeon-8480-2s-snc4", "--hugepages", "2Mi=64"]
    assert main([*args, "--json"]) == 0
    hints = json.loads(capsys.readouterr().out)["db-1"]["pg"]
    # 8 nodes: 255 node sets; the 8 single nodes are preferred.
    assert len(hints["memory"]) == 255 and hints["memory"] == hints["hugepages-2Mi"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) < 20
    assert "db-1" in out and "pg" in out and "hugepages-2Mi," in out
    assert "{0} {1} {2} {3}" in out and "+239 more" in out


# -- replay -----------------------------------------------------------------------------------


def test_replay_prints_a_one_line_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = json.loads((CONF / "kubelet-oracle-small.json").read_text())
    ops = [r for run in ref["results"] for r in run["results"]]
    admitted = sum(r.get("admit") is True for r in ops)
    # Where the kubelet panicked, pymm rejects the pod with a clear error instead.
    rejected = sum(r.get("admit") is False or r.get("panic") is True for r in ops)
    refused = sum(run.get("setupError") is not None for run in ref["results"])
    rc = main(
        [
            "replay",
            str(CONF / "kubelet-oracle-small.scenarios.json"),
            "-o",
            str(tmp_path / "out.json"),
            "--kubelet-version",
            "1.26",
            "--compare",
            str(CONF / "kubelet-oracle-small.json"),
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith(
        f"pymm: replayed 54 scenarios, {len(ops)} ops, {admitted} admitted, {rejected} rejected, "
        f"{refused} refused at setup; results in "
    )
    assert "0 differences in 0 of 54 scenarios" in err[0]


# -- terminals and pipes ----------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).parent.parent), env.get("PYTHONPATH")])
    )
    return env | extra


def test_machines_never_truncates_a_name_in_a_narrow_terminal() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "pymm.cli", "machines"],
        capture_output=True,
        text=True,
        check=True,
        env=_env(COLUMNS="60"),
    )
    for name in Machine.catalog_names():
        assert f" {name} " in p.stdout
    assert "…" not in p.stdout


@pytest.mark.parametrize(
    "argv", [["machines"], ["topology", "--sysfs", str(SYSFS)], ["machines", "--json"]]
)
def test_closed_pipe_ends_quietly(argv: list[str]) -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", "pymm.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert p.stdout is not None and p.stderr is not None
    # The reader goes away before the command has started Python, let alone written a line.
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == EXIT_BROKEN_PIPE
    assert err == ""
