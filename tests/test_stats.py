"""Paired tests against values computed by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from datspect.errors import InputError
from datspect.evaluation.stats import COLUMNS, comparisons, mcnemar_exact, paired_tests

B = np.array([0.88, 0.94, 0.93, 0.93, 0.90])
D = np.array([0.02, 0.01, 0.04, -0.005, 0.03])  # distinct |d|: exact Wilcoxon, no ties
A = B + D


def test_paired_t_and_nadeau_bengio_by_hand():
    res = paired_tests(A, B, n_train=60, n_test=20)
    d = A - B
    mean, var, j = d.mean(), d.var(ddof=1), len(d)
    t = mean / np.sqrt(var / j)
    t_nb = mean / np.sqrt((1 / j + 20 / 60) * var)
    assert res["mean_diff"] == pytest.approx(0.019)
    assert res["p_ttest"] == pytest.approx(2 * sps.t.sf(abs(t), j - 1))
    assert res["p_nadeau_bengio"] == pytest.approx(2 * sps.t.sf(abs(t_nb), j - 1))
    assert res["p_nadeau_bengio"] > res["p_ttest"]  # the correction only widens


def test_wilcoxon_exact_by_hand():
    # ranks of |d|: 0.005 -> 1 (negative), others 2..5 positive; W- = 1.
    # Of the 2^5 sign patterns, W- <= 1 in 2 (W- = 0 and W- = 1): p = 2 * 2 / 32
    assert paired_tests(A, B, n_train=60, n_test=20)["p_wilcoxon"] == pytest.approx(4 / 32)


def test_all_zero_and_constant_differences():
    same = paired_tests(B, B, n_train=60, n_test=20)
    assert same == {"mean_diff": 0.0, "p_ttest": 1.0, "p_wilcoxon": 1.0, "p_nadeau_bengio": 1.0}
    shifted = paired_tests(np.arange(5) + 1.0, np.arange(5.0), n_train=60, n_test=20)
    assert shifted["p_ttest"] == 0.0 and shifted["p_nadeau_bengio"] == 0.0
    # all five signs positive: 1 of 32 patterns, doubled for two sides
    assert shifted["p_wilcoxon"] == pytest.approx(2 / 32)
    with pytest.raises(InputError, match="NaN"):
        paired_tests([0.9, np.nan], [0.9, 0.8], n_train=60, n_test=20)
    with pytest.raises(InputError, match="pair up"):
        paired_tests([0.9, 0.8, 0.7], [0.9, 0.8], n_train=60, n_test=20)


def test_mcnemar_exact_by_hand():
    # a right / b wrong on 6 images, a wrong / b right on 1, 10 concordant
    correct_a = [True] * 6 + [False] + [True] * 5 + [False] * 5
    correct_b = [False] * 6 + [True] + [True] * 5 + [False] * 5
    res = mcnemar_exact(correct_a, correct_b)
    assert (res["n01"], res["n10"]) == (1, 6)
    by_hand = 2 * sum(math.comb(7, k) for k in range(2)) / 2**7
    assert res["p_mcnemar"] == pytest.approx(by_hand)
    assert mcnemar_exact([True, False], [True, False])["p_mcnemar"] == 1.0


def _per_split():
    rng = np.random.default_rng(0)
    rows = []
    for method, base in (("sbr_aal", 0.93), ("cnn", 0.96)):
        for setting, shift in (("original", 0.02), ("smoothed", 0.01), ("mixed", -0.03)):
            for split in range(6):
                acc = base + shift + rng.normal(0, 0.01)
                rows.append(("ppmi", method, setting, split, acc))
    for method, acc in (("sbr_aal", 0.85), ("cnn", 0.93)):
        rows += [("clinical", method, "mixed", s, acc + 0.01 * s) for s in range(6)]
    return pd.DataFrame(rows, columns=["cohort", "method", "setting", "split", "accuracy"])


def test_comparisons_pairs_and_values():
    df = _per_split()
    out = comparisons(
        df, n_train={"ppmi": 387, "clinical": 387}, n_test={"ppmi": 129, "clinical": 298}
    )
    assert list(out.columns) == list(COLUMNS)
    ppmi = out[out["cohort"] == "ppmi"]
    # 3 setting pairs x 2 methods + 1 method pair x 3 settings
    assert len(ppmi) == 9
    cols = ["method_a", "setting_a", "method_b", "setting_b"]
    pairs = set(ppmi[cols].itertuples(index=False, name=None))
    assert ("sbr_aal", "original", "sbr_aal", "mixed") in pairs
    assert ("cnn", "smoothed", "sbr_aal", "smoothed") in pairs
    clinical = out[out["cohort"] == "clinical"]
    assert len(clinical) == 1 and clinical.iloc[0]["mean_diff"] == pytest.approx(0.08)
    row = ppmi[(ppmi["method_a"] == "sbr_aal") & (ppmi["setting_b"] == "mixed")]
    row = row[row["setting_a"] == "original"].iloc[0]
    a = df[(df.cohort == "ppmi") & (df.method == "sbr_aal") & (df.setting == "original")]
    b = df[(df.cohort == "ppmi") & (df.method == "sbr_aal") & (df.setting == "mixed")]
    expected = paired_tests(a["accuracy"], b["accuracy"], n_train=387, n_test=129)
    for key, value in expected.items():
        assert row[key] == pytest.approx(value)
    # pairing is on `split`, not on row order
    shuffled = comparisons(df.sample(frac=1.0, random_state=2), n_train=387, n_test=129)
    ppmi_shuffled = shuffled[shuffled["cohort"] == "ppmi"].reset_index(drop=True)
    pd.testing.assert_frame_equal(ppmi_shuffled, ppmi.reset_index(drop=True))


def test_comparisons_drop_nan_splits_and_check_columns():
    df = _per_split()
    df.loc[0, "accuracy"] = np.nan  # ppmi sbr_aal original split 0
    out = comparisons(df, n_train=387, n_test=129)
    row = out[(out["setting_a"] == "original") & (out["setting_b"] == "mixed")]
    row = row[row["method_a"] == "sbr_aal"].iloc[0]
    a = df[(df.cohort == "ppmi") & (df.method == "sbr_aal") & (df.setting == "original")]
    b = df[(df.cohort == "ppmi") & (df.method == "sbr_aal") & (df.setting == "mixed")]
    assert row["mean_diff"] == pytest.approx(
        a["accuracy"].iloc[1:].mean() - b["accuracy"].iloc[1:].mean()
    )
    with pytest.raises(InputError, match="auc"):
        comparisons(df, metric="auc", n_train=387, n_test=129)
    with pytest.raises(InputError, match="cohort 'clinical'"):
        comparisons(df, n_train={"ppmi": 387}, n_test=129)
