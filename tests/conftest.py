"""Shared fixtures: the repository root, the default config and a finished small workflow."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from datspect.workflow.config_checks import load_yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SMALL = [str(REPO / "config.yaml"), str(REPO / "tests" / "config.small.yaml")]


def snakemake(*args, workdir, configfiles=SMALL, check=True, timeout=1200, env=None):
    """Run the workflow's Snakemake in ``workdir``; return the completed process."""
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--configfile", *map(str, configfiles), *args]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run: {rule: planned jobs}; {} when nothing to do."""
    if "Job stats:" not in output:
        return {}
    block = output.split("Job stats:")[1].split("\n\n")[0]
    counts = {}
    for line in block.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match:
            counts[match.group(1)] = int(match.group(2))
    return counts


@pytest.fixture(scope="session")
def default_config() -> dict:
    return load_yaml(REPO / "config.yaml")


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """The small workflow, run once to completion (the slowest fixture: a few minutes)."""
    workdir = tmp_path_factory.mktemp("small run")  # a space: paths must be quoted
    snakemake("--cores", str(os.cpu_count() or 2), "--quiet", workdir=workdir)
    yield workdir
    shutil.rmtree(workdir, ignore_errors=True)
