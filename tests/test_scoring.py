"""Summaries of the predictions over splits: mean SBR cutoffs and pooled confusion counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from datspect.errors import InputError
from datspect.evaluation.scoring import mean_cutoffs, pooled_confusion


def _predictions():
    """Two cohorts scored by sbr_aal (mixed: 3 splits, original: 1) and the CNN (no cutoff)."""
    rows = []
    for setting, splits in (("mixed", (0, 1, 2)), ("original", (0,))):
        for split in splits:
            cohorts = ("ppmi", "clinical") if setting == "mixed" else ("ppmi",)
            for cohort in cohorts:
                for label, prediction in ((0, 0), (0, 1), (1, 1)):
                    rows.append(
                        {
                            "cohort": cohort,
                            "method": "sbr_aal",
                            "setting": setting,
                            "split": split,
                            "label": label,
                            "prediction": prediction,
                            "cutoff": 1.5 + 0.1 * split,
                        }
                    )
                    rows.append(rows[-1] | {"method": "cnn", "cutoff": np.nan})
    return pd.DataFrame(rows)


def test_mean_cutoffs_count_each_split_once():
    table = mean_cutoffs(_predictions(), "sbr_aal")
    assert table.index.tolist() == ["original", "mixed"]  # the canonical order
    assert table.loc["mixed", "mean"] == pytest.approx(1.6)
    assert table.loc["mixed", "sd"] == pytest.approx(0.1)
    assert table["n_splits"].tolist() == [1, 3]
    assert table.loc["original", "sd"] == 0.0  # one split: no spread
    with pytest.raises(InputError, match="no cutoffs for method 'cnn'"):
        mean_cutoffs(_predictions(), "cnn")
    with pytest.raises(InputError, match="missing column"):
        mean_cutoffs(_predictions().drop(columns="cutoff"))


def test_pooled_confusion_sums_over_splits():
    counts = pooled_confusion(_predictions(), "clinical")
    assert set(counts) == {("sbr_aal", "mixed"), ("cnn", "mixed")}
    # per split: one true negative, one false positive, one true positive; 3 splits
    np.testing.assert_array_equal(counts[("cnn", "mixed")], [[3, 3], [0, 3]])
    assert pooled_confusion(_predictions(), "ppmi")[("sbr_aal", "original")].sum() == 3
    with pytest.raises(InputError, match="no rows for cohort 'elsewhere'"):
        pooled_confusion(_predictions(), "elsewhere")
    with pytest.raises(InputError, match="missing column"):
        pooled_confusion(_predictions().drop(columns="prediction"), "ppmi")
