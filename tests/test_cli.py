"""The pymm command line: the main job, admission from manifests, and one-line errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pymm.cli import main
from pymm.machine import Machine

GI = 2**30

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: prod, uid: 1111-2222}
spec:
  containers:
  - name: postgres
    resources:
      limits: {cpu: "4", memory: 8Gi, hugepages-2Mi: 512Mi}
"""


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_demo_prints_admissions_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["demo"], capsys)
    assert rc == 0
    assert "xeon-8480-2s-snc4" in out and "admitted postgres-0" in out
    assert "rejected too-big" in out and "[memorymanager]" in out
    assert "NUMA memory after admission" in out


def test_demo_shows_what_pymms_best_setting_rescues(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["demo"], capsys)
    assert rc == 0 and "Beyond the kubelet" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if "│" in line}
    # The pinned trading engines: the kubelet rejects both (#120733's pattern), pymm places
    # them on node 1, the idle node of the same socket as nodes 2-3 their CPUs prefer.
    for uid in ("trading-0", "trading-1"):
        assert rows[uid][1:5] == ["│", "rejected", "│", "NUMA"], rows[uid]
        assert rows[uid][5] == "1"
    assert "kubelet: 9/13 admitted" in out and "pymm:    11/13 admitted" in out
    # most-allocated packs the DPDK pod's sidecar onto node 2 (postgres-0's, the busier one);
    # the row names each container rather than suggesting one container spans 0 and 2.
    assert "vswitch NUMA 0, stats NUMA 2" in " ".join(rows["dpdk-router"]) and "packed" in out


def test_demo_json_is_consistent(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["demo", "--json"], capsys)
    data = json.loads(out)
    assert rc == 0
    admitted = {a["podUID"] for a in data["admissions"] if a["admit"]}
    pinned = {
        a["podUID"]
        for a in data["admissions"]
        if a["admit"] and any(c["numaNodes"] for c in a["containers"].values())
    }
    assert pinned <= set(data["state"]["entries"]) and pinned <= admitted


def test_admit_manifest_with_state_dir_then_remove(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pod = tmp_path / "pod.yaml"
    pod.write_text(POD)
    state = tmp_path / "state"
    rc, out, _ = run(
        [
            "admit",
            str(pod),
            "--machine",
            "xeon-gold-6242-2s",
            "--state-dir",
            str(state),
            "--hugepages",
            "2Mi=1024",
            "--json",
        ],
        capsys,
    )
    assert rc == 0
    result = json.loads(out)[0]
    assert result["admit"] and result["containers"]["postgres"]["cpusetMems"] == "0"
    assert "1111-2222" in json.loads((state / "memory_manager_state").read_text())["entries"]
    rc, out, _ = run(
        [
            "remove",
            "1111-2222",
            "--machine",
            "xeon-gold-6242-2s",
            "--state-dir",
            str(state),
            "--hugepages",
            "2Mi=1024",
        ],
        capsys,
    )
    assert rc == 0
    assert "entries" not in json.loads((state / "memory_manager_state").read_text())


def test_state_from_another_machine_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pod = tmp_path / "pod.yaml"
    pod.write_text(POD)
    state = tmp_path / "state"
    args = ["--machine", "xeon-gold-6242-2s", "--state-dir", str(state)]
    assert run(["admit", str(pod), *args, "--hugepages", "2Mi=1024", "--quiet"], capsys)[0] == 0
    before = (state / "memory_manager_state").read_bytes()
    # As an older pymm left it: no recorded configuration, so the flags alone describe the
    # machine, and without --hugepages it is not the one the file was written on.
    (state / "pymm-config.json").unlink()
    rc, _, err = run(["remove", "1111-2222", *args], capsys)
    assert rc == 2 and "the expected machine state is different from the real one" in err
    # What differs: the 1024 pages of 2Mi the file was written with are gone.
    assert "\n  node 0 hugepages-2Mi total: file 2Gi, expected 0\n" in err
    assert err.splitlines()[-1].startswith("pymm: advice: the node's memory, hugepages")
    assert (state / "memory_manager_state").read_bytes() == before


def test_reboot_drift_needs_tolerate_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pod = tmp_path / "pod.yaml"
    pod.write_text(POD)
    state = tmp_path / "state"
    machine = Machine.load("xeon-gold-6242-2s").to_dict()
    args = ["--state-dir", str(state), "--hugepages", "2Mi=1024"]
    assert (
        run(["admit", str(pod), "--machine", "xeon-gold-6242-2s", *args, "--quiet"], capsys)[0] == 0
    )
    for node in machine["nodes"]:
        node["memory_bytes"] -= 48 << 20
    drifted = tmp_path / "drifted.json"
    drifted.write_text(json.dumps(machine))
    args += ["--machine", str(drifted)]
    rc, _, err = run(["remove", "1111-2222", *args], capsys)
    assert rc == 2 and "node totals drifted by at most 48Mi" in err
    rc, _, err = run(["remove", "1111-2222", *args, "--tolerate-drift", "64Mi"], capsys)
    assert rc == 0, err
    assert err.startswith("pymm: note: the restored state differed from this machine")
    assert "rebased" in err
    on_disk = json.loads((state / "memory_manager_state").read_text())
    assert "entries" not in on_disk
    assert (
        on_disk["machineState"]["0"]["memoryMap"]["memory"]["total"]
        == (machine["nodes"][0]["memory_bytes"])
    )


def test_hints_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pod = tmp_path / "pod.yaml"
    pod.write_text(POD)
    rc, out, _ = run(
        ["hints", str(pod), "--machine", "xeon-gold-6242-2s", "--hugepages", "2Mi=1024", "--json"],
        capsys,
    )
    hints = json.loads(out)["1111-2222"]["postgres"]
    assert rc == 0 and hints["memory"][0] == {"affinity": [0], "preferred": True}
    assert hints["hugepages-2Mi"] == hints["memory"]


HUGEPAGES_POD = """\
apiVersion: v1
kind: Pod
metadata: {name: dpdk, uid: dpdk-1}
spec:
  containers:
  - name: c
    resources:
      limits: {cpu: "1", memory: 1Gi, hugepages-2Mi: 3Gi}
"""


@pytest.mark.parametrize(
    ("options", "node_0", "node_1"),
    [
        # Each node has 1024 pages of 2Mi (2Gi): 3Gi needs the group {0,1}. The kubelet takes
        # its pages lowest node first (all 2Gi of node 0, then 1Gi); spread-hugepages takes
        # 768 pages (1.5Gi) from each.
        ([], 2 * GI, 1 * GI),
        (["--memory-policy-option", "spread-hugepages=true"], 3 * GI // 2, 3 * GI // 2),
    ],
)
def test_memory_policy_option_reaches_the_manager(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    node_0: int,
    node_1: int,
) -> None:
    pod = tmp_path / "pod.yaml"
    pod.write_text(HUGEPAGES_POD)
    state = tmp_path / "state"
    machine = ["--machine", "xeon-gold-6242-2s", "--hugepages", "2Mi=1024"]
    rc, _, err = run(["admit", str(pod), *machine, "--state-dir", str(state), *options], capsys)
    assert rc == 0, err
    nodes = json.loads((state / "memory_manager_state").read_text())["machineState"]
    reserved = [nodes[n]["memoryMap"]["hugepages-2Mi"]["reserved"] for n in ("0", "1")]
    assert reserved == [node_0, node_1]
    assert nodes["0"]["cells"] == nodes["1"]["cells"] == [0, 1]
    recorded = json.loads((state / "pymm-config.json").read_text())["flags"]
    assert recorded["memory_policy_option"] == options[1:]


def test_a_recorded_memory_policy_option_applies_to_later_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pod = tmp_path / "pod.yaml"
    pod.write_text(HUGEPAGES_POD)
    state = tmp_path / "state"
    first = ["--machine", "xeon-gold-6242-2s", "--hugepages", "2Mi=1024", "--state-dir", str(state)]
    spread = ["--memory-policy-option", "spread-hugepages=true"]
    assert run(["admit", str(pod), *first, *spread], capsys)[0] == 0
    assert run(["remove", "dpdk-1", "--state-dir", str(state)], capsys)[0] == 0
    # No option given: the recorded one applies, and the pages are spread again.
    rc, _, err = run(["admit", str(pod), "--state-dir", str(state)], capsys)
    assert rc == 0, err
    nodes = json.loads((state / "memory_manager_state").read_text())["machineState"]
    assert [nodes[n]["memoryMap"]["hugepages-2Mi"]["reserved"] for n in "01"] == [3 * GI // 2] * 2
    # Given twice, the last value counts, as for the manager: the same as the recorded one.
    again = ["--memory-policy-option", "spread-hugepages=false", *spread]
    rc, _, err = run(["hints", str(pod), "--state-dir", str(state), *again], capsys)
    assert rc == 0, err


def test_the_agent_takes_memory_policy_options(tmp_path: Path) -> None:
    from pymm.cli import build_parser
    from pymm.commands._options import build_manager

    args = build_parser().parse_args(
        [
            "agent",
            "--state-dir",
            str(tmp_path / "state"),
            "--socket",
            str(tmp_path / "sock"),
            "--memory-policy-option",
            "admit-when-fits=true",
            "--memory-policy-option",
            "memory-tiers=1",
        ]
    )
    with build_manager(args) as mm:
        assert mm.config["memory_policy_options"] == {
            "admit-when-fits": "true",
            "memory-tiers": "1",
        }


def test_machines_lists_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["machines", "--json"], capsys)
    assert rc == 0 and len(json.loads(out)) == 12


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["admit", "POD", "--reserved-memory", "0:memory=1Gi;"], "incorrect format"),
        (["admit", "POD", "--reserved-memory", "0:memory=abc"], "failed to parse the quantatity"),
        (["admit", "POD", "--machine", "no-such-machine"], "unknown machine"),
        (["admit", "MISSING"], "No such file"),
        (["admit", "BAD"], "expected a quantity"),
        (["admit", "POD", "--policy-option", "bogus=1"], "unknown Topology Manager Policy option"),
        (
            ["admit", "POD", "--memory-policy-option", "admit-when-fit=true"],
            'unknown memory manager policy option "admit-when-fit" (did you mean '
            '"admit-when-fits"?)',
        ),
        (["hints", "POD", "--memory-policy-option", "spread-hugepages=yes"], 'parsing "yes"'),
        (["admit", "POD", "--memory-policy-option", "admit-when-fits"], "expected KEY=VALUE"),
        (["remove", "x"], "needs --state-dir"),
        (["admit", "POD", "--hugepages", "2Mi"], "expected SIZE=PAGES"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    (tmp_path / "pod.yaml").write_text(POD)
    (tmp_path / "bad.yaml").write_text(POD.replace("memory: 8Gi", "memory: [8Gi]"))
    subst = {
        "POD": str(tmp_path / "pod.yaml"),
        "BAD": str(tmp_path / "bad.yaml"),
        "MISSING": str(tmp_path / "missing.yaml"),
    }
    rc, _, err = run([subst.get(a, a) for a in args], capsys)
    assert rc == 2
    assert err.startswith("pymm: error:") and needle in err and err.count("\n") == 1


def test_console_script_runs_without_traceback(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "pymm.cli", "admit", str(tmp_path / "x.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_demo_keeps_a_two_node_pod_on_one_socket_with_prefer_closest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def inference_nodes(args: list[str]) -> list[int]:
        assert main(["demo", "--json", *args]) == 0
        data = json.loads(capsys.readouterr().out)
        a = next(a for a in data["admissions"] if a["podUID"] == "llm-inference")
        return list(a["containers"]["server"]["numaNodes"])

    # xeon-8480-2s-snc4: nodes 0-3 on socket 0, 4-7 on socket 1.
    close = inference_nodes([])
    assert len(close) == 2 and len({n // 4 for n in close}) == 1
    # Without distances the kubelet takes the narrowest mask of lowest value: across sockets.
    assert inference_nodes(["--no-prefer-closest"]) == [1, 4]


def test_benchmark_suite_stays_off_the_runtime_import_path(tmp_path: Path) -> None:
    # A fresh interpreter: this test process may already have imported the suite.
    code = (
        "import contextlib, io, sys\n"
        "import pymm.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert pymm.cli.main(['machines', '--json']) == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith('pymm')))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    loaded = set(json.loads(p.stdout.replace("'", '"')))
    assert "pymm.cli" in loaded and "pymm.commands.bench" in loaded
    assert not {m for m in loaded if m.startswith("pymm._bench")}


def test_every_command_is_registered() -> None:
    from pymm.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {
        "demo",
        "admit",
        "plan",
        "defrag",
        "hints",
        "resize",
        "remove",
        "machines",
        "replay",
        "simulate",
        "nrt",
        "agent",
        "topology",
        "state",
        "bench",
    }
