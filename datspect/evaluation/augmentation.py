"""Beyond the study: does augmentation replace mixed training data?

Buddenkotte & Buchert (J Nucl Med 2024;65:1463) trained a CNN on homogeneous scans with strongly
unrealistic blur and noise augmentation and found it as robust on other sites as one trained on
varied data.  The ``augmented`` setting repeats that here: its CNNs see only original images,
degraded at random (``cnn.degrade``), and are selected on original validation images
(:data:`datspect.vocabulary.TRAINING_IMAGES`).

:func:`compare` sets its accuracy beside the CNNs of ``mixed`` (trained on both images of each
subject) and ``original``, image kind by image kind, paired over splits: on the development test
parts' original and smoothed images, at every level of the robustness curve (test scans with
extra FWHM), and on every independent cohort.  ``original`` models are tested on original images
only (the study's design), so they enter the rows of original images and of the robustness curve.
"""

from __future__ import annotations

import pandas as pd

from datspect.evaluation import stats
from datspect.io.tsv import require_columns

#: The setting under test and what it is compared with.
SETTING = "augmented"
BASELINES = ("mixed", "original")
COLUMNS = (
    "cohort",
    "images",
    "setting_a",
    "setting_b",
    "n_splits",
    "accuracy_a",
    "accuracy_b",
    "mean_diff",
    "p_ttest",
    "p_wilcoxon",
    "p_nadeau_bengio",
)


def accuracy_by_images(predictions: pd.DataFrame, development: str) -> pd.DataFrame:
    """CNN accuracy per (cohort, images, setting, split): the development test parts per image
    kind (``original``, ``smoothed``), each independent cohort over all its scans (``all``)."""
    require_columns(
        predictions,
        ["cohort", "image_setting", "label", "prediction", "method", "setting", "split"],
        "predictions",
    )
    cnn = predictions[predictions["method"] == "cnn"]
    images = cnn["image_setting"].where(cnn["cohort"] == development, "all")
    correct = (cnn["prediction"] == cnn["label"]).astype(float)
    table = correct.groupby([cnn["cohort"], images, cnn["setting"], cnn["split"]]).mean()
    return table.rename_axis(["cohort", "images", "setting", "split"]).rename("accuracy")


def robustness_accuracy(robustness: pd.DataFrame, development: str) -> pd.Series:
    """CNN accuracy per (cohort, images, setting, split) along the robustness curve
    (``images`` = ``fwhm-<mm>``)."""
    require_columns(
        robustness, ["fwhm", "method", "trained_setting", "split", "accuracy"], "robustness"
    )
    cnn = robustness[robustness["method"] == "cnn"]
    index = pd.MultiIndex.from_arrays(
        [
            [development] * len(cnn),
            [f"fwhm-{float(f):g}" for f in cnn["fwhm"]],
            cnn["trained_setting"],
            cnn["split"],
        ],
        names=["cohort", "images", "setting", "split"],
    )
    return pd.Series(cnn["accuracy"].to_numpy(dtype=float), index=index, name="accuracy")


def compare(
    predictions: pd.DataFrame,
    splits: pd.DataFrame,
    development: str,
    robustness: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``augmented`` against each baseline on every image kind both were tested on.

    Returns
    -------
    pandas.DataFrame
        :data:`COLUMNS`, one row per (cohort, images, baseline): mean accuracies over the splits
        both have, ``mean_diff`` = augmented - baseline and the paired t, Wilcoxon and
        Nadeau-Bengio p-values of :func:`datspect.evaluation.stats.paired_tests` (part sizes:
        the development training part against the scored subjects).
    """
    accuracy = accuracy_by_images(predictions, development)
    if robustness is not None and not robustness.empty:
        accuracy = pd.concat([accuracy, robustness_accuracy(robustness, development)])
    n_train, n_test = stats.part_sizes(splits, predictions, development)
    wide = accuracy.unstack("setting")
    rows = []
    for (cohort, images), table in wide.groupby(level=["cohort", "images"], sort=False):
        for baseline in BASELINES:
            if SETTING not in table or baseline not in table:
                continue
            both = table[[SETTING, baseline]].dropna()
            if both.empty:
                continue
            res = stats.paired_tests(
                both[SETTING], both[baseline], n_train=n_train, n_test=n_test[cohort]
            )
            rows.append(
                (
                    cohort,
                    images,
                    SETTING,
                    baseline,
                    len(both),
                    float(both[SETTING].mean()),
                    float(both[baseline].mean()),
                    *(res[c] for c in COLUMNS[7:]),
                )
            )
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return table.sort_values(
        ["cohort", "images"], key=lambda c: c.map(_order_key(development)), kind="stable"
    ).reset_index(drop=True)


def _order_key(development: str):
    """Development cohort first; its original, smoothed images, then the curve by FWHM."""

    def key(value: str):
        if value == development:
            return (0, 0.0)
        if value in ("original", "smoothed"):
            return (0, float(value == "smoothed"))
        if value.startswith("fwhm-"):
            return (1, float(value[len("fwhm-") :]))
        return (2, 0.0)

    return key


def gaps(table: pd.DataFrame, development: str, max_fwhm: float) -> dict[str, float]:
    """The target's three gaps, mixed minus augmented (positive: augmented is worse):
    ``smoothed`` (development smoothed test images), ``curve`` (the largest along the robustness
    curve up to ``max_fwhm``) and one per independent cohort; a gap that was not measured is
    absent."""
    rows = table[table["setting_b"] == "mixed"]
    out = {}
    dev = rows[rows["cohort"] == development]
    smoothed = dev.loc[dev["images"] == "smoothed", "mean_diff"]
    if len(smoothed):
        out["smoothed"] = -float(smoothed.iloc[0])
    curve = dev[dev["images"].str.startswith("fwhm-")]
    curve = curve[curve["images"].str[len("fwhm-") :].astype(float) <= max_fwhm]
    if len(curve):
        out["curve"] = -float(curve["mean_diff"].min())
    for row in rows[rows["cohort"] != development].itertuples():
        out[row.cohort] = -float(row.mean_diff)
    return out
