"""Logging for Snakemake scripts: everything the job says goes to its log file."""

from __future__ import annotations

import logging
import sys

from datspect.errors import InputError


def to_file(path: str) -> logging.Logger:
    """Send logging, warnings and uncaught tracebacks of this process to ``path``."""
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    logger = logging.getLogger("datspect")

    def excepthook(kind, value, tb):
        if issubclass(kind, InputError):  # the user's input: the message says it all
            logger.error("job failed: %s", value)
            print(value, file=sys.stderr)
            return
        logger.error("job failed", exc_info=(kind, value, tb))
        sys.__excepthook__(kind, value, tb)

    sys.excepthook = excepthook
    return logger
