"""The CNN inputs of a cohort in one file.

The ``cnn_input`` rule writes one ``.npz`` per subject (``features/{cohort}/{subject}/
cnn_input.npz``, one array per image setting); ``cnn_input_bundle`` stacks a cohort's into
``features/{cohort}/cnn_inputs.npz``. Training, saliency and the leakage report list one file per
cohort instead of one per subject, which keeps Snakemake's planning of those jobs cheap and their
start-up short. No torch here: the bundling job starts fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datspect.errors import InputError
from datspect.io import imageio


def bundle_inputs(paths, out) -> str:
    """Stack one cohort's per-subject inputs (``.../{cohort}/{subject}/cnn_input.npz``) into
    ``out``: ``subject_id`` and one ``(N, *shape)`` array per image setting."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError(f"{out}: no CNN inputs to bundle (empty cohort)")
    stacks: dict[str, list[np.ndarray]] = {}
    for path in paths:
        with np.load(path) as data:
            if stacks and set(data.files) != set(stacks):
                raise InputError(
                    f"{path}: holds image settings {sorted(data.files)}, the cohort's other "
                    f"inputs {sorted(stacks)}; rerun its cnn_input job"
                )
            for key in data.files:
                stacks.setdefault(key, []).append(data[key])
    subjects = np.array([p.parent.name for p in paths])
    with imageio.atomic_output(out) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, subject_id=subjects, **{k: np.stack(v) for k, v in stacks.items()})
    return f"{len(paths)} subjects, image settings {sorted(stacks)}"


def load_inputs(paths) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """``{(cohort, subject): {image_setting: array}}`` from one or more cohort bundles
    ``.../{cohort}/cnn_inputs.npz`` of :func:`bundle_inputs`."""
    inputs = {}
    for path in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files if k != "subject_id"}
            for i, subject in enumerate(data["subject_id"]):
                inputs[(path.parent.name, str(subject))] = {k: a[i] for k, a in arrays.items()}
    return inputs
