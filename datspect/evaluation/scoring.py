"""From per-image scores to the contract tables: SBR cutoffs, predictions, metrics, summary; and
the cutoffs and confusion counts over splits that the figures show.

Predictions tables have one row per scored image: ``cohort, subject_id, image_setting, label,
score, score_reduced, prediction, method, setting, split, p_reduced`` (+ ``cutoff`` for SBR
methods, ``logit`` and ``p_reduced_raw`` for the CNN), where ``score`` is the method's own output
(an SBR, or the CNN's uncalibrated probability), ``score_reduced`` is oriented so that higher
means reduced (for the AUC) and ``p_reduced`` is the calibrated probability of reduced
(:mod:`datspect.evaluation.calibration`): the CNN's calibrated on its split's validation part,
the SBR methods' from a logistic fit of the label on the SBR of the training part.  Calls
(``prediction``) do not depend on it: the Youden cutoff for SBR methods, the sign of the logit
for the CNN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from datspect import schema
from datspect.errors import InputError
from datspect.evaluation import calibration, metrics, stats, uncertainty
from datspect.evaluation import cutoff as cutoffs
from datspect.io.tsv import cohort_rows, require_columns
from datspect.vocabulary import IMAGES_OF_SETTING, INDEPENDENT_IMAGES, SBR_COLUMN, SETTINGS, ordered


def part_images(
    table: pd.DataFrame, splits: pd.DataFrame, split: int, part: str, setting: str
) -> pd.DataFrame:
    """Rows of a per-image table (development cohort) in one part of one split and setting."""
    members = splits.loc[(splits["split"] == split) & (splits["part"] == part), "subject_id"]
    rows = table[table["subject_id"].isin(set(members))]
    return rows[rows["image_setting"].isin(IMAGES_OF_SETTING[setting])]


def fit_sbr_cutoff(
    table: pd.DataFrame,
    splits: pd.DataFrame,
    *,
    method: str,
    setting: str,
    split: int,
    development: str,
    independent: list[str],
    band: dict | None = None,
) -> tuple[dict, pd.DataFrame]:
    """Youden cutoff on the training part; predictions for the test part (and independent).

    The cutoff does not use the validation part, as in the study; only the borderline band
    around it (``band``: ``evaluation.uncertainty``, schema defaults when None;
    :func:`datspect.evaluation.uncertainty.choose_band` on ``|SBR - cutoff|``) is chosen there.
    Mixed-setting cutoffs are also applied to every scan of the independent cohorts.
    ``p_reduced`` comes from a logistic fit of the label on the SBR of the same training images
    (``calibration`` in the returned model); the calls stay those of the cutoff.
    """
    column = SBR_COLUMN[method]
    dev = table[table["cohort"] == development]
    train = part_images(dev, splits, split, "train", setting)
    if train["label"].nunique() < 2:
        raise InputError(f"split {split}: the training part has one class only")
    fit = cutoffs.youden_cutoff(train[column].to_numpy(), train["label"].to_numpy())
    probability = calibration.fit_calibration(
        "platt", train[column].to_numpy(), train["label"].to_numpy()
    )
    band = band or schema.defaults("evaluation", "uncertainty")
    val = part_images(dev, splits, split, "val", setting)
    if val.empty:
        raise InputError(f"split {split}: the validation part is empty; a band needs it")
    val_sbr = val[column].to_numpy()
    borderline = uncertainty.choose_band(
        uncertainty.sbr_margin(val_sbr, fit["cutoff"]),
        cutoffs.predict_with_cutoff(val_sbr, fit["cutoff"]) == val["label"].to_numpy(),
        target_caught=band["target_caught"],
        max_flagged=band["max_flagged"],
    )
    scored = [part_images(dev, splits, split, "test", setting)]
    if setting == "mixed":
        for cohort in independent:
            rows = table[table["cohort"] == cohort]
            scored.append(rows[rows["image_setting"].isin(INDEPENDENT_IMAGES)])
    pred = pd.concat(scored, ignore_index=True)
    pred = pred[["cohort", "subject_id", "image_setting", "label"]].assign(
        score=pred[column].to_numpy(),
        score_reduced=-pred[column].to_numpy(),
        prediction=cutoffs.predict_with_cutoff(pred[column].to_numpy(), fit["cutoff"]),
        method=method,
        setting=setting,
        split=split,
        cutoff=fit["cutoff"],
        p_reduced=calibration.apply_calibration(probability, pred[column].to_numpy()),
        margin=uncertainty.sbr_margin(pred[column].to_numpy(), fit["cutoff"]),
        half_width=borderline["half_width"],
    )
    pred = pred.assign(inconclusive=pred["margin"] < borderline["half_width"])
    model = {
        "method": method,
        "setting": setting,
        "split": split,
        "sbr_column": column,
        "n_train_images": len(train),
        "reduced_if": "sbr < cutoff",
        **{k: float(v) for k, v in fit.items()},
        "calibration": probability | {"p_reduced": "sigmoid(slope * sbr + intercept)"},
        "inconclusive": {"source": "sbr", "margin": "|sbr - cutoff|"} | borderline,
    }
    return model, pred


#: The rows of a CNN's scores table (``part``) that get calibrated probabilities and are scored.
SCORED_PARTS = ("test", "independent")


def calibrate_cnn(
    scores: pd.DataFrame, method: str, band: dict | None = None
) -> tuple[dict, pd.DataFrame]:
    """Fit a CNN's calibration and its inconclusive band on its validation rows; the calibrated
    test/independent rows with their calls.

    Parameters
    ----------
    scores : pandas.DataFrame
        One CNN's scores (:func:`datspect.cnn.experiment.run`): the predictions columns plus
        ``part`` (``val``, ``test``, ``independent``) and ``logit``.
    method : {"temperature", "platt", "none"}
        The calibration map (:func:`datspect.evaluation.calibration.fit_calibration`).
    band : dict, optional
        ``evaluation.uncertainty`` (``source``, ``target_caught``, ``max_flagged``; the schema's
        defaults when None): the inconclusive band
        (:func:`datspect.evaluation.uncertainty.choose_band`) is put on the calibrated
        probability of ``source`` (``single_pass``: ``logit``; ``mc_dropout``: ``logit_mc``).

    Returns
    -------
    model : dict
        ``method, setting, split`` of the CNN, ``calibration``: the fitted map (e.g.
        ``temperature``) with the validation part's log loss, Brier score and ECE (10 bins)
        before (``val_raw``) and after (``val_calibrated``) it, and ``inconclusive``: the band.
    predictions : pandas.DataFrame
        The test and independent rows without ``part``; ``p_reduced_raw`` is the model's own
        probability, ``p_reduced`` the calibrated one, ``p_reduced_mc`` the calibrated MC-dropout
        one; ``margin``, ``half_width`` and ``inconclusive`` the band's call.

    Raises
    ------
    InputError
        Missing columns, no validation rows, or a validation part with one class only.
    """
    require_columns(scores, ["part", "label", "logit", "method", "setting", "split"], "scores")
    val = scores[scores["part"] == "val"]
    if val.empty:
        raise InputError("scores: no validation rows (part 'val'); rerun train_cnn")
    if val["label"].nunique() < 2:
        raise InputError(
            f"split {scores['split'].iloc[0]}: the validation part has one class only; "
            "a calibration needs both"
        )
    fit = calibration.fit_calibration(method, val["logit"].to_numpy(), val["label"].to_numpy())
    raw = calibration.apply_calibration({"method": "none"}, val["logit"].to_numpy())
    calibrated = calibration.apply_calibration(fit, val["logit"].to_numpy())
    for name, p in (("raw", raw), ("calibrated", calibrated)):
        fit[f"val_{name}"] = calibration.probability_metrics(val["label"], p)
    band = band or schema.defaults("evaluation", "uncertainty")
    logit_column = uncertainty.BAND_LOGIT[band["source"]]
    require_columns(scores, ["logit_mc"], "scores")
    val_margin = uncertainty.cnn_margin(
        calibration.apply_calibration(fit, val[logit_column].to_numpy())
    )
    chosen = uncertainty.choose_band(
        val_margin,
        val["prediction"].to_numpy() == val["label"].to_numpy(),
        target_caught=band["target_caught"],
        max_flagged=band["max_flagged"],
    )
    model = {
        "method": str(scores["method"].iloc[0]),
        "setting": str(scores["setting"].iloc[0]),
        "split": int(scores["split"].iloc[0]),
        "fitted_on": "validation part",
        "calibration": fit,
        "inconclusive": {"source": band["source"], "margin": "|P(reduced) - 0.5|"} | chosen,
    }
    out = scores[scores["part"].isin(SCORED_PARTS)].drop(columns="part")
    margin = uncertainty.cnn_margin(calibration.apply_calibration(fit, out[logit_column]))
    out = out.assign(
        p_reduced_raw=calibration.apply_calibration({"method": "none"}, out["logit"].to_numpy()),
        p_reduced=calibration.apply_calibration(fit, out["logit"].to_numpy()),
        p_reduced_mc=calibration.apply_calibration(fit, out["logit_mc"].to_numpy()),
        margin=margin,
        half_width=chosen["half_width"],
        inconclusive=margin < chosen["half_width"],
    )
    return model, out.reset_index(drop=True)


def per_split_metrics(predictions: pd.DataFrame, ece_bins: int = 10) -> pd.DataFrame:
    """One row per (cohort, method, setting, split) with the contract's metric columns, then
    ``log_loss, brier, ece`` of ``p_reduced`` (``ece_bins`` equal-width bins; NaN without it)."""
    rows = []
    keys = ["cohort", "method", "setting", "split"]
    for key, part in predictions.groupby(keys, sort=True):
        row = dict(zip(keys, key, strict=True))
        row.update(metrics.binary_metrics(part["label"], part["prediction"], part["score_reduced"]))
        cut = part["cutoff"].dropna() if "cutoff" in part else pd.Series(dtype=float)
        row["cutoff"] = float(cut.iloc[0]) if len(cut) else np.nan
        p = part["p_reduced"] if "p_reduced" in part else pd.Series(dtype=float)
        if len(p) and p.notna().all():
            row.update(calibration.probability_metrics(part["label"], p, ece_bins))
        else:
            row.update(dict.fromkeys(calibration.PROBABILITY_METRICS, np.nan))
        rows.append(row)
    columns = keys + ["n", "accuracy", "sensitivity", "specificity", "balanced_accuracy"]
    return pd.DataFrame(rows)[columns + ["auc", "cutoff", *calibration.PROBABILITY_METRICS]]


def mean_cutoffs(predictions: pd.DataFrame, method: str = "sbr_aal") -> pd.DataFrame:
    """Cutoff of an SBR method per training setting: mean and SD over splits.

    Cutoffs are fitted on the development cohort, so every scored cohort carries the same
    value per (setting, split); each split counts once.

    Returns
    -------
    pandas.DataFrame
        Index ``setting`` (canonical order), columns ``mean, sd, n_splits``; ``sd`` is the sample
        SD (ddof 1), 0 for a single split.
    """
    require_columns(predictions, ["method", "setting", "split", "cutoff"], "predictions")
    rows = predictions[predictions["method"] == method].dropna(subset=["cutoff"])
    if rows.empty:
        raise InputError(f"predictions: no cutoffs for method {method!r}; is it an SBR method?")
    per_split = rows.groupby(["setting", "split"])["cutoff"].first()
    table = per_split.groupby(level="setting").agg(["mean", "std", "count"])
    table = table.rename(columns={"std": "sd", "count": "n_splits"}).fillna({"sd": 0.0})
    return table.loc[ordered(table.index, SETTINGS)]


def pooled_confusion(predictions: pd.DataFrame, cohort: str) -> dict[tuple[str, str], np.ndarray]:
    """Confusion counts per (method, setting) of one cohort, summed over splits.

    Returns
    -------
    dict
        ``{(method, setting): 2x2 int array}``; rows true label, columns predicted label, index
        0 = normal, 1 = reduced.
    """
    require_columns(
        predictions, ["cohort", "method", "setting", "label", "prediction"], "predictions"
    )
    rows = cohort_rows(predictions, cohort, "predictions")
    return {
        (method, setting): confusion_matrix(part["label"], part["prediction"], labels=[0, 1])
        for (method, setting), part in rows.groupby(["method", "setting"])
    }


def mcnemar_column(paired: pd.DataFrame, predictions: pd.DataFrame) -> pd.Series:
    """Exact McNemar p-value per comparison on the pooled test images of all splits.

    Only comparisons scored on the same images (same cohort, images and splits) are paired;
    others (e.g. original vs smoothed, which score different images) get NaN.
    """
    correct = predictions.assign(correct=predictions["prediction"] == predictions["label"])
    keys = ["cohort", "split", "subject_id", "image_setting"]
    values = []
    for row in paired.itertuples():
        a = correct[
            (correct["cohort"] == row.cohort)
            & (correct["method"] == row.method_a)
            & (correct["setting"] == row.setting_a)
        ]
        b = correct[
            (correct["cohort"] == row.cohort)
            & (correct["method"] == row.method_b)
            & (correct["setting"] == row.setting_b)
        ]
        both = a[keys + ["correct"]].merge(b[keys + ["correct"]], on=keys)
        if len(both) == 0 or len(both) != len(a) or len(both) != len(b):
            values.append(np.nan)
            continue
        values.append(stats.mcnemar_exact(both["correct_x"], both["correct_y"])["p_mcnemar"])
    return pd.Series(values, index=paired.index, dtype=float)
