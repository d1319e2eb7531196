"""The app as it was at an earlier commit, and scripts run against a tree in a fresh
interpreter: how a benchmark measures its baseline in the same run (no figure copied from a
note). A helper module: it has no ``main``, so ``python -m bench`` does not run it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def baseline_tree(commit: str, tmp: Path) -> Path:
    """``pulse_app`` as it was at ``commit``, from git, in a folder of its own."""
    folder = tmp / "baseline"
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "pulse_app"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def run_json(script: str, args: list[str], *, pythonpath: Path, cwd: Path,
             timeout_s: float = 3600, env: dict | None = None, what: str = "script"):
    """The JSON ``script`` prints on its last line, run with ``python -c`` on ``pythonpath``
    (``cwd`` must not hold another ``pulse_app``: ``-c`` puts it first on the path)."""
    result = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd,
                            capture_output=True, text=True, timeout=timeout_s,
                            env={"PYTHONPATH": str(pythonpath), "PATH": "/usr/bin:/bin",
                                 **(env or {})})
    if result.returncode:
        raise RuntimeError(f"{what} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
