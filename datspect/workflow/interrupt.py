"""SIGTERM handling for the Snakemake process (installed by the Snakefile's ``onstart``).

Snakemake 9.27's scheduler handles SIGTERM ("finish the running jobs, then stop") by taking its
scheduling lock inside the signal handler.  Python runs signal handlers in the main thread, which
may hold that very lock at that moment (it does while it books finished jobs): the process then
hangs for good (``tests/test_interrupt.py`` caught it stuck in ``exit_gracefully`` called from
``_finish_jobs``).  Running the handler in a thread of its own lets it wait for the lock like any
other thread.
"""

from __future__ import annotations

import signal
import threading


def handle_sigterm_in_thread() -> None:
    """Make the current SIGTERM handler run in a new thread instead of the interrupted one."""
    handler = signal.getsignal(signal.SIGTERM)
    if not callable(handler):
        return

    def deferred(signum, frame):
        threading.Thread(target=handler, args=(signum, None), name="sigterm", daemon=True).start()

    signal.signal(signal.SIGTERM, deferred)
