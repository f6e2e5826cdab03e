"""Robustness to resolution, beyond the study: trained models on test scans smoothed further.

The study compares three training settings at two resolutions.  This extension asks how the
models degrade as the test scans get blurrier than anything they were trained on: every
development scan's ``original`` MNI image is smoothed with an extra isotropic Gaussian of FWHM
0, 6, 12, ... mm (``evaluation.robustness_fwhm_mm``), the workflow's features are measured on it
(AAL and hottest-voxels SBR, the CNN slab or box), and the original- and mixed-trained models
(and the CNNs of ``augmented``) of every split score their split's test part.

Why smooth in MNI space.  The normalized original image exists for every subject, so one job
per FWHM level smooths and measures all subjects (no per-subject x level jobs, no second
resampling).  An isotropic Gaussian commutes with the rigid part of the registration, so the
result differs from the workflow's native-space ``smoothed`` images only in three ways: (1) the
affine's scaling (head size, about ±8 %) makes a kernel of F mm in MNI space one of F / scale mm
on the native head; (2) the MNI box (91 x 109 x 91 at 2 mm) is smaller than the native field of
view, so activity outside the box (scalp, neck) is not smeared back in and counts near the box's
faces leak out (zeros outside, as in :mod:`datspect.preprocess.smooth`); (3) interpolation blur
happens
before instead of after the extra Gaussian (negligible: Gaussians add in quadrature).  At the
setting's own FWHM the two paths therefore give close but not identical SBRs; the tests measure
the gap.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from datspect.errors import InputError
from datspect.evaluation import cutoff, metrics
from datspect.features import sbr, slab
from datspect.features.sbr_config import sbr_arguments
from datspect.io.imageio import atomic_output
from datspect.preprocess.smooth import smooth_fwhm
from datspect.vocabulary import SBR_COLUMN

COLUMNS = [
    "fwhm",
    "method",
    "trained_setting",
    "split",
    "n",
    "accuracy",
    "sensitivity",
    "specificity",
    "auc",
]


def smoothed_mni(img: nib.Nifti1Image, fwhm_mm: float) -> np.ndarray:
    """The MNI image's data after an extra Gaussian of ``fwhm_mm`` (0: unchanged), float32."""
    if float(fwhm_mm) == 0:
        return np.asarray(img.dataobj, dtype=np.float32)
    return np.asarray(smooth_fwhm(img, fwhm_mm).dataobj, dtype=np.float32)


def level_features(
    images: Mapping[str, str | Path],
    labels: Mapping[str, int],
    *,
    cohort: str,
    fwhm_mm: float,
    sbr_params: Mapping,
    cnn_params: Mapping,
    log: Callable[[str], None] = lambda _: None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """SBRs and CNN inputs of every subject's original MNI image smoothed by ``fwhm_mm``.

    Parameters
    ----------
    images : mapping
        ``{subject_id: original_mni.nii}``.
    labels : mapping
        ``{subject_id: 0/1}``; every subject of ``images`` needs one.
    cohort : str
        The development cohort's name (a column of the table).
    fwhm_mm : float
        Extra FWHM in mm, >= 0.
    sbr_params : mapping
        The config's ``sbr`` section (:func:`datspect.features.sbr_config.sbr_arguments`).
    cnn_params : mapping
        ``input, n_slices, box_margin_mm`` (config ``cnn.input`` and ``slab``).
    log : callable
        Progress messages.

    Returns
    -------
    table : pandas.DataFrame
        One row per subject: ``cohort, subject_id, label, fwhm`` and the columns of
        :func:`datspect.features.sbr.aal_sbr` and :func:`datspect.features.sbr.hv_sbr`.
    inputs : dict
        ``{subject_id: CNN input array}``.
    """
    missing = sorted(set(images) - set(labels))
    if missing:
        raise InputError(
            f"subjects {missing[:5]} have an image but no label in the cohort sheet; rerun the "
            "cohort_sheet rule"
        )
    reference = sbr_params["reference"]
    aal_arguments = sbr_arguments(sbr_params, "sbr_aal")
    hv_arguments = sbr_arguments(sbr_params, "sbr_hv")
    rows, inputs = [], {}
    for k, (subject, path) in enumerate(sorted(images.items())):
        volume = smoothed_mni(nib.load(path), fwhm_mm)
        name = f"{path} + {fwhm_mm:g} mm"
        aal = sbr.aal_sbr(volume, **aal_arguments, name=name)
        hv = sbr.hv_sbr(volume, **hv_arguments, name=name)
        rows.append(
            {
                "cohort": cohort,
                "subject_id": subject,
                "label": int(labels[subject]),
                "fwhm": float(fwhm_mm),
                **aal,
                **hv,
            }
        )
        inputs[subject] = slab.cnn_input(
            volume,
            cnn_params["input"],
            n_slices=cnn_params["n_slices"],
            box_margin_mm=cnn_params["box_margin_mm"],
            reference=reference,
            name=name,
        )
        if (k + 1) % 100 == 0:
            log(f"{k + 1} of {len(images)} subjects")
    return pd.DataFrame(rows), inputs


def save_inputs(inputs: Mapping[str, np.ndarray], out) -> None:
    """CNN inputs of one level as an ``.npz`` keyed by subject id, written atomically."""
    with atomic_output(out) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **inputs)


def load_inputs(path, subjects: Sequence[str]) -> list[np.ndarray]:
    """The CNN inputs of ``subjects`` (in that order) from a :func:`save_inputs` file."""
    with np.load(path) as data:
        absent = [s for s in subjects if s not in data]
        if absent:
            raise InputError(
                f"{path}: no CNN input for subjects {absent[:5]}; rerun the robustness_features "
                "rule"
            )
        return [data[s] for s in subjects]


def read_cutoff(path, method: str) -> float:
    """The Youden cutoff of a ``cutoff.json``; checks it belongs to ``method``."""
    model = json.loads(Path(path).read_text())
    if model.get("method") != method or model.get("reduced_if") != "sbr < cutoff":
        raise InputError(
            f"{path}: expected a {method} cutoff with reduced_if 'sbr < cutoff', found method "
            f"{model.get('method')!r}; rerun fit_sbr_cutoff"
        )
    return float(model["cutoff"])


def _row(fwhm, method, setting, split, labels, prediction, score_reduced) -> dict:
    m = metrics.binary_metrics(labels, prediction, score_reduced)
    return {
        "fwhm": float(fwhm),
        "method": method,
        "trained_setting": setting,
        "split": int(split),
        **{k: m[k] for k in ("n", "accuracy", "sensitivity", "specificity", "auc")},
    }


def score_split(
    levels: Mapping[float, tuple[pd.DataFrame, str | Path]],
    test_subjects: Sequence[str],
    *,
    split: int,
    cutoffs: Mapping[tuple[str, str], float],
    cnn_scorers: Mapping[str, Callable[[list[np.ndarray]], np.ndarray]],
) -> pd.DataFrame:
    """Accuracy of each trained model on one split's test part at every FWHM level.

    Parameters
    ----------
    levels : mapping
        ``{fwhm: (SBR table of :func:`level_features`, path of the CNN inputs .npz)}``.
    test_subjects : sequence of str
        The split's test part (development cohort).
    split : int
        The split (a column of the result).
    cutoffs : mapping
        ``{(method, trained_setting): cutoff}`` for the SBR methods (reduced if SBR < cutoff).
    cnn_scorers : mapping
        ``{trained_setting: function(list of CNN inputs) -> P(reduced)}``, e.g.
        :func:`datspect.cnn.train.predict` bound to a loaded checkpoint (so that this module
        does not import torch for the feature jobs).

    Returns
    -------
    pandas.DataFrame
        :data:`COLUMNS`, one row per (fwhm, method, trained setting).
    """
    subjects = sorted(test_subjects)
    if not subjects:
        raise InputError(f"split {split}: the test part is empty; check results/splits/splits.tsv")
    rows = []
    for fwhm, (table, inputs_path) in sorted(levels.items()):
        part = table.set_index("subject_id")
        absent = sorted(set(subjects) - set(part.index))
        if absent:
            raise InputError(
                f"robustness features at {fwhm:g} mm lack test subjects {absent[:5]} of split "
                f"{split}; rerun the robustness_features rule"
            )
        part = part.loc[subjects]
        labels = part["label"].to_numpy(dtype=int)
        for (method, setting), cut in sorted(cutoffs.items()):
            values = part[SBR_COLUMN[method]].to_numpy(dtype=float)
            predicted = cutoff.predict_with_cutoff(values, cut)
            rows.append(_row(fwhm, method, setting, split, labels, predicted, -values))
        if cnn_scorers:
            arrays = load_inputs(inputs_path, subjects)
            for setting, scorer in sorted(cnn_scorers.items()):
                p_reduced = np.asarray(scorer(arrays), dtype=float)
                predicted = (p_reduced >= 0.5).astype(int)
                rows.append(_row(fwhm, "cnn", setting, split, labels, predicted, p_reduced))
    return pd.DataFrame(rows, columns=COLUMNS)
