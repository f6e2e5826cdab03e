"""Calibrated probabilities: the maps, the metrics, the rows a fit sees, the reliability figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from datspect.errors import InputError
from datspect.evaluation import calibration, metrics, scoring
from datspect.figures.calibration import reliability_diagrams


def _calibrated_logits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a well-calibrated model and labels drawn from its probabilities."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.5, n)
    return z, (rng.random(n) < expit(z)).astype(int)


def test_temperature_scaling_undoes_overconfident_logits():
    z, y = _calibrated_logits(4000)
    overconfident = 3.0 * z
    fit = calibration.fit_calibration("temperature", overconfident, y)
    assert fit["temperature"] == pytest.approx(3.0, rel=0.1)
    before = calibration.expected_calibration_error(y, expit(overconfident))
    after = calibration.expected_calibration_error(
        y, calibration.apply_calibration(fit, overconfident)
    )
    assert before > 0.08 and after < before / 3
    # the calls do not change: same sign of the logit
    p = calibration.apply_calibration(fit, overconfident)
    np.testing.assert_array_equal(p >= 0.5, overconfident >= 0)
    # an underconfident model gets T < 1; a calibrated one T close to 1
    assert calibration.fit_temperature(z / 2.0, y) == pytest.approx(0.5, rel=0.1)
    assert calibration.fit_temperature(z, y) == pytest.approx(1.0, rel=0.1)


def test_fits_stay_finite_on_separable_scores():
    z = np.r_[np.linspace(2, 8, 40), -np.linspace(2, 8, 40)]
    y = np.r_[np.ones(40), np.zeros(40)].astype(int)
    t = calibration.fit_temperature(z, y)
    low, high = calibration.TEMPERATURE_BOUNDS
    assert low < t < high  # Platt's targets: no infinitely confident fit
    slope, intercept = calibration.fit_logistic(-z, y)  # an SBR: lower = reduced
    assert np.isfinite([slope, intercept]).all() and slope < 0
    with pytest.raises(InputError, match="must be one of"):
        calibration.fit_calibration("isotonic", z, y)
    with pytest.raises(InputError, match="NaN"):
        calibration.fit_calibration("temperature", [np.nan, 1.0], [0, 1])


def test_probability_metrics_on_known_values():
    y, p = [0, 1, 1, 0], [0.2, 0.9, 0.6, 0.5]
    out = calibration.probability_metrics(y, p, n_bins=10)
    assert out["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.9, 0.6, 0.5])))
    assert out["brier"] == pytest.approx((0.04 + 0.01 + 0.16 + 0.25) / 4)
    # one image per bin: |observed - p| = 0.2, 0.1, 0.4, 0.5
    assert out["ece"] == pytest.approx(0.3)
    # two bins: [0, 0.5) holds 0.2; [0.5, 1] holds 0.9, 0.6, 0.5 (observed 2/3, mean p 2/3)
    assert calibration.expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.25 * 0.2)
    bins = calibration.reliability_bins([1, 0], [1.0, 0.0], n_bins=4)
    assert bins["n"].tolist() == [1, 0, 0, 1]  # p = 1 falls in the last bin
    assert calibration.probability_metrics([1, 0], [1.0, 0.0])["ece"] == 0.0
    assert calibration.log_loss([1], [0.0]) == pytest.approx(-np.log(1e-15))  # clipped
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        calibration.brier_score([0, 1], [0.5, 1.5])


def _scores(seed: int = 1) -> pd.DataFrame:
    """One CNN's scores table: overconfident logits on validation, test and independent rows."""
    z, y = _calibrated_logits(600, seed)
    part = np.array(["val"] * 300 + ["test"] * 200 + ["independent"] * 100)
    return pd.DataFrame(
        {
            "cohort": np.where(part == "independent", "clinical", "ppmi"),
            "subject_id": [f"s{i:03d}" for i in range(z.size)],
            "image_setting": "original",
            "label": y,
            "part": part,
            "score": expit(3 * z),
            "score_reduced": expit(3 * z),
            "prediction": (z >= 0).astype(int),
            "method": "cnn",
            "setting": "mixed",
            "split": 3,
            "logit": 3 * z,
            "logit_mc": 3 * z + np.random.default_rng(seed).normal(0, 0.3, z.size),
        }
    )


def test_cnn_calibration_sees_the_validation_part_only():
    scores = _scores()
    model, pred = scoring.calibrate_cnn(scores, "temperature")
    t = model["calibration"]["temperature"]
    assert model["split"] == 3 and model["fitted_on"] == "validation part"
    assert t == pytest.approx(3.0, rel=0.25)
    assert model["calibration"]["n_fit"] == 300
    val = model["calibration"]
    assert val["val_calibrated"]["log_loss"] < val["val_raw"]["log_loss"]
    assert sorted(set(pred["cohort"])) == ["clinical", "ppmi"] and len(pred) == 300
    assert "part" not in pred
    np.testing.assert_allclose(pred["p_reduced"], expit(pred["logit"] / t))
    np.testing.assert_allclose(pred["p_reduced_raw"], pred["score"])
    # test labels (and logits) reaching the fit would change it: they must not
    leaked = scores.copy()
    outside = leaked["part"] != "val"
    leaked.loc[outside, "label"] = 1 - leaked.loc[outside, "label"]
    leaked.loc[outside, "logit"] *= 0.1
    assert scoring.calibrate_cnn(leaked, "temperature")[0]["calibration"]["temperature"] == t
    # ... while the validation labels do
    flipped = scores.copy()
    inside = flipped["part"] == "val"
    flipped.loc[inside, "label"] = 1 - flipped.loc[inside, "label"]
    assert scoring.calibrate_cnn(flipped, "temperature")[0]["calibration"]["temperature"] != t
    none = scoring.calibrate_cnn(scores, "none")[1]
    np.testing.assert_allclose(none["p_reduced"], none["p_reduced_raw"])
    with pytest.raises(InputError, match="no validation rows"):
        scoring.calibrate_cnn(scores[scores["part"] != "val"], "temperature")


def sbr_cohort(labels, sbr) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An SBR table of one cohort (``ppmi``, original images) and one split: 3/5 of the subjects
    train, 1/5 val, 1/5 test, in turn."""
    subjects = [f"s{i:03d}" for i in range(len(labels))]
    table = pd.DataFrame(
        {
            "cohort": "ppmi",
            "subject_id": subjects,
            "image_setting": "original",
            "label": labels,
            "putamen": sbr,
        }
    )
    parts = np.resize(["train", "train", "train", "val", "test"], len(labels))
    return table, pd.DataFrame({"split": 0, "subject_id": subjects, "part": parts})


def test_sbr_probabilities_come_from_the_training_part():
    rng = np.random.default_rng(2)
    labels = np.r_[np.zeros(30), np.ones(30)].astype(int)
    table, splits = sbr_cohort(labels, np.where(labels == 1, 1.5, 2.8) + rng.normal(0, 0.4, 60))
    parts = splits["part"].to_numpy()
    kwargs = dict(method="sbr_aal", setting="original", split=0, development="ppmi", independent=[])
    model, pred = scoring.fit_sbr_cutoff(table, splits, **kwargs)
    fit = model["calibration"]
    assert fit["method"] == "platt" and fit["slope"] < 0  # lower SBR: more likely reduced
    assert fit["n_fit"] == int((parts == "train").sum())
    np.testing.assert_allclose(
        pred["p_reduced"], expit(fit["slope"] * pred["score"] + fit["intercept"])
    )
    cut = model["cutoff"]
    np.testing.assert_array_equal(pred["prediction"], (pred["score"] < cut).astype(int))
    leaked = table.copy()
    held_out = leaked["subject_id"].isin(splits.loc[splits["part"] != "train", "subject_id"])
    leaked.loc[held_out, "label"] = 1 - leaked.loc[held_out, "label"]
    assert scoring.fit_sbr_cutoff(leaked, splits, **kwargs)[0]["calibration"] == fit


def test_metrics_tables_gain_the_probability_columns():
    pred = scoring.calibrate_cnn(_scores(), "temperature")[1]
    per_split = pd.concat(
        [scoring.per_split_metrics(pred.assign(split=s), ece_bins=5) for s in (0, 1)]
    )
    assert list(per_split.columns[-3:]) == ["log_loss", "brier", "ece"]
    row = per_split[(per_split["cohort"] == "ppmi") & (per_split["split"] == 0)].iloc[0]
    test = pred[pred["cohort"] == "ppmi"]
    assert row["ece"] == pytest.approx(
        calibration.expected_calibration_error(test["label"], test["p_reduced"], 5)
    )
    no_p = scoring.per_split_metrics(pred.drop(columns="p_reduced"))
    assert no_p["ece"].isna().all()
    summary = metrics.summarize(per_split)
    for m in ("log_loss", "brier", "ece"):
        assert {f"{m}_mean", f"{m}_sd"} <= set(summary.columns)
    assert summary["ece_sd"].eq(0).all()  # the same rows in both "splits"


def test_reliability_diagram_draws_every_method_and_the_raw_cnn(tmp_path):
    cnn = scoring.calibrate_cnn(_scores(), "temperature")[1]
    sbr = cnn.assign(method="sbr_aal", p_reduced_raw=np.nan, p_reduced=cnn["p_reduced"] ** 2)
    predictions = pd.concat([cnn, sbr, cnn.assign(setting="original")], ignore_index=True)
    out = tmp_path / "reliability.png"
    fig = reliability_diagrams(predictions, out, "ppmi", n_bins=10)
    assert out.stat().st_size > 1000
    gids = {line.get_gid() for ax in fig.axes for line in ax.get_lines()} - {None}
    assert gids == {
        "reliability:original:cnn",
        "reliability:original:cnn_raw",
        "reliability:mixed:cnn",
        "reliability:mixed:cnn_raw",
        "reliability:mixed:sbr_aal",
    }
    with pytest.raises(InputError, match="missing column"):
        reliability_diagrams(predictions.drop(columns="p_reduced"), out, "ppmi")
