"""Interrupted runs: the small workflow killed during normalization and during CNN training,
then resumed, ends with the same ``per_split.tsv`` as an uninterrupted run.

SIGTERM goes to the Snakemake process (it finishes the running jobs, then stops); SIGKILL goes
to its whole process group, as ``kill -9`` of a job or the loss of a node would.  After each
kill nothing may look complete that is not: every file outside ``logs/`` and ``.snakemake/``
either reads back whole and is known to Snakemake (finished job metadata or an incomplete
marker) or is a hidden temporary file of an atomic write; no process of the run survives.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from base64 import urlsafe_b64decode
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import psutil  # a Snakemake dependency
import pytest
from conftest import REPO, SMALL, SNAKEMAKE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("DATSPECT_SLOW") != "1",
        reason="opt-in (about 35 min on 2 busy cores: kills and resumes the small workflow "
        "four times); set DATSPECT_SLOW=1 to run it",
    ),
]
TIMEOUT = 1800
STOP_TIMEOUT = 600  # the running jobs of the small workflow take seconds


def start(workdir: Path, log: Path, *args) -> subprocess.Popen:
    """Snakemake in its own session and process group, as a user's shell would start it."""
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--cores", "2", *args, "--configfile", *SMALL]
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        return subprocess.Popen(
            cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def recorded(folder: Path) -> set[str]:
    """Output paths of Snakemake's per-file records (base64 names split into chunks)."""
    if not folder.exists():
        return set()
    return {
        urlsafe_b64decode("".join(s.lstrip("@") for s in p.relative_to(folder).parts)).decode()
        for p in folder.rglob("*")
        if p.is_file()
    }


def running(workdir: Path, pattern: str) -> set[str]:
    return {f for f in recorded(workdir / ".snakemake" / "incomplete") if re.search(pattern, f)}


def wait_until(proc: subprocess.Popen, condition, what: str) -> float:
    start = time.monotonic()
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() - start < TIMEOUT, f"no {what} after {TIMEOUT} s"
        time.sleep(0.05)
    return time.monotonic() - start


def normalizing(workdir: Path):
    """True once a normalize job runs while at least five others have finished."""

    def condition():
        done = len(list((workdir / "preprocessed").glob("*/*/qc.json")))
        return done >= 5 and running(workdir, r"^preprocessed/.*/qc\.json$")

    return condition


def training(workdir: Path):
    """True once a running train_cnn job has logged its first epoch."""

    def condition():
        for output in running(workdir, r"^results/models/cnn/.*/model\.pt$"):
            setting, split = re.match(r"results/models/cnn/(\w+)/split-(\d+)/", output).groups()
            log = workdir / "logs" / "train_cnn" / f"{setting}_{split}.log"
            if log.exists() and "epoch   1" in log.read_text(errors="replace"):
                return True
        return False

    return condition


def session(pid: int) -> list[psutil.Process]:
    alive = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getsid(proc.pid) == pid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return alive


def interrupt(proc: subprocess.Popen, sig: int) -> None:
    if sig == signal.SIGTERM:
        os.kill(proc.pid, sig)
    else:
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"Snakemake hung: still running {STOP_TIMEOUT} s after {sig!r}")
    deadline = time.monotonic() + 10
    while session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session(proc.pid) == [], "processes of the killed run keep running"


def is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and ".tmp" in path.name


def read_back(path: Path) -> None:
    """Raise unless ``path`` is a whole file of its kind."""
    name = path.name
    if name.endswith(".nii.gz"):
        nib.load(path).get_fdata()
    elif name.endswith(".tsv"):
        assert len(pd.read_csv(path, sep="\t")) > 0
    elif name.endswith(".json"):
        json.loads(path.read_text())
    elif name.endswith(".npz"):
        with np.load(path) as data:
            assert all(data[k].size for k in data)
    elif name.endswith(".pt"):
        import torch

        torch.load(path, weights_only=True)
    elif name.endswith(".png"):
        from PIL import Image

        with Image.open(path) as image:
            image.load()
    elif name.endswith(".txt"):
        rows = [r for r in path.read_text().splitlines() if not r.startswith("#")]
        assert np.loadtxt(rows).shape == (4, 4)
    else:
        assert path.stat().st_size > 0


def check_nothing_half_written(workdir: Path) -> tuple[int, int]:
    """Every output reads back whole and Snakemake knows it; returns (outputs, temporaries)."""
    known = recorded(workdir / ".snakemake" / "metadata")
    known |= recorded(workdir / ".snakemake" / "incomplete")
    outputs = temporaries = 0
    for path in sorted(workdir.rglob("*")):
        rel = path.relative_to(workdir)
        if not path.is_file() or rel.parts[0] in (".snakemake", "logs"):
            continue
        if is_temporary(path):
            temporaries += 1
            continue
        read_back(path)
        assert str(rel) in known, f"{rel} exists but no job finished or started it"
        outputs += 1
    return outputs, temporaries


def job_stats(log_text: str) -> dict[str, int]:
    """The last 'Job stats' table of a Snakemake log: the jobs that run."""
    block = log_text.split("Job stats:")[-1].split("\n\n")[0]
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M) if m[1] != "total"
    }


def outputs_run(log_text: str) -> set[str]:
    """Outputs of the jobs a Snakemake log shows starting."""
    return {
        f.strip()
        for line in re.findall(r"^\s+output: (.*)$", log_text, re.M)
        for f in line.split(",")
    }


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_and_resumed_run_gives_the_same_results(small_run, tmp_path, sig):
    workdir, log = tmp_path / "work dir", tmp_path / "snakemake.log"
    report, pending, offset = {}, [], 0
    t0 = time.monotonic()
    for stage, condition in (("normalize", normalizing), ("train_cnn", training)):
        proc = start(workdir, log, "--rerun-incomplete")
        waited = wait_until(proc, condition(workdir), f"{stage} job")
        pattern = r"/qc\.json$" if stage == "normalize" else r"/model\.pt$"
        killed = sorted(running(workdir, pattern))
        interrupt(proc, sig)
        text = log.read_text()
        assert set(pending) <= outputs_run(text[offset:]), "incomplete jobs were not rerun"
        offset = len(text)
        outputs, temporaries = check_nothing_half_written(workdir)
        pending = sorted(recorded(workdir / ".snakemake" / "incomplete"))
        if sig == signal.SIGTERM:
            assert pending == [], "SIGTERM lets running jobs finish"
        report[stage] = {
            "killed after s": round(waited, 1),
            "jobs running at the kill": killed,
            "outputs left incomplete": pending,
            "outputs": outputs,
            "hidden temporaries": temporaries,
            "snakemake exit code": proc.returncode,
        }
        if sig == signal.SIGKILL:  # a killed Snakemake leaves its lock behind
            unlock = start(workdir, log, "--unlock")
            assert unlock.wait(timeout=TIMEOUT) == 0
    resume = start(workdir, log, "--rerun-incomplete")
    assert resume.wait(timeout=TIMEOUT) == 0, log.read_text()[-5000:]
    resumed = log.read_text()[offset:]
    assert set(pending) <= outputs_run(resumed), "incomplete jobs were not rerun"
    report["resume"] = job_stats(resumed)
    report["total s"] = round(time.monotonic() - t0, 1)
    print(f"\n{signal.Signals(sig).name}: {json.dumps(report, indent=1)}")
    leftovers = [p for p in workdir.rglob(".*") if is_temporary(p)]
    assert leftovers == [], "hidden temporaries survive the resumed run"
    table = "results/metrics/per_split.tsv"
    assert (workdir / table).read_bytes() == (small_run / table).read_bytes()
