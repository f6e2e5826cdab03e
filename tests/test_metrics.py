"""Metrics on a hand-made confusion matrix and their summary over splits."""

import numpy as np
import pandas as pd
import pytest

from datspect.errors import InputError
from datspect.evaluation.metrics import binary_metrics, summarize


def test_hand_made_confusion_matrix():
    # TP = 8, FN = 2, TN = 5, FP = 3
    y_true = np.array([1] * 10 + [0] * 8)
    y_pred = np.array([1] * 8 + [0] * 2 + [0] * 5 + [1] * 3)
    res = binary_metrics(y_true, y_pred, y_pred.astype(float))
    assert res["n"] == 18
    assert res["accuracy"] == pytest.approx(13 / 18)
    assert res["sensitivity"] == pytest.approx(8 / 10)
    assert res["specificity"] == pytest.approx(5 / 8)
    assert res["balanced_accuracy"] == pytest.approx((0.8 + 0.625) / 2)
    # AUC of a binary score: (TPR + TNR) / 2 with ties counted half
    assert res["auc"] == pytest.approx((0.8 + 0.625) / 2)


def test_auc_orientation_and_one_class():
    y = [0, 0, 1, 1]
    score = [0.1, 0.4, 0.35, 0.8]  # 3 of 4 (reduced, normal) pairs ordered correctly
    assert binary_metrics(y, [0, 1, 0, 1], score)["auc"] == pytest.approx(0.75)
    sbr = -np.array(score)  # an SBR-like score must be negated
    assert binary_metrics(y, [0, 1, 0, 1], -sbr)["auc"] == pytest.approx(0.75)
    only_reduced = binary_metrics([1, 1, 1], [1, 0, 1], [0.9, 0.2, 0.7])
    assert only_reduced["sensitivity"] == pytest.approx(2 / 3)
    assert np.isnan(only_reduced["specificity"])
    assert np.isnan(only_reduced["auc"])
    with pytest.raises(InputError, match="0 \\(normal\\) or 1"):
        binary_metrics([0, 2], [0, 1], [0.1, 0.2])
    with pytest.raises(InputError, match="length"):
        binary_metrics([0, 1], [0, 1], [0.1])


def _per_split():
    rows = []
    for setting, accs in (("original", (0.9, 1.0, 0.95)), ("mixed", (0.8, 0.9, 0.85))):
        for split, acc in enumerate(accs):
            rows.append(
                dict(
                    cohort="ppmi",
                    method="sbr_aal",
                    setting=setting,
                    split=split,
                    n=20,
                    accuracy=acc,
                    sensitivity=acc,
                    specificity=1.0,
                    balanced_accuracy=(acc + 1.0) / 2,
                    auc=np.nan if split == 2 else acc,
                )
            )
    return pd.DataFrame(rows)


def test_summarize_mean_and_sample_sd():
    out = summarize(_per_split())
    assert list(out.columns[:12]) == [
        "cohort",
        "method",
        "setting",
        "n_splits",
        "accuracy_mean",
        "accuracy_sd",
        "sensitivity_mean",
        "sensitivity_sd",
        "specificity_mean",
        "specificity_sd",
        "auc_mean",
        "auc_sd",
    ]
    assert list(out.columns[12:]) == ["balanced_accuracy_mean", "balanced_accuracy_sd"]
    row = out[out["setting"] == "original"].iloc[0]
    assert row["n_splits"] == 3
    assert row["accuracy_mean"] == pytest.approx(0.95)
    # sample SD by hand: deviations -0.05, 0.05, 0 -> sqrt(0.005 / 2)
    assert row["accuracy_sd"] == pytest.approx(np.sqrt(0.005 / 2))
    assert row["specificity_sd"] == pytest.approx(0.0)
    # NaN AUC of split 2 is left out: mean and SD of 0.9 and 1.0
    assert row["auc_mean"] == pytest.approx(0.95)
    assert row["auc_sd"] == pytest.approx(np.sqrt(0.005))


def test_summarize_rejects_duplicates_and_missing_columns():
    df = _per_split()
    with pytest.raises(InputError, match="occurs twice"):
        summarize(pd.concat([df, df.iloc[[0]]]))
    with pytest.raises(InputError, match="auc"):
        summarize(df.drop(columns="auc"))
