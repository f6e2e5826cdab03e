"""Classification metrics per test part and their summary over splits.

Label 1 = reduced is the positive class: sensitivity is the true-positive rate for reduced scans,
specificity the true-negative rate for normal scans.  The AUC takes scores oriented so that
higher = reduced (pass ``-sbr`` for SBR methods, the predicted probability for the CNN).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from datspect.errors import InputError

#: Metrics summarised over splits, in the column order of ``summary.tsv``.
SUMMARY_METRICS = ("accuracy", "sensitivity", "specificity", "auc")
#: Summarised as well when ``per_split`` has them, after those above.
OPTIONAL_METRICS = ("balanced_accuracy", "log_loss", "brier", "ece")
KEYS = ("cohort", "method", "setting")


def _binary(values, name: str) -> np.ndarray:
    arr = np.asarray(values).ravel()
    if not np.isin(arr, (0, 1)).all():
        raise InputError(f"{name}: labels must be 0 (normal) or 1 (reduced)")
    return arr.astype(np.int8)


def binary_metrics(y_true, y_pred, y_score) -> dict[str, float]:
    """Accuracy, sensitivity, specificity, balanced accuracy and AUC of one test part.

    Parameters
    ----------
    y_true, y_pred : array_like of {0, 1}
        True and predicted labels (1 = reduced).
    y_score : array_like of float
        Scores with higher = reduced (e.g. ``-sbr`` or a CNN probability) for the AUC.

    Returns
    -------
    dict
        ``n, accuracy, sensitivity, specificity, balanced_accuracy, auc``.  A rate whose
        denominator class is absent is NaN (sensitivity without reduced scans, specificity
        without normal ones); so are balanced accuracy and the AUC then, because the AUC is
        undefined with one class.

    Raises
    ------
    InputError
        Mismatched lengths, labels other than 0/1, non-finite scores or an empty part.
    """
    t = _binary(y_true, "y_true")
    p = _binary(y_pred, "y_pred")
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if not t.size == p.size == s.size:
        raise InputError(
            f"y_true, y_pred and y_score differ in length ({t.size}, {p.size}, {s.size})"
        )
    if t.size == 0:
        raise InputError("y_true: no test images; metrics need at least one")
    if not np.all(np.isfinite(s)):
        raise InputError("y_score: contains NaN/inf; fix the scores of those images")
    pos, neg = t == 1, t == 0
    sens = float(np.mean(p[pos] == 1)) if pos.any() else np.nan
    spec = float(np.mean(p[neg] == 0)) if neg.any() else np.nan
    auc = float(roc_auc_score(t, s)) if pos.any() and neg.any() else np.nan
    return {
        "n": int(t.size),
        "accuracy": float(np.mean(t == p)),
        "sensitivity": sens,
        "specificity": spec,
        "balanced_accuracy": (sens + spec) / 2.0,
        "auc": auc,
    }


def summarize(per_split: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample SD (ddof=1) over splits per cohort, method and setting.

    Parameters
    ----------
    per_split : pandas.DataFrame
        Rows of ``per_split.tsv``: ``cohort, method, setting, split`` and the metric columns
        (``balanced_accuracy`` optional).

    Returns
    -------
    pandas.DataFrame
        ``cohort, method, setting, n_splits`` (rows = splits), then ``<metric>_mean, <metric>_sd``
        for accuracy, sensitivity, specificity, auc and, if present, balanced_accuracy,
        log_loss, brier and ece.  NaN
        values (e.g. an AUC undefined in a one-class part) are left out of mean and SD; the SD of
        a single split is NaN.

    Raises
    ------
    InputError
        Missing columns or a (cohort, method, setting, split) listed twice.
    """
    metrics = list(SUMMARY_METRICS) + [m for m in OPTIONAL_METRICS if m in per_split.columns]
    need = [*KEYS, "split", *metrics]
    missing = [c for c in need if c not in per_split.columns]
    if missing:
        raise InputError(f"per_split: missing column(s) {missing}; needs {need}")
    dup = per_split.duplicated([*KEYS, "split"])
    if dup.any():
        row = per_split[dup].iloc[0]
        raise InputError(
            "per_split: (cohort, method, setting, split) = "
            f"({', '.join(str(row[k]) for k in (*KEYS, 'split'))}) occurs twice; "
            "keep one row per split"
        )
    grouped = per_split.groupby(list(KEYS), sort=True)
    out = grouped["split"].size().rename("n_splits").to_frame()
    for m in metrics:
        values = grouped[m]
        out[f"{m}_mean"] = values.mean()
        out[f"{m}_sd"] = values.std(ddof=1)
    return out.reset_index()
