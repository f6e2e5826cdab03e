"""One run at a time per working directory, with a message that says so; what to do after a
failed run.

Snakemake's own locks (``.snakemake/locks``) are checked only after the jobs are planned, and
planning first finds the running jobs' outputs marked incomplete: a second instance then advises
``--rerun-incomplete``, which would redo (and delete) what the first run is writing.  The run
holds an ``flock`` on :data:`LOCK_FILE` from its ``onstart`` until its process ends (the system
releases it even after ``kill -9``, so a stale file never blocks), and the Snakefile's first lines
refuse to plan while another process holds it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from datspect.errors import InputError

#: Relative to the working directory (Snakemake's --directory).
LOCK_FILE = Path(".snakemake") / "datspect-run.lock"

#: Logged by the Snakefile's ``onerror``: a plain rerun keeps finished outputs but does not
#: restore a deleted one (Snakemake plans nothing for it), and restoring one reruns what follows.
AFTER_FAILURE = (
    "datspect: fix what the failed job's log says and run the same command again (finished "
    "outputs are kept; after an interrupted run add --rerun-incomplete); to restore a deleted "
    'output without rerunning what follows it, see README, "Reliability"'
)

_held = []  # the open lock file of this process's run: closing it would release the lock


def hold(workdir=".") -> None:
    """Take the run lock for this process's lifetime (the Snakefile's ``onstart``)."""
    path = Path(workdir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held until the process ends)
    fcntl.flock(handle, fcntl.LOCK_EX)  # waits only for a check in progress: Snakemake's locks
    # already keep a second run from getting this far
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _held.append(handle)


def refuse_if_running(workdir=".") -> None:
    """Raise :class:`InputError` when another live run holds the lock of ``workdir``."""
    path = Path(workdir) / LOCK_FILE
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = handle.read().strip() or "?"
            raise InputError(
                f"{Path(workdir).resolve()}: another run (process {pid}) is using this directory; "
                "wait for it to finish (or stop it) and start again: --rerun-incomplete or "
                "--unlock now would redo or break the jobs it is writing (README, "
                '"Reliability").'
            ) from None
