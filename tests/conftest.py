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


#: The small slab run's config: replaces config.yaml (schema defaults), small splits and CNN.
SLAB_RUN_CONFIG = """cohorts:
  toy:
    role: development
    source: slabs
    slabs: {{folder: "{folder}"}}
splits: {{n_splits: 2}}
cnn:
  arch: {{channels: [8, 16, 16], dense_units: [32]}}
  train: {{epochs: 3, patience: 2}}
"""


@pytest.fixture(scope="session")
def slab_run(tmp_path_factory) -> Path:
    """The workflow on a synthetic slab folder (tests/test_slabs.py), run once to completion
    (about a minute): its slab cohort ``toy`` is the development cohort, so it exports a slab
    model (results/model)."""
    from test_slabs import write_slab_folder

    root = tmp_path_factory.mktemp("slab run")
    folder = write_slab_folder(root / "slabs")
    config = root / "slabs.yaml"
    config.write_text(SLAB_RUN_CONFIG.format(folder=folder))
    workdir = root / "run"
    snakemake("--cores", str(os.cpu_count() or 2), "--quiet", workdir=workdir, configfiles=[config])
    yield workdir
    shutil.rmtree(root, ignore_errors=True)
