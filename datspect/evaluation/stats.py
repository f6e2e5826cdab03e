"""Paired comparisons of methods and settings across the repeated splits.

Three tests of the per-split differences ``d_j = a_j - b_j`` (j = 1..J splits):

* paired t-test (``scipy.stats.ttest_rel``), as the study reported;
* Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero differences dropped);
* the corrected resampled t-test of Nadeau & Bengio (2003, Machine Learning 52:239): random
  splits share training and test data, so the naive variance ``s^2 / J`` understates the
  variance of the mean difference; it is inflated to ``(1/J + n_test/n_train) s^2``, with
  ``t = mean(d) / sqrt((1/J + n_test/n_train) s^2)`` on ``J - 1`` degrees of freedom.

When every difference is zero there is no evidence of a difference and all three p-values are
1.0 (scipy would return NaN or fail).  When the differences are a non-zero constant the t-tests
give p = 0 (infinite t).

:func:`mcnemar_exact` compares two classifiers on the same, pooled test images.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from datspect.errors import InputError
from datspect.vocabulary import METHODS, SBR_COLUMN, ordered

#: Setting pairs (a, b) compared within each method; ``mean_diff`` is a - b.  ``augmented`` is
#: compared with ``mixed`` only: they are tested on the same images (both images of each test
#: subject), the other settings on one image each (datspect/evaluation/augmentation.py compares
#: it with ``original`` image by image).
SETTING_PAIRS = (
    ("original", "mixed"),
    ("smoothed", "mixed"),
    ("original", "smoothed"),
    ("augmented", "mixed"),
)
#: Order of methods in comparisons, the CNN before the SBR methods; pairs are (earlier, later),
#: so differences read as cnn - sbr.
METHOD_ORDER = tuple(sorted(METHODS, key=lambda method: method in SBR_COLUMN))
COLUMNS = (
    "cohort",
    "method_a",
    "setting_a",
    "method_b",
    "setting_b",
    "metric",
    "mean_diff",
    "p_ttest",
    "p_wilcoxon",
    "p_nadeau_bengio",
)


def _t_p(t: float, df: int) -> float:
    return float(2.0 * stats.t.sf(abs(t), df))


def paired_tests(a, b, *, n_train: int, n_test: int) -> dict[str, float]:
    """Paired t, Wilcoxon and Nadeau-Bengio corrected t-test of ``a`` against ``b``.

    Parameters
    ----------
    a, b : array_like of float
        The same metric for two methods/settings, one value per split, paired by position.
    n_train, n_test : int
        Sizes of the training and test parts (images) behind each value, for the
        Nadeau-Bengio correction.

    Returns
    -------
    dict
        ``mean_diff`` (mean of a - b), ``p_ttest``, ``p_wilcoxon``, ``p_nadeau_bengio``
        (two-sided).  p-values are NaN with fewer than two pairs.

    Raises
    ------
    InputError
        Mismatched lengths, non-finite values or non-positive part sizes.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise InputError(f"a and b must pair up one value per split ({x.size} vs {y.size})")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InputError("a, b: contain NaN/inf; drop the splits where the metric is undefined")
    if not (n_train > 0 and n_test > 0):
        raise InputError(f"n_train ({n_train!r}) and n_test ({n_test!r}) must be positive")
    d = x - y
    j = d.size
    out = {"mean_diff": float(d.mean()) if j else np.nan}
    if j < 2:
        return out | {"p_ttest": np.nan, "p_wilcoxon": np.nan, "p_nadeau_bengio": np.nan}
    if np.all(d == 0):
        return out | {"p_ttest": 1.0, "p_wilcoxon": 1.0, "p_nadeau_bengio": 1.0}
    var = d.var(ddof=1)
    mean = d.mean()
    if var == 0:  # constant non-zero difference: t is infinite
        p_t = p_nb = 0.0
    else:
        p_t = float(stats.ttest_rel(x, y).pvalue)
        p_nb = _t_p(mean / np.sqrt((1.0 / j + n_test / n_train) * var), j - 1)
    return out | {
        "p_ttest": p_t,
        "p_wilcoxon": float(stats.wilcoxon(x, y, zero_method="wilcox").pvalue),
        "p_nadeau_bengio": p_nb,
    }


def mcnemar_exact(correct_a, correct_b) -> dict[str, float]:
    """Exact two-sided McNemar test on paired correct/incorrect calls of two classifiers.

    Parameters
    ----------
    correct_a, correct_b : array_like of bool
        Whether classifier a / b classified each test image correctly (same images, same order;
        pool the test parts of all splits for one overall test).

    Returns
    -------
    dict
        ``n01`` (a wrong, b right), ``n10`` (a right, b wrong) and ``p_mcnemar``: the two-sided
        exact binomial p-value of ``n10`` in ``n01 + n10`` trials at 0.5 (1.0 without
        discordant pairs).
    """
    ca = np.asarray(correct_a).ravel()
    cb = np.asarray(correct_b).ravel()
    if ca.shape != cb.shape:
        raise InputError(f"correct_a and correct_b differ in length ({ca.size} vs {cb.size})")
    if not (np.isin(ca, (0, 1)).all() and np.isin(cb, (0, 1)).all()):
        raise InputError("correct_a, correct_b: must be booleans (or 0/1)")
    ca, cb = ca.astype(bool), cb.astype(bool)
    n01 = int(np.sum(~ca & cb))
    n10 = int(np.sum(ca & ~cb))
    p = 1.0 if n01 + n10 == 0 else float(stats.binomtest(n10, n01 + n10, 0.5).pvalue)
    return {"n01": n01, "n10": n10, "p_mcnemar": p}


def _per_cohort(value, cohort: str, name: str) -> int:
    if isinstance(value, Mapping):
        if cohort not in value:
            raise InputError(f"{name}: no value for cohort {cohort!r}; give one per cohort")
        return value[cohort]
    return value


def comparisons(
    per_split: pd.DataFrame,
    metric: str = "accuracy",
    *,
    n_train,
    n_test,
    setting_pairs=SETTING_PAIRS,
) -> pd.DataFrame:
    """Paired tests between settings (within each method) and methods (within each setting).

    Parameters
    ----------
    per_split : pandas.DataFrame
        Rows of ``per_split.tsv`` (``cohort, method, setting, split`` and ``metric``).
    metric : str
        Column compared.
    n_train, n_test : int or mapping of cohort -> int
        Part sizes for the Nadeau-Bengio correction (:func:`paired_tests`).
    setting_pairs : sequence of (str, str)
        Setting pairs compared within each method (default :data:`SETTING_PAIRS`).

    Returns
    -------
    pandas.DataFrame
        One row per comparison with columns :data:`COLUMNS`; ``mean_diff`` = a - b over the
        splits both have (paired on ``split``); splits where either value is NaN are dropped.
        Comparisons whose two sides are not both present are skipped.
    """
    need = ["cohort", "method", "setting", "split", metric]
    missing = [c for c in need if c not in per_split.columns]
    if missing:
        raise InputError(f"per_split: missing column(s) {missing} for metric {metric!r}")
    rows = []
    for cohort, sub in per_split.groupby("cohort", sort=True):
        ntr = _per_cohort(n_train, cohort, "n_train")
        nte = _per_cohort(n_test, cohort, "n_test")
        present = set(zip(sub["method"], sub["setting"], strict=True))
        methods = ordered(sub["method"].unique(), METHOD_ORDER)
        pairs = [((m, sa), (m, sb)) for m in methods for sa, sb in setting_pairs]
        settings = [s for pair in setting_pairs for s in pair]
        settings += sorted(set(sub["setting"]) - set(settings))
        for s in dict.fromkeys(settings):
            pairs += [((ma, s), (mb, s)) for ma, mb in itertools.combinations(methods, 2)]
        for side_a, side_b in pairs:
            if side_a not in present or side_b not in present:
                continue
            va = _values(sub, side_a, metric)
            vb = _values(sub, side_b, metric)
            both = pd.concat([va, vb], axis=1, join="inner").dropna()
            res = paired_tests(both.iloc[:, 0], both.iloc[:, 1], n_train=ntr, n_test=nte)
            rows.append((cohort, *side_a, *side_b, metric, *(res[c] for c in COLUMNS[6:])))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _values(sub: pd.DataFrame, side: tuple[str, str], metric: str) -> pd.Series:
    method, setting = side
    rows = sub[(sub["method"] == method) & (sub["setting"] == setting)]
    if rows["split"].duplicated().any():
        raise InputError(f"per_split: split listed twice for {method}/{setting}; keep one row")
    return rows.set_index("split")[metric]


def part_sizes(splits: pd.DataFrame, predictions: pd.DataFrame, development: str):
    """Subjects in the training part and in each cohort's scored set (for Nadeau-Bengio)."""
    first = splits[splits["split"] == splits["split"].min()]
    n_train = int((first["part"] == "train").sum())
    n_test = {development: int((first["part"] == "test").sum())}
    for cohort, rows in predictions.groupby("cohort"):
        n_test.setdefault(cohort, int(rows["subject_id"].nunique()))
    return n_train, n_test
