"""``python -m tinydistill`` is the ``tinydistill`` command: same help, version and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tinydistill import __version__

REPO = Path(__file__).resolve().parents[1]


def _module(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "tinydistill", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_python_dash_m_lists_the_commands_and_its_version():
    out = _module("--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: tinydistill")
    for command in ("quickstart", "train", "eval", "data", "teach", "reproduce", "analyze", "search", "serve"):
        assert command in out.stdout
    version = _module("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"tinydistill {__version__}"


def test_python_dash_m_keeps_the_exit_codes(tmp_path):
    unknown = _module("no-such-command")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
    missing = _module("train", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: ") and "missing.yaml" in missing.stderr
