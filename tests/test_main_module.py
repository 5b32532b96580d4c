"""``python -m tinydistill`` is the ``tinydistill`` command: same help, version and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinydistill import __version__

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def invocations(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Every ``python -m tinydistill`` call the tests check, started at once (each spends seconds importing
    torch; run together they share the cores instead of queueing)."""
    tmp = tmp_path_factory.mktemp("main_module")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    calls = {"help": (["--help"], REPO), "version": (["--version"], REPO),
             "unknown": (["no-such-command"], REPO), "missing": (["train", str(tmp / "missing.yaml")], tmp)}
    procs = {name: subprocess.Popen([sys.executable, "-m", "tinydistill", *args], cwd=cwd, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name, (args, cwd) in calls.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return out


def test_python_dash_m_lists_the_commands_and_its_version(invocations):
    out = invocations["help"]
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: tinydistill")
    for command in ("quickstart", "train", "eval", "data", "teach", "reproduce", "analyze", "search", "serve"):
        assert command in out.stdout
    version = invocations["version"]
    assert version.returncode == 0 and version.stdout.strip() == f"tinydistill {__version__}"


def test_python_dash_m_keeps_the_exit_codes(invocations):
    unknown = invocations["unknown"]
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
    missing = invocations["missing"]
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: ") and "missing.yaml" in missing.stderr


def test_help_does_not_import_torch():
    """Building the parser (all nine commands' flags) stays light: torch loads only when a command runs."""
    probe = ("import sys; from tinydistill.cli import build_parser; build_parser(); "
             "print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
