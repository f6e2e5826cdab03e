"""sha256 of files, and a file checked against the JSON sidecar that records its sha256.

Torch-free on purpose: the workflow checks its CNN checkpoints against their sidecars while it
plans (:mod:`datspect.workflow.preflight`), where importing torch would cost two seconds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from datspect.errors import InputError

#: The sidecar key holding the sha256 of the file it describes.
SHA256_KEY = "weights_sha256"


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sidecar_path(path) -> Path:
    """The JSON sidecar beside ``path`` (same name, suffix ``.json``)."""
    return Path(path).with_suffix(".json")


def retrain_fix(weights_path) -> str:
    """How to replace a bad CNN checkpoint of the workflow: the end of its messages."""
    return (
        f"train it again (snakemake --forcerun {weights_path}, with the run's --directory and "
        "--configfile)"
    )


def verified_sidecar(path, fix: str) -> dict:
    """The sidecar of ``path``, after checking that both exist, the sidecar is a JSON object
    and the sha256 it records is that of ``path``.

    Parameters
    ----------
    path : str or Path
        The described file (a CNN's weights).
    fix : str
        How to fix a problem, the end of every message.

    Raises
    ------
    InputError
        One line naming the file at fault.
    """
    path = Path(path)
    side = sidecar_path(path)
    for p in (path, side):
        if not p.is_file():
            raise InputError(f"{p}: CNN checkpoint file is missing; {fix}")
    try:
        meta = json.loads(side.read_text())
        expected = meta[SHA256_KEY]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{side}: not a valid CNN checkpoint sidecar (a JSON object with "
            f"{SHA256_KEY!r}; {type(exc).__name__}); {fix}"
        ) from exc
    actual = sha256_file(path)
    if actual != expected:
        raise InputError(
            f"{path}: sha256 {actual} does not match {expected} recorded in {side}; the "
            f"weights were changed or belong to another training: {fix}"
        )
    return meta
