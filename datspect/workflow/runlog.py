"""Logging for Snakemake scripts: everything the job says goes to its log file."""

from __future__ import annotations

import logging
import sys


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
        logger.error("job failed", exc_info=(kind, value, tb))
        sys.__excepthook__(kind, value, tb)

    sys.excepthook = excepthook
    return logger
