"""Stable seeds derived from the global seed and a job's wildcards (never Python's hash())."""

from __future__ import annotations

import hashlib


def derive_seed(global_seed: int, *parts) -> int:
    """A 32-bit seed from ``global_seed`` and any strings/numbers (e.g. cohort, subject, split)."""
    text = "\x1f".join([str(int(global_seed)), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
