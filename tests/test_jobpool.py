"""The warm worker pool: steps run in it, and its workers die with the process that owns it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil  # a Snakemake dependency
import pytest
from conftest import REPO

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
    out, log = tmp_path / "out.txt", tmp_path / "logs" / "touch.log"
    log.parent.mkdir()
    log.write_text("a previous run's log\n")  # replaced, not appended to
    jobpool.run("touch", {"path": str(out)}, str(log), in_pool=True, workers=1)
    assert out.exists() and log.read_text().startswith("step touch done")
    missing = tmp_path / "missing scan.nii.gz"
    with pytest.raises(InputError, match="image not found"):
        jobpool.run(
            "ingest",
            {"source": str(missing), "out": str(tmp_path / "x.nii.gz")},
            str(log),
            in_pool=True,
            workers=1,
        )
    text = log.read_text()
    assert str(missing) in text and "Traceback" not in text  # the user's error, no traceback
