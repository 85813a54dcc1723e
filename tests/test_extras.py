"""The cluster extra (``pymm[agent]``) stays optional: ``import pymm`` loads none of it, and each
command that needs it says in one line which extra to install when it is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
EXTRA = (
    "kubernetes",
    "prometheus_client",
    "httptools",
    "uvloop",
    "watchfiles",
    "pythonjsonlogger",
)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_import_pymm_loads_no_cluster_dependency() -> None:
    out = run_python(
        "import sys, pymm\n"
        "mm = pymm.MemoryManager(pymm.Machine.synthetic(2), reserved_memory='0:memory=1Gi')\n"
        "mm.nrt('n')\n"
        f"print(sorted(m for m in {EXTRA!r} if m in sys.modules))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def blocked(module: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    # None in sys.modules makes `import module` fail as if it were not installed.
    return run_python(
        f"import sys; sys.modules[{module!r}] = None\n"
        "from pymm.cli import main\n"
        f"raise SystemExit(main({argv!r}))"
    )


@pytest.mark.parametrize(
    ("module", "argv", "needs"),
    [
        ("httptools", ["agent", "--state-dir", "{tmp}/s", "--socket", "{tmp}/a.sock"], "httptools"),
        ("uvloop", ["agent", "--state-dir", "{tmp}/s", "--socket", "{tmp}/a.sock"], "uvloop"),
        (
            "prometheus_client",
            ["agent", "--state-dir", "{tmp}/s", "--socket", "{tmp}/a.sock"],
            "prometheus_client",
        ),
        (
            "kubernetes",
            ["nrt", "--state-dir", "{tmp}/s", "--machine", "xeon-gold-6242-2s", "--apply"],
            "the kubernetes client",
        ),
    ],
)
def test_missing_extra_is_one_line(
    tmp_path: Path, module: str, argv: list[str], needs: str
) -> None:
    from pymm import Machine, MemoryManager

    m = Machine.from_catalog("xeon-gold-6242-2s")
    MemoryManager(m, reserved_memory=m.reserve_per_node("1Gi"), state_dir=tmp_path / "s").close()
    out = blocked(module, [a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("pymm: error:")
    assert needs in lines[0] and "pip install 'pymm[agent]'" in lines[0]
