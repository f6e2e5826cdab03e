"""The normalization QC table: one row per normalized image, with failures flagged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from datspect.preprocess.register import striatal_centroid_error, striatal_label_dice


def _subject(path) -> str:
    return Path(path).parent.name


def read_matrix(path) -> np.ndarray:
    return np.loadtxt(path, comments="#").reshape(4, 4)


def normalization_table(
    cohort: str, qc_paths, transform_paths, truth_paths, *, max_centroid_error_mm: float
) -> pd.DataFrame:
    """Rows ``cohort, subject_id, setting, metric, correlation, striatum_dice,
    striatum_label_dice, centroid_error_mm, flag``.

    ``centroid_error_mm`` (mean distance of the left/right striatum centroids between the
    estimated and the true transform) and ``striatum_label_dice``
    (:func:`datspect.preprocess.register.striatal_label_dice`) exist only where the truth is known
    (simulated scans);
    ``flag`` is ``ok``, ``low_correlation``, ``reflected`` or ``centroid_error``.
    """
    truths = {}
    for path in truth_paths:
        with open(path, encoding="utf-8") as handle:
            truth = json.load(handle)
        truths[truth["subject_id"]] = np.asarray(truth["native_from_mni"], dtype=float)
    transforms = {_subject(p): p for p in transform_paths}
    rows = []
    for path in qc_paths:
        subject = _subject(path)
        with open(path, encoding="utf-8") as handle:
            qc = json.load(handle)
        error = label_dice = np.nan
        if subject in truths:
            estimated = read_matrix(transforms[subject])
            error = striatal_centroid_error(estimated, truths[subject])
            label_dice = striatal_label_dice(estimated, truths[subject])
        for setting, check in sorted(qc.items()):
            flag = check["flag"]
            if flag == "ok" and error > max_centroid_error_mm:
                flag = "centroid_error"
            rows.append(
                {
                    "cohort": cohort,
                    "subject_id": subject,
                    "setting": setting,
                    "metric": "pearson_r_template",
                    "correlation": check["correlation"],
                    "striatum_dice": check["striatum_dice"],
                    "striatum_label_dice": label_dice,
                    "centroid_error_mm": error,
                    "flag": flag,
                }
            )
    return pd.DataFrame(rows)
