"""The warm worker pool: steps run in it with their rule's names as arguments, its workers die
with the process that owns it, and a run that cannot use it says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil  # a Snakemake dependency
import pytest
from conftest import REPO, snakemake

from datspect.errors import InputError
from datspect.workflow import jobpool

# The owner starts a pool, gives it two steps that would run for a minute and prints its workers.
OWNER = """
import sys, time
from datspect.workflow import jobpool
pool = jobpool._pool(2)
futures = [pool.submit(time.sleep, 60) for _ in range(2)]
time.sleep(2)
print(" ".join(map(str, pool._processes)), flush=True)
futures[0].result()
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_workers_exit_when_their_owner_is_killed():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True, env=env
    )
    workers = [int(pid) for pid in owner.stdout.readline().split()]
    assert len(workers) == 2 and all(_alive(pid) for pid in workers)
    os.kill(owner.pid, signal.SIGKILL)  # as the out-of-memory killer would
    owner.wait()
    deadline = time.monotonic() + 5
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, workers)), "orphaned pool workers keep running"


def test_step_runs_in_the_pool_and_reports_input_errors(tmp_path):
    source, out, log = tmp_path / "in.txt", tmp_path / "out.txt", tmp_path / "logs" / "copy.log"
    source.write_text("x")
    log.parent.mkdir()
    log.write_text("a previous run's log\n")  # replaced, not appended to
    kwargs = {"src": str(source), "dst": str(out)}
    jobpool.run("copyfile", kwargs, str(log), in_pool=True, workers=1, module="shutil")
    assert out.read_text() == "x" and log.read_text().startswith("step copyfile done")
    missing = tmp_path / "missing scan.nii.gz"
    with pytest.raises(InputError, match="image not found"):
        jobpool.run(
            "ingest_scan",
            {"source": str(missing), "image": str(tmp_path / "x.nii.gz")}
            | {"cohort": "mine", "subject": "s01"},
            str(log),
            in_pool=True,
            workers=1,
        )
    text = log.read_text()
    assert str(missing) in text and "Traceback" not in text  # the user's error, no traceback


class Named(dict):
    """Stands in for Snakemake's named lists (input, output, params, wildcards): ``items()``."""


class Files(list):
    """Stands in for a named entry of several files (a Snakemake named list itself)."""


def test_step_arguments_are_the_rules_unique_names():
    kwargs = jobpool.step_arguments(
        Named(original="a.nii.gz", sheets=Files(["1.tsv", "2.tsv"])),
        Named(table="t.tsv"),
        Named(sbr={"reference": "occipital"}, code="0123abcd"),  # code: provenance only
        Named(cohort="ppmi", subject="ppmi-0001"),
    )
    assert kwargs == {
        "original": "a.nii.gz",
        "sheets": ["1.tsv", "2.tsv"],
        "table": "t.tsv",
        "sbr": {"reference": "occipital"},
        "cohort": "ppmi",
        "subject": "ppmi-0001",
    }
    assert type(kwargs["sheets"]) is list  # plain values travel to the pool
    for clash in (Named(cohort="c"), Named(threads=2)):
        with pytest.raises(ValueError, match="each name may occur once"):
            jobpool.step_arguments(Named(), Named(), clash, Named(cohort="ppmi"))


def test_threads_and_log_go_to_the_steps_that_take_them(tmp_path, monkeypatch):
    module = tmp_path / "some_steps.py"
    module.write_text(
        "def plain(x):\n    return f'x={x}'\n\n"
        "def busy(x, threads, log):\n    return f'x={x} threads={threads} log={log}'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    log = tmp_path / "step.log"
    assert jobpool.call_step("plain", {"x": 1}, str(log), threads=4, module="some_steps") == "x=1"
    summary = jobpool.call_step("busy", {"x": 1}, str(log), threads=4, module="some_steps")
    assert summary == f"x=1 threads=4 log={log}"


def test_run_without_force_use_threads_warns_once(tmp_path):
    """The warm pool needs profiles/default's force-use-threads; without it the run says so."""
    target = "data/ppmi/truth/ppmi-0001.json"  # one simulate_subject job (0.2 s)
    warning = "datspect: force-use-threads is off"
    plain = snakemake("--cores", "1", target, workdir=tmp_path / "a")
    assert warning not in plain.stderr, plain.stderr
    bare = snakemake("--cores", "1", target, "--workflow-profile", "none", workdir=tmp_path / "b")
    assert bare.stderr.count(warning) == 1, bare.stderr
    assert (tmp_path / "b" / target).read_bytes() == (tmp_path / "a" / target).read_bytes()
    assert jobpool.without_threads_warning(use_threads=True) is None
