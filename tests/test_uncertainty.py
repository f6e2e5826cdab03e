"""The inconclusive call: the band chosen on validation only, its tables, and MC dropout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from test_calibration import sbr_cohort

from datspect.cnn.model import build_model
from datspect.cnn.train import mc_dropout_logits, predict_logits
from datspect.errors import InputError
from datspect.evaluation import scoring, uncertainty

BAND = {"source": "mc_dropout", "target_caught": 0.8, "max_flagged": 0.1}


def test_band_holds_the_target_share_of_validation_errors():
    margin = np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.45, 0.49, 0.5] * 4)
    correct = np.ones(margin.size, bool)
    correct[[0, 1, 2, 13]] = False  # errors at margins 0.01, 0.02, 0.05, 0.1
    band = uncertainty.choose_band(margin, correct, target_caught=0.75, max_flagged=0.5)
    # 3 of 4 errors: up to margin 0.05, the edge half-way to the next margin, 0.1
    assert band["half_width"] == pytest.approx(0.075)
    assert band["val_errors_flagged"] == 3 and band["n_val_errors"] == 4
    assert band["val_flagged"] == int((margin < 0.075).sum()) and not band["capped"]
    # all of them
    full = uncertainty.choose_band(margin, correct, target_caught=1.0, max_flagged=0.5)
    assert full["half_width"] == pytest.approx(0.15) and full["val_errors_flagged"] == 4


def test_band_never_flags_more_than_allowed_and_nothing_without_errors():
    margin = np.linspace(0.0, 0.5, 100)
    correct = np.ones(100, bool)
    correct[60] = False  # one confident error
    band = uncertainty.choose_band(margin, correct, target_caught=0.8, max_flagged=0.1)
    assert band["capped"] and band["val_flagged"] == 10 and band["val_errors_flagged"] == 0
    none = uncertainty.choose_band(margin, np.ones(100, bool), target_caught=0.8, max_flagged=0.1)
    assert none["half_width"] == 0.0 and none["val_flagged"] == 0
    ties = uncertainty.choose_band(
        np.zeros(20), correct[:20] & False, target_caught=0.8, max_flagged=0.1
    )
    assert ties["val_flagged"] <= 2
    with pytest.raises(InputError, match="target_caught"):
        uncertainty.choose_band(margin, correct, target_caught=0.0, max_flagged=0.1)


def _scores(n_val=300, n_test=200, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_val + n_test
    label = rng.integers(0, 2, n)
    logit = (2 * label - 1) * 2.0 + rng.normal(0, 2.0, n)  # ~16 % errors
    part = np.array(["val"] * n_val + ["test"] * n_test)
    return pd.DataFrame(
        {
            "cohort": "ppmi",
            "subject_id": [f"s{i:03d}" for i in range(n)],
            "image_setting": "original",
            "label": label,
            "part": part,
            "score": 1 / (1 + np.exp(-logit)),
            "score_reduced": 1 / (1 + np.exp(-logit)),
            "prediction": (logit >= 0).astype(int),
            "method": "cnn",
            "setting": "original",
            "split": 0,
            "logit": logit,
            "logit_mc": logit + rng.normal(0, 0.2, n),
        }
    )


def test_cnn_band_is_chosen_on_validation_and_only_there():
    scores = _scores()
    model, pred = scoring.calibrate_cnn(scores, "temperature", BAND)
    band = model["inconclusive"]
    assert band["source"] == "mc_dropout" and band["n_val"] == 300
    assert 0 < band["half_width"] < 0.5
    assert set(pred["cohort"]) == {"ppmi"} and len(pred) == 200
    np.testing.assert_array_equal(pred["inconclusive"], pred["margin"] < band["half_width"])
    # the test labels must not reach the band: flipping all of them changes nothing ...
    leaked = scores.copy()
    test = leaked["part"] == "test"
    leaked.loc[test, "label"] = 1 - leaked.loc[test, "label"]
    assert scoring.calibrate_cnn(leaked, "temperature", BAND)[0]["inconclusive"] == band
    # ... while the validation labels do
    flipped = scores.copy()
    val = flipped.index[flipped["part"] == "val"][:40]
    flipped.loc[val, "label"] = 1 - flipped.loc[val, "label"]
    assert scoring.calibrate_cnn(flipped, "temperature", BAND)[0]["inconclusive"] != band
    single = scoring.calibrate_cnn(scores, "temperature", BAND | {"source": "single_pass"})
    assert single[0]["inconclusive"]["source"] == "single_pass"


def test_sbr_borderline_band_is_chosen_on_validation():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    table, splits = sbr_cohort(labels, np.where(labels == 1, 1.6, 2.6) + rng.normal(0, 0.45, 200))
    kwargs = dict(
        method="sbr_aal", setting="original", split=0, development="ppmi", independent=[], band=BAND
    )
    model, pred = scoring.fit_sbr_cutoff(table, splits, **kwargs)
    band = model["inconclusive"]
    assert band["n_val"] == 40 and band["source"] == "sbr" and band["half_width"] > 0
    np.testing.assert_allclose(pred["margin"], np.abs(pred["score"] - model["cutoff"]))
    np.testing.assert_array_equal(pred["inconclusive"], pred["margin"] < band["half_width"])
    leaked = table.copy()
    tested = leaked["subject_id"].isin(splits.loc[splits["part"] == "test", "subject_id"])
    leaked.loc[tested, "label"] = 1 - leaked.loc[tested, "label"]
    assert scoring.fit_sbr_cutoff(leaked, splits, **kwargs)[0]["inconclusive"] == band


def test_uncertainty_table_and_the_ensemble_on_independent_scans():
    rows = []
    for split, width in ((0, 0.1), (1, 0.2), (2, 0.3)):
        for i, (label, p) in enumerate([(0, 0.1), (1, 0.55), (1, 0.9), (1, 0.45)]):
            rows.append(
                {
                    "cohort": "clinical",
                    "subject_id": f"c{i}",
                    "image_setting": "original",
                    "label": label,
                    "p_reduced": p,
                    "prediction": int(p >= 0.5),
                    "method": "cnn",
                    "setting": "mixed",
                    "split": split,
                    "half_width": width,
                    "margin": abs(p - 0.5),
                    "inconclusive": abs(p - 0.5) < width,
                }
            )
    pred = pd.DataFrame(rows)
    table = uncertainty.uncertainty_table(pred, ["clinical"])
    ens = table[table["split"] == "ensemble"].iloc[0]
    # the ensemble band is the median, 0.2: 0.55 and 0.45 are inconclusive, 0.45 is the error
    assert ens["half_width"] == pytest.approx(0.2) and ens["n_flagged"] == 2
    assert ens["n_errors"] == 1 and ens["share_errors_flagged"] == 1.0
    assert ens["accuracy_conclusive"] == 1.0
    first = table[table["split"] == "0"].iloc[0]
    assert first["n_flagged"] == 2 and first["share_flagged"] == 0.5
    patterns = uncertainty.pattern_flags(
        pred,
        pd.DataFrame(
            {
                "cohort": "clinical",
                "subject_id": ["c0", "c1", "c2", "c3"],
                "pattern": ["normal", "borderline", "typical", "normal"],
            }
        ),
    )
    border = patterns[patterns["pattern"] == "borderline"].iloc[0]
    assert border["share_flagged"] == 1.0 and border["n"] == 3


def test_coverage_curve_drops_the_least_certain_first():
    curve = uncertainty.coverage_curve([0.4, 0.01, 0.3, 0.02], [True, False, True, True])
    assert curve["coverage"].tolist() == [1.0, 0.75, 0.5, 0.25]
    assert curve["accuracy"].tolist() == [0.75, 1.0, 1.0, 1.0]


def test_mc_dropout_is_seeded_and_leaves_the_model_deterministic():
    arch = {"channels": [4, 8], "dense_units": [16], "crop": None, "downsample": 1}
    torch.manual_seed(0)
    model = build_model(arch, (32, 32))
    items = [np.random.default_rng(i).random((32, 32), dtype=np.float32) for i in range(5)]
    a = mc_dropout_logits(model, items, 6, seed=1, device="cpu")
    b = mc_dropout_logits(model, items, 6, seed=1, device="cpu")
    assert a.shape == (5, 6)
    np.testing.assert_array_equal(a, b)
    assert a.std(axis=1).min() > 0  # dropout samples
    assert not np.array_equal(a, mc_dropout_logits(model, items, 6, seed=2, device="cpu"))
    single = predict_logits(model, items, device="cpu")
    np.testing.assert_array_equal(single, predict_logits(model, items, device="cpu"))
    assert not model.training
