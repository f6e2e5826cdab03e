"""The mean ROC over splits: vertical averaging on a grid, one AUC per split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from datspect.errors import InputError
from datspect.evaluation.roc import mean_roc

GRID = np.linspace(0.0, 1.0, 5)


def _rows(split, labels, scores):
    return pd.DataFrame({"split": split, "label": labels, "score_reduced": scores})


def test_perfect_scores_give_the_top_left_corner():
    rows = pd.concat([_rows(s, [0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) for s in (0, 1)])
    roc = mean_roc(rows, GRID)
    np.testing.assert_array_equal(roc.fpr, GRID)
    np.testing.assert_array_equal(roc.tpr, [0.0, 1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(roc.tpr_sd, 0.0)
    assert (roc.auc_mean, roc.auc_sd) == (1.0, 0.0)


def test_splits_are_averaged_not_pooled():
    # split 1: one of two reduced images scores below one of two normal ones (AUC 0.75)
    split0 = _rows(0, [0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    split1 = _rows(1, [0, 0, 1, 1], [0.1, 0.5, 0.3, 0.9])
    roc = mean_roc(pd.concat([split0, split1]), GRID)
    aucs = [roc_auc_score(s["label"], s["score_reduced"]) for s in (split0, split1)]
    np.testing.assert_allclose(roc.aucs, aucs)
    assert roc.auc_mean == pytest.approx(0.875)
    assert roc.auc_sd == pytest.approx(np.std(aucs, ddof=1))
    # at FPR 0.25 split 0 finds every reduced image, split 1 half of them (linear interpolation)
    assert roc.tpr[1] == pytest.approx((1.0 + 0.5) / 2)
    assert roc.tpr_sd[1] == pytest.approx(0.25)


def test_one_class_splits_are_left_out():
    both = _rows(0, [0, 1], [0.2, 0.7])
    one = _rows(1, [1, 1], [0.2, 0.7])
    roc = mean_roc(pd.concat([both, one]), GRID)
    assert roc.aucs.tolist() == [1.0] and roc.auc_sd == 0.0
    assert mean_roc(one, GRID) is None
    with pytest.raises(InputError, match="score_reduced"):
        mean_roc(both.drop(columns="score_reduced"), GRID)
