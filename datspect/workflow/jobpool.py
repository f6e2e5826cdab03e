"""Run the steps of :mod:`.steps` in a warm pool of worker processes (local runs only).

Why: a Snakemake ``script:`` job starts a new interpreter and imports numpy, scipy, nibabel and
SimpleITK, which costs about 0.35-1.1 s of wall time per job on this 2-core machine (see
``bench/job_overhead.py``); the default run has thousands of per-subject jobs.  Locally, the
per-image rules therefore use ``run:`` (executed in threads of the Snakemake process thanks to
``force-use-threads`` in ``profiles/default``) and hand the work to this pool, whose processes
import the libraries once.  On a cluster each job runs in its own process and the step is called
directly.  Threads of the Snakemake process cannot do the work themselves: SimpleITK and
scipy.ndimage hold the GIL.  Without ``force-use-threads`` (another workflow profile, or
``--workflow-profile none``) a local run still works, each ``run:`` job in a Python process of
its own, but slower: :func:`without_threads_warning` says so when the run starts.

This module imports nothing heavy so that the thread limits below apply before numpy loads.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import inspect
import multiprocessing
import os
import threading
import time
import traceback

from datspect.errors import InputError

#: Where the steps live; a bench or a test may run its own module's functions instead.
STEPS = "datspect.workflow.steps"
#: Params that key provenance (``code_version`` in rules/common.smk), not a step's arguments.
PROVENANCE_PARAMS = ("code",)
#: What a job has besides its named files, params and wildcards; given to steps that take it.
EXTRAS = ("threads", "log")

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
    importlib.import_module(STEPS)


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


def step_arguments(input, output, params, wildcards) -> dict:
    """A ``run:`` job's step arguments: the named entries of its rule's input, output, params
    and wildcards (Snakemake's named lists; lists of files as plain lists).

    The names are the step's parameter names, so they must be unique across the four and
    differ from :data:`EXTRAS`; :data:`PROVENANCE_PARAMS` are left out.
    """
    kwargs: dict = {}
    for kind, named in (("input", input), ("output", output), ("params", params)):
        for name, value in named.items():
            if kind == "params" and name in PROVENANCE_PARAMS:
                continue
            _add_argument(kwargs, kind, name, list(value) if isinstance(value, list) else value)
    for name, value in wildcards.items():
        _add_argument(kwargs, "wildcards", name, value)
    return kwargs


def _add_argument(kwargs: dict, kind: str, name: str, value) -> None:
    if name in kwargs or name in EXTRAS:
        raise ValueError(
            f"{kind} {name!r}: a rule's named input, output, params and wildcards are the "
            f"arguments of its step, so each name may occur once and not be one of {EXTRAS}; "
            "rename one of them in the rule and in datspect/workflow/steps.py"
        )
    kwargs[name] = value


def call_step(step: str, kwargs: dict, log: str, *, threads: int = 1, module: str = STEPS) -> str:
    """Call ``<module>.<step>(**kwargs)``, adding ``threads`` and ``log`` (the job's log file)
    if the step takes them; write timing and result (or traceback) to the log.

    The log is emptied first and the outcome appended, so that a long step can write its
    progress there as it goes (``train_cnn``) and keep it when it fails.
    """
    _write_log(log, "", mode="w")
    start = time.perf_counter()
    try:
        fn = getattr(importlib.import_module(module), step)
        wanted = inspect.signature(fn).parameters
        extras = {k: v for k, v in zip(EXTRAS, (threads, log), strict=True) if k in wanted}
        summary = fn(**kwargs, **extras)
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


def run(
    step: str,
    kwargs: dict,
    log: str,
    *,
    in_pool: bool,
    workers: int,
    threads: int = 1,
    module: str = STEPS,
) -> None:
    """Run a step (:func:`call_step`) in the warm pool (``in_pool``) or in this process."""
    global _POOL
    if not in_pool:
        call_step(step, kwargs, log, threads=threads, module=module)
        return
    future = _pool(workers).submit(call_step, step, kwargs, log, threads=threads, module=module)
    try:
        future.result()
    except concurrent.futures.process.BrokenProcessPool:
        # A worker died (killed, out of memory): start a fresh pool for the next jobs.
        with _LOCK:
            _POOL = None
        raise


def without_threads_warning(use_threads: bool) -> str | None:
    """The one-line warning for a run whose ``run:`` jobs cannot reach the pool, else None.

    ``use_threads`` is Snakemake's ``workflow.use_threads``: true with ``force-use-threads``
    and on a cluster (where the pool is not meant to be used), false when a local run starts
    one Python process per ``run:`` job.
    """
    if use_threads:
        return None
    return (
        "datspect: force-use-threads is off (profiles/default, the workflow profile, was not "
        "read: --workflow-profile none or another one?), so every per-image job starts its own "
        "Python (0.35-1.1 s each, bench/job_overhead.py) instead of using the warm worker pool; "
        "drop that option or add --force-use-threads"
    )
