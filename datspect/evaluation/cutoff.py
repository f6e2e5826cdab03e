"""SBR cutoffs from ROC analysis on the training part (Youden's J).

Label 1 = reduced.  For SBR, *lower* scores mean reduced: a scan is called reduced when
``score < cutoff``; for scores where higher means reduced (``reduced_if="higher"``) when
``score > cutoff``.

Rules, so that a cutoff is reproducible and never sits on a training score:

* the operating point maximises ``J = sensitivity + specificity - 1`` over the ROC curve
  (``sklearn.metrics.roc_curve`` with all points kept);
* ties in J are broken towards higher specificity (the first maximum along the ROC curve, i.e.
  the fewest scans called reduced);
* the cutoff lies midway between the last score called reduced and the next distinct score;
  at an end of the score range (nothing or everything called reduced) it lies half the smallest
  gap between distinct scores (0.5 if all scores are equal) beyond the extreme score.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from datspect.errors import InputError

_DIRECTIONS = ("lower", "higher")


def _check_direction(reduced_if: str) -> float:
    """Sign that turns scores into 'higher = reduced' scores."""
    if reduced_if not in _DIRECTIONS:
        raise InputError(f"reduced_if: {reduced_if!r} must be 'lower' (SBR) or 'higher'")
    return -1.0 if reduced_if == "lower" else 1.0


def youden_cutoff(scores, labels, *, reduced_if: str = "lower") -> dict[str, float]:
    """Cutoff maximising Youden's J on training scores (see the module notes for tie rules).

    Parameters
    ----------
    scores : array_like of float
        One score per training image (e.g. putamen SBR).
    labels : array_like of {0, 1}
        0 = normal, 1 = reduced; both classes must be present.
    reduced_if : {"lower", "higher"}
        Whether lower (SBR) or higher scores indicate a reduced scan.

    Returns
    -------
    dict
        ``cutoff``, ``youden_j``, ``sensitivity``, ``specificity`` (the last three on the
        training data, as :func:`predict_with_cutoff` reproduces them).

    Raises
    ------
    InputError
        Mismatched lengths, non-finite scores, labels other than 0/1 or a missing class.
    """
    sign = _check_direction(reduced_if)
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise InputError(f"scores and labels differ in length ({s.size} vs {y.size})")
    if not np.all(np.isfinite(s)):
        raise InputError("scores: contain NaN/inf; fix or drop those images before the ROC")
    if not np.isin(y, (0, 1)).all() or np.unique(y).size != 2:
        raise InputError(
            f"labels: need both 0 (normal) and 1 (reduced) and nothing else, got "
            f"{sorted(np.unique(y).tolist())}; the training part must contain both classes"
        )
    oriented = sign * s  # higher = reduced
    fpr, tpr, thresholds = roc_curve(y, oriented, drop_intermediate=False)
    best = int(np.argmax(tpr - fpr))  # first maximum = highest threshold = fewest called reduced
    distinct = np.unique(oriented)  # ascending
    gaps = np.diff(distinct)
    half_gap = gaps.min() / 2.0 if gaps.size else 0.5
    if np.isinf(thresholds[best]):  # nothing called reduced
        cut = distinct[-1] + half_gap
    else:
        below = distinct[distinct < thresholds[best]]
        cut = (thresholds[best] + below[-1]) / 2.0 if below.size else distinct[0] - half_gap
    return {
        "cutoff": float(sign * cut),
        "youden_j": float(tpr[best] - fpr[best]),
        "sensitivity": float(tpr[best]),
        "specificity": float(1.0 - fpr[best]),
    }


def predict_with_cutoff(scores, cutoff: float, reduced_if: str = "lower") -> np.ndarray:
    """Predicted labels (1 = reduced): ``score < cutoff`` for ``lower``, ``>`` for ``higher``."""
    sign = _check_direction(reduced_if)
    s = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        raise InputError("scores: contain NaN/inf; a cutoff cannot classify them")
    return (sign * s > sign * float(cutoff)).astype(np.int8)
