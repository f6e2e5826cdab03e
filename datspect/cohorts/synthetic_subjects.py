"""Subject ids and labels of a synthetic cohort, and the seeds behind them.

Apart from :mod:`datspect.cohorts.simulate` (which imports the image libraries), so that the
Snakefile can
list a synthetic cohort's subjects cheaply at every planning.
"""

from __future__ import annotations

import hashlib

import numpy as np

from datspect.errors import InputError


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same in every process (unlike ``hash()``)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(
            f"seed must be a non-negative integer, not {seed!r}; set it in config.yaml"
        )
    return int(seed)


def cohort_design(cohort_name: str, n_normal: int, n_reduced: int, seed: int) -> list:
    """Subject ids and labels of a synthetic cohort.

    Ids run ``<cohort>-0001`` ... in order; labels (0 normal, 1 reduced) are shuffled
    deterministically over them, so an id says nothing about its label.

    Parameters
    ----------
    cohort_name : str
        Cohort name, the id prefix (e.g. ``ppmi``).
    n_normal, n_reduced : int
        Numbers of normal and reduced scans.
    seed : int
        Global seed.

    Returns
    -------
    list of (str, int)
    """
    for key, n in (("n_normal", n_normal), ("n_reduced", n_reduced)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise InputError(
                f"cohort {cohort_name!r}: {key} must be a non-negative integer, not {n!r}"
            )
    if not str(cohort_name) or any(c.isspace() or c in "/\\" for c in str(cohort_name)):
        raise InputError(
            f"cohort name {cohort_name!r} must be non-empty, without spaces or slashes"
        )
    n = int(n_normal) + int(n_reduced)
    labels = np.array([0] * int(n_normal) + [1] * int(n_reduced), dtype=int)
    rng = np.random.default_rng(
        np.random.SeedSequence([check_seed(seed), stable_hash(f"design:{cohort_name}")])
    )
    rng.shuffle(labels)
    width = max(4, len(str(n)))
    return [(f"{cohort_name}-{i + 1:0{width}d}", int(lab)) for i, lab in enumerate(labels)]
