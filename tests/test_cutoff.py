"""Youden cutoffs on hand-constructed ROC curves."""

import numpy as np
import pytest

from datspect.errors import InputError
from datspect.evaluation.cutoff import predict_with_cutoff, youden_cutoff

# SBR-like scores: lower = reduced (label 1)
NORMAL = [2.0, 2.5, 3.0, 3.5]


def test_known_optimum_midway_between_scores():
    reduced = [0.5, 1.0, 1.5, 1.8, 2.2]
    scores = np.array(reduced + NORMAL)
    labels = np.array([1] * 5 + [0] * 4)
    # by hand: cutoff 1.9 gives sens 4/5, spec 4/4 (J 0.80); 2.35 gives 5/5, 3/4 (J 0.75)
    res = youden_cutoff(scores, labels)
    assert res["cutoff"] == pytest.approx(1.9)
    assert res["youden_j"] == pytest.approx(0.8)
    assert res["sensitivity"] == pytest.approx(0.8)
    assert res["specificity"] == pytest.approx(1.0)
    pred = predict_with_cutoff(scores, res["cutoff"])
    np.testing.assert_array_equal(pred, [1, 1, 1, 1, 0, 0, 0, 0, 0])
    # the same data with higher = reduced gives the mirrored cutoff and predictions
    mirrored = youden_cutoff(-scores, labels, reduced_if="higher")
    assert mirrored["cutoff"] == pytest.approx(-1.9)
    np.testing.assert_array_equal(predict_with_cutoff(-scores, -1.9, reduced_if="higher"), pred)


def test_tie_in_j_goes_to_higher_specificity():
    scores = np.array([0.5, 1.0, 1.5, 2.2] + NORMAL)
    labels = np.array([1] * 4 + [0] * 4)
    # cutoff 1.75: sens 3/4, spec 1; cutoff 2.35: sens 1, spec 3/4; both J = 0.75
    res = youden_cutoff(scores, labels)
    assert res["cutoff"] == pytest.approx(1.75)
    assert res["specificity"] == pytest.approx(1.0)
    assert res["youden_j"] == pytest.approx(0.75)


def test_repeated_scores_and_perfect_separation():
    scores = np.array([1.0, 1.0, 1.2, 2.0, 2.0, 2.6])
    labels = np.array([1, 1, 1, 0, 0, 0])
    res = youden_cutoff(scores, labels)
    assert res["cutoff"] == pytest.approx(1.6)
    assert res["youden_j"] == pytest.approx(1.0)


def test_no_informative_cutoff_calls_nothing_reduced():
    scores = np.array([0.0, 1.0, 2.0, 3.0])
    labels = np.array([0, 0, 1, 1])  # reduced scans have *higher* SBR: J <= 0 everywhere
    res = youden_cutoff(scores, labels)
    assert res["youden_j"] == pytest.approx(0.0)
    assert res["cutoff"] == pytest.approx(-0.5)  # half the smallest gap below the lowest score
    assert predict_with_cutoff(scores, res["cutoff"]).sum() == 0


def test_input_errors():
    with pytest.raises(InputError, match="both 0"):
        youden_cutoff([1.0, 2.0], [1, 1])
    with pytest.raises(InputError, match="length"):
        youden_cutoff([1.0, 2.0, 3.0], [0, 1])
    with pytest.raises(InputError, match="NaN"):
        youden_cutoff([1.0, np.nan], [0, 1])
    with pytest.raises(InputError, match="reduced_if"):
        predict_with_cutoff([1.0], 0.5, reduced_if="smaller")
