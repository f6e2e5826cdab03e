"""The "inconclusive" call: a band around each model's decision, chosen on validation scans only.

Every scored scan has a *margin*, its distance from the model's decision: ``|P - 0.5|`` of the
calibrated P(reduced) for the CNN, ``|SBR - cutoff|`` for an SBR cutoff (the semi-quantitative
reader's "borderline").  A scan is inconclusive when its margin lies inside the model's band,
``margin < half_width``.  :func:`choose_band` picks ``half_width`` from one split's validation
part: the narrowest band that holds ``target_caught`` of that part's errors, narrowed again if
it would flag more than ``max_flagged`` of the part.  The band's edge lies half-way between the
last validation scan inside and the first one outside, so it does not sit on a scan.  Nothing
here sees a test label: the caller passes the validation rows (the tests check that changing
test labels changes no band).

Pooling the 10 split models on development test images would leak (each test image is in other
splits' training parts), so the split ensemble (:func:`ensemble_calls`, as ``classify`` uses
it) is scored on independent cohorts only.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from datspect.errors import InputError
from datspect.io.tsv import require_columns

#: Per ``evaluation.uncertainty.source``: the CNN logit column of ``scores.tsv`` the band is put
#: on, and the calibrated probability of it in the predictions tables.
BAND_LOGIT = {"single_pass": "logit", "mc_dropout": "logit_mc"}
BAND_PROBABILITY = {"single_pass": "p_reduced", "mc_dropout": "p_reduced_mc"}

#: Columns of results/metrics/uncertainty.tsv after the group keys.
TABLE_COLUMNS = (
    "n",
    "n_flagged",
    "share_flagged",
    "accuracy",
    "accuracy_conclusive",
    "n_errors",
    "n_errors_flagged",
    "share_errors_flagged",
    "half_width",
)


def cnn_margin(p_reduced) -> np.ndarray:
    """Distance of a calibrated P(reduced) from the 0.5 decision."""
    return np.abs(np.asarray(p_reduced, dtype=np.float64) - 0.5)


def sbr_margin(sbr, cutoff: float) -> np.ndarray:
    """Distance of an SBR from its cutoff (SBR units)."""
    return np.abs(np.asarray(sbr, dtype=np.float64) - float(cutoff))


def choose_band(margin, correct, *, target_caught: float, max_flagged: float) -> dict:
    """The band half-width chosen on one validation part.

    Parameters
    ----------
    margin : array_like of float
        Each validation scan's distance from the decision (>= 0).
    correct : array_like of bool
        Whether the model's call on that scan is right.
    target_caught, max_flagged : float
        Share of the part's errors the band must hold; share of the part it may flag at most.

    Returns
    -------
    dict
        ``half_width`` (0 flags nothing: a part without errors) and what it does on the part:
        ``n_val, n_val_errors, val_flagged, val_errors_flagged``, ``capped`` (narrowed by
        ``max_flagged``).
    """
    m = np.asarray(margin, dtype=np.float64).ravel()
    ok = np.asarray(correct, dtype=bool).ravel()
    if m.shape != ok.shape or m.size == 0:
        raise InputError("inconclusive band: margins and calls of the validation part differ")
    if not (np.all(np.isfinite(m)) and m.min() >= 0):
        raise InputError("inconclusive band: margins must be finite and >= 0")
    if not (0 < target_caught <= 1 and 0 <= max_flagged <= 1):
        raise InputError(
            "evaluation.uncertainty: target_caught must lie in (0, 1] and max_flagged in [0, 1]"
        )
    ordered = np.sort(m)

    def edge_after(value: float) -> float:
        """Half-way between ``value`` and the next larger validation margin."""
        above = ordered[ordered > value]
        return float((value + above[0]) / 2) if above.size else float(value + 1e-9)

    errors = np.sort(m[~ok])
    width = 0.0
    if errors.size:
        width = edge_after(errors[math.ceil(target_caught * errors.size) - 1])
    capped = bool(np.mean(m < width) > max_flagged)
    if capped:
        allowed = math.floor(max_flagged * m.size)
        width = 0.0 if allowed == 0 else edge_after(ordered[allowed - 1])
        while np.mean(m < width) > max_flagged:  # ties at the edge: step back below them
            below = ordered[ordered < width]
            width = float(below.max()) if below.size else 0.0
    flagged = m < width
    return {
        "half_width": width,
        "n_val": int(m.size),
        "n_val_errors": int((~ok).sum()),
        "val_flagged": int(flagged.sum()),
        "val_errors_flagged": int((flagged & ~ok).sum()),
        "capped": capped,
    }


def flag_counts(part: pd.DataFrame) -> dict:
    """The uncertainty table's columns for one group of scored rows (``label, prediction,
    inconclusive``)."""
    correct = part["prediction"].to_numpy() == part["label"].to_numpy()
    flagged = part["inconclusive"].to_numpy().astype(bool)
    n, n_err = len(part), int((~correct).sum())
    conclusive = ~flagged
    return {
        "n": n,
        "n_flagged": int(flagged.sum()),
        "share_flagged": float(flagged.mean()) if n else np.nan,
        "accuracy": float(correct.mean()) if n else np.nan,
        "accuracy_conclusive": float(correct[conclusive].mean()) if conclusive.any() else np.nan,
        "n_errors": n_err,
        "n_errors_flagged": int((flagged & ~correct).sum()),
        "share_errors_flagged": float((flagged & ~correct).sum() / n_err) if n_err else np.nan,
    }


def ensemble_calls(predictions: pd.DataFrame, cohorts, p_band: str = "p_reduced") -> pd.DataFrame:
    """The split ensemble of the mixed-setting CNNs on independent ``cohorts``, as ``classify``
    calls it: mean calibrated P(reduced) over splits, reduced when >= 0.5, inconclusive when the
    margin of the mean of ``p_band`` (the probability the bands were put on) lies inside the
    median of the splits' bands.

    Returns
    -------
    pandas.DataFrame
        One row per independent image: ``cohort, subject_id, image_setting, label, p_reduced,
        p_reduced_sd, prediction, margin, half_width, inconclusive``, ``method`` cnn,
        ``setting`` mixed, ``split`` ``ensemble``.
    """
    require_columns(
        predictions, ["cohort", "method", "setting", "p_reduced", "half_width"], "predictions"
    )
    rows = predictions[
        (predictions["method"] == "cnn")
        & (predictions["setting"] == "mixed")
        & predictions["cohort"].isin(list(cohorts))
    ]
    if rows.empty:
        return pd.DataFrame()
    keys = ["cohort", "subject_id", "image_setting", "label"]
    grouped = rows.groupby(keys, sort=True)
    table = grouped["p_reduced"].agg(["mean", "std"]).reset_index()
    width = float(rows.groupby("split")["half_width"].first().median())
    margin = cnn_margin(grouped[p_band].mean().to_numpy())
    return table[keys].assign(
        p_reduced=table["mean"],
        p_reduced_sd=table["std"].fillna(0.0),
        prediction=(table["mean"] >= 0.5).astype(int),
        margin=margin,
        half_width=width,
        inconclusive=margin < width,
        method="cnn",
        setting="mixed",
        split="ensemble",
    )


def uncertainty_table(
    predictions: pd.DataFrame, independent, p_band: str = "p_reduced"
) -> pd.DataFrame:
    """results/metrics/uncertainty.tsv: per cohort, method, setting and split (and ``ensemble``
    rows for independent cohorts) the share flagged, accuracy on all and on conclusive scans and
    the share of errors flagged, with each model's band ``half_width``; ``p_band`` as for
    :func:`ensemble_calls`."""
    require_columns(
        predictions,
        ["cohort", "method", "setting", "split", "label", "prediction", "inconclusive"],
        "predictions",
    )
    keys = ["cohort", "method", "setting", "split"]
    rows = []
    for key, part in predictions.groupby(keys, sort=True):
        rows.append(
            dict(zip(keys, key, strict=True))
            | flag_counts(part)
            | {"half_width": float(part["half_width"].iloc[0])}
        )
    ensemble = ensemble_calls(predictions, independent, p_band)
    for cohort, part in ensemble.groupby("cohort", sort=True) if len(ensemble) else ():
        rows.append(
            {"cohort": cohort, "method": "cnn", "setting": "mixed", "split": "ensemble"}
            | flag_counts(part)
            | {"half_width": float(part["half_width"].iloc[0])}
        )
    out = pd.DataFrame(rows, columns=[*keys, *TABLE_COLUMNS])
    return out.astype({"split": str})


def pattern_flags(predictions: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Flag rate per truth pattern (normal, borderline, typical, atypical ...) of simulated
    cohorts, pooled over splits: ``cohort, method, setting, pattern, n, n_flagged,
    share_flagged, accuracy``."""
    require_columns(truth, ["cohort", "subject_id", "pattern"], "truth")
    rows = predictions.merge(
        truth[["cohort", "subject_id", "pattern"]], on=["cohort", "subject_id"]
    )
    keys = ["cohort", "method", "setting", "pattern"]
    out = []
    for key, part in rows.groupby(keys, sort=True):
        counts = flag_counts(part)
        out.append(
            dict(zip(keys, key, strict=True))
            | {k: counts[k] for k in ("n", "n_flagged", "share_flagged", "accuracy")}
        )
    return pd.DataFrame(out, columns=[*keys, "n", "n_flagged", "share_flagged", "accuracy"])


def coverage_curve(margin, correct) -> pd.DataFrame:
    """Accuracy on the retained scans when the least certain are set aside one by one:
    ``coverage`` (share kept, 1 → the most certain only) and ``accuracy``."""
    m = np.asarray(margin, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    order = np.argsort(-m, kind="stable")  # most certain first
    kept = np.arange(1, m.size + 1)
    return pd.DataFrame({"coverage": kept / m.size, "accuracy": np.cumsum(ok[order]) / kept}).iloc[
        ::-1
    ]
