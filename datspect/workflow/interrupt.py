"""SIGTERM handling for the Snakemake process (installed by the Snakefile's ``onstart``).

Snakemake 9.27's scheduler handles SIGTERM ("finish the running jobs, then stop") by taking its
scheduling lock inside the signal handler.  Python runs signal handlers in the main thread, which
may hold that very lock at that moment (it does while it books finished jobs): the process then
hangs for good (``tests/test_interrupt.py`` caught it stuck in ``exit_gracefully`` called from
``_finish_jobs``).  Running the handler in a thread of its own lets it wait for the lock like any
other thread.

The workaround is for the 9.27 series only (:data:`AFFECTED`): on any other Snakemake it is not
installed and the run says so, and ``tests/test_interrupt_handler.py`` fails once the pin in
requirements.txt leaves the series.  Then rerun ``DATSPECT_SLOW=1 pytest tests/test_interrupt.py``
on the new version without it: if it passes, delete this module and the Snakefile's call.
"""

from __future__ import annotations

import re
import signal
import threading

#: The Snakemake release series (major, minor) whose SIGTERM handler deadlocks as above.
AFFECTED = (9, 27)


def handle_sigterm_in_thread(snakemake_version: str) -> str | None:
    """Make the current SIGTERM handler run in a new thread instead of the interrupted one.

    Returns None when installed, or why not for the log: ``snakemake_version`` (e.g.
    ``snakemake.__version__``) is outside :data:`AFFECTED`.
    """
    series = re.match(r"(\d+)\.(\d+)", snakemake_version)
    if series is None or tuple(map(int, series.groups())) != AFFECTED:
        return (
            f"datspect: the SIGTERM workaround for Snakemake {'.'.join(map(str, AFFECTED))} is "
            f"not installed on Snakemake {snakemake_version}; check whether this version still "
            "needs it (datspect/workflow/interrupt.py)"
        )
    handler = signal.getsignal(signal.SIGTERM)
    if not callable(handler):
        return None

    def deferred(signum, frame):
        threading.Thread(target=handler, args=(signum, None), name="sigterm", daemon=True).start()

    signal.signal(signal.SIGTERM, deferred)
    return None
