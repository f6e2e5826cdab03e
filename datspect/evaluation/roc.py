"""The mean ROC over splits (vertical averaging), as the ROC figures draw it.

Each split's test ROC (``sklearn.metrics.roc_curve`` on ``score_reduced``) is interpolated on a
common false-positive-rate grid and averaged over splits.  Splits are not pooled because the
models differ between splits, and for the CNN their scores are not on one scale.  The AUC is
summarised per split, so it gives the same numbers as ``per_split.tsv``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import auc as area_under_curve
from sklearn.metrics import roc_curve

from datspect.io.tsv import require_columns


@dataclass(frozen=True)
class MeanROC:
    """A ROC averaged over splits on a false-positive-rate grid, with the AUC of each split."""

    #: The false-positive-rate grid.
    fpr: np.ndarray
    #: Mean and SD (ddof 0) over splits of the true-positive rate on the grid.
    tpr: np.ndarray
    tpr_sd: np.ndarray
    #: The AUC of each split that has both classes.
    aucs: np.ndarray

    @property
    def auc_mean(self) -> float:
        return float(self.aucs.mean())

    @property
    def auc_sd(self) -> float:
        """Sample SD (ddof 1) of the AUCs; 0 for a single split."""
        return float(self.aucs.std(ddof=1)) if self.aucs.size > 1 else 0.0


def mean_roc(rows: pd.DataFrame, grid: np.ndarray) -> MeanROC | None:
    """Vertically averaged ROC of one method and setting over its splits.

    Parameters
    ----------
    rows : pandas.DataFrame
        Scored images of one method and setting: at least ``split, label, score_reduced``.
    grid : numpy.ndarray
        False-positive rates from 0 to 1 at which each split's ROC is interpolated.

    Returns
    -------
    MeanROC or None
        None when no split has both classes (no ROC without them); splits with one class are
        left out.
    """
    require_columns(rows, ["split", "label", "score_reduced"], "predictions")
    tprs, aucs = [], []
    for _, part in rows.groupby("split"):
        if part["label"].nunique() < 2:
            continue
        fpr, tpr, _ = roc_curve(part["label"], part["score_reduced"])
        interp = np.interp(grid, fpr, tpr)
        interp[0] = 0.0
        tprs.append(interp)
        aucs.append(area_under_curve(fpr, tpr))
    if not tprs:
        return None
    tprs = np.array(tprs)
    return MeanROC(grid, tprs.mean(axis=0), tprs.std(axis=0), np.array(aucs, dtype=float))
