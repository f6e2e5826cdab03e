"""Run the steps of :mod:`.steps` in a warm pool of worker processes (local runs only).

Why: a Snakemake ``script:`` job starts a new interpreter and imports numpy, scipy, nibabel and
SimpleITK, which costs about 0.35-1.1 s of wall time per job on this 2-core machine (see
``bench/job_overhead.py``); the default run has thousands of per-subject jobs.  Locally, the
per-image rules therefore use ``run:`` (executed in threads of the Snakemake process thanks to
``force-use-threads`` in ``profiles/default``) and hand the work to this pool, whose processes
import the libraries once.  On a cluster each job runs in its own process and the step is called
directly.  Threads of the Snakemake process cannot do the work themselves: SimpleITK and
scipy.ndimage hold the GIL.

This module imports nothing heavy so that the thread limits below apply before numpy loads.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import multiprocessing
import os
import threading
import time
import traceback

from datspect.errors import InputError

_LOCK = threading.Lock()
_POOL: concurrent.futures.ProcessPoolExecutor | None = None
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
)


def _init_worker(parent: int) -> None:
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    importlib.import_module("datspect.workflow.steps")


def _exit_with_parent(parent: int, interval: float = 0.2) -> None:
    """End this worker as soon as the Snakemake process is gone (killed, out of memory).

    Without this, a worker would finish its current step and rename its outputs into place
    after the job's owner died, racing the resumed run.  Polling ``getppid`` works wherever the
    worker is re-parented (init or a sub-reaper), unlike ``PR_SET_PDEATHSIG``, which fires when
    the parent *thread* that spawned the worker ends.
    """
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def _pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(os.getpid(),),
            )
        return _POOL


def call_step(step: str, kwargs: dict, log: str) -> str:
    """Call ``steps.<step>(**kwargs)``; write timing and result (or traceback) to the log.

    The log is emptied first and the outcome appended, so that a long step can write its
    progress there as it goes (``train_cnn``) and keep it when it fails.
    """
    _write_log(log, "", mode="w")
    start = time.perf_counter()
    try:
        fn = getattr(importlib.import_module("datspect.workflow.steps"), step)
        summary = fn(**kwargs)
    except InputError as err:  # the user's input: the message says it all, no traceback
        _write_log(log, f"step {step} failed after {time.perf_counter() - start:.2f} s\n{err}\n")
        raise
    except Exception:
        _write_log(
            log,
            f"step {step} failed after {time.perf_counter() - start:.2f} s\n"
            + traceback.format_exc(),
        )
        raise
    _write_log(log, f"step {step} done in {time.perf_counter() - start:.2f} s\n{summary or ''}\n")
    return summary


def _write_log(path: str, text: str, mode: str = "a") -> None:
    if path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, mode, encoding="utf-8") as handle:
            handle.write(text)


def run(step: str, kwargs: dict, log: str, *, in_pool: bool, workers: int) -> None:
    """Run a step in the warm pool (``in_pool``) or in this process."""
    global _POOL
    if not in_pool:
        call_step(step, kwargs, log)
        return
    future = _pool(workers).submit(call_step, step, kwargs, log)
    try:
        future.result()
    except concurrent.futures.process.BrokenProcessPool:
        # A worker died (killed, out of memory): start a fresh pool for the next jobs.
        with _LOCK:
            _POOL = None
        raise
