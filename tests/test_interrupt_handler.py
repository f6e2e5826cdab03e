"""SIGTERM while the main thread holds the lock the handler needs (Snakemake 9.27's scheduler
does this; see datspect/workflow/interrupt.py): the handler must not deadlock the process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO

# A handler that takes a lock, as Snakemake's exit_gracefully takes the scheduler's lock, and a
# main thread that receives SIGTERM while holding it, as Snakemake's _finish_jobs does.
PROCESS = """
import os, signal, sys, threading, time
from datspect.workflow.interrupt import handle_sigterm_in_thread

lock, handled = threading.Lock(), threading.Event()

def graceful(signum, frame):
    with lock:
        handled.set()

signal.signal(signal.SIGTERM, graceful)
if sys.argv[1] == "in_thread":
    handle_sigterm_in_thread()
with lock:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.5)  # the handler runs in this (main) thread between bytecodes
assert handled.wait(5)
print("handled")
"""


def run(mode: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-c", PROCESS, mode]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=10)


def test_handler_in_the_main_thread_deadlocks():
    """Snakemake's handler as it is: the failure the deferral avoids (so the test can fail)."""
    with pytest.raises(subprocess.TimeoutExpired):
        run("in_main_thread")


def test_handler_in_its_own_thread_waits_for_the_lock():
    proc = run("in_thread")
    assert proc.returncode == 0 and proc.stdout == "handled\n", proc.stderr
