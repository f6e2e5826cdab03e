"""The package mirrors the DAG: its layers (pyproject.toml) hold, and every stage has its folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO

BIN = Path(sys.executable).parent


def test_import_layers_hold():
    proc = subprocess.run(
        [str(BIN / "lint-imports")], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_every_subpackage_is_a_layer():
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    packages = {p.parent.name for p in (REPO / "datspect").glob("*/__init__.py")}
    missing = {p for p in packages if f'"{p}' not in text and f"| {p}" not in text}
    assert not missing, f"subpackages outside the layers contract: {sorted(missing)}"
