"""Paired-test table and the human-readable results/summary.md beside the study's figures."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from datspect.evaluation import augmentation, cameras, stats
from datspect.evaluation.scoring import mcnemar_column
from datspect.evaluation.splits import listing
from datspect.vocabulary import METHOD_NAMES, METHODS, SETTINGS

#: The study's development-cohort accuracies (mean, SD over 10 splits), design.md.
STUDY_ACCURACY = {
    ("sbr_aal", "original"): (0.957, 0.017),
    ("sbr_aal", "smoothed"): (0.952, 0.015),
    ("sbr_aal", "mixed"): (0.900, 0.029),
    ("cnn", "original"): (0.972, 0.014),
    ("cnn", "smoothed"): (0.955, 0.009),
    ("cnn", "mixed"): (0.967, 0.018),
}
#: The CNN trained on the real slabs themselves, for the sim-to-real sentence: the mixed setting
#: of configs/ppmi-slabs.yaml on the published PPMI slabs (test parts of 10 grouped splits), as
#: the README gives it ("Real data: the published PPMI slabs"); a figure of that run, not of this.
REAL_SLAB_CNN = {"accuracy": (0.976, 0.012), "auc": 0.997}
REAL_SLAB_CNN_SOURCE = (
    "configs/ppmi-slabs.yaml, mixed setting, test parts of 10 grouped splits of the 1,095 "
    "published PPMI slabs; README, “Real data: the published PPMI slabs”"
)
PAIRED_METRICS = ("accuracy", "balanced_accuracy", "auc")
SIGNIFICANCE = 0.01


def paired_table(
    per_split: pd.DataFrame, predictions: pd.DataFrame, splits: pd.DataFrame, development: str
) -> pd.DataFrame:
    """All paired comparisons for the main metrics, with a pooled exact McNemar column."""
    n_train, n_test = stats.part_sizes(splits, predictions, development)
    tables = [
        stats.comparisons(per_split, metric, n_train=n_train, n_test=n_test)
        for metric in PAIRED_METRICS
    ]
    paired = pd.concat(tables, ignore_index=True)
    paired["p_mcnemar"] = mcnemar_column(paired, predictions)
    return paired


def _fmt(mean: float, sd: float) -> str:
    return "–" if np.isnan(mean) else f"{mean:.3f} ± {sd:.3f}"


def _accuracy(summary: pd.DataFrame, cohort: str, method: str, setting: str):
    row = summary[
        (summary["cohort"] == cohort)
        & (summary["method"] == method)
        & (summary["setting"] == setting)
    ]
    if row.empty:
        return np.nan, np.nan
    return float(row["accuracy_mean"].iloc[0]), float(row["accuracy_sd"].iloc[0])


def _p(paired, cohort, method_a, setting_a, method_b, setting_b, metric="accuracy"):
    row = paired[
        (paired["cohort"] == cohort)
        & (paired["method_a"] == method_a)
        & (paired["setting_a"] == setting_a)
        & (paired["method_b"] == method_b)
        & (paired["setting_b"] == setting_b)
        & (paired["metric"] == metric)
    ]
    if row.empty:
        return None
    return row.iloc[0]


def _row(summary: pd.DataFrame, cohort: str, method: str, setting: str):
    rows = summary[
        (summary["cohort"] == cohort)
        & (summary["method"] == method)
        & (summary["setting"] == setting)
    ]
    return None if rows.empty else rows.iloc[0]


def kind_of(source: str) -> str:
    """What a cohort's images are, by its config ``source``: ``slab`` or ``3D``."""
    return "slab" if source == "slabs" else "3D"


def sbr_not_reported_line(
    development: str, sources: Mapping[str, str], cohorts: Iterable[str]
) -> str | None:
    """The one line saying which cohorts' SBRs no cutoff scored, and why; None if none.

    Cutoffs fitted on the development cohort's SBRs are a threshold on that measurement; a slab
    SBR (regions projected onto a 10 mm slab, in-slab reference) and a 3D SBR are different
    measurements, so cutoffs of one never score the other.
    """
    cohorts = list(cohorts)
    if not cohorts:
        return None
    dev_kind = kind_of(sources.get(development, "sheet"))
    names = ", ".join(f"`{c}`" for c in cohorts)
    kinds = "/".join(sorted({kind_of(sources.get(c, "sheet")) for c in cohorts}))
    return (
        f"SBR (sbr_aal, sbr_hv) not reported for {names}: the cutoffs are fitted on the "
        f"{dev_kind} SBRs of `{development}`, and {kinds} SBRs are a different measurement, so "
        "they are not scored with them (no rows in per_split.tsv or summary.tsv)."
    )


def sim_to_real_line(
    summary: pd.DataFrame, development: str, cohort: str, sources: Mapping[str, str]
) -> str | None:
    """The sim-to-real sentence: mixed-setting CNNs of a 3D development cohort on a slab cohort,
    beside the CNN trained on real slabs (:data:`REAL_SLAB_CNN`); None if not that case."""
    if kind_of(sources[development]) != "3D" or kind_of(sources[cohort]) != "slab":
        return None
    row = _row(summary, cohort, "cnn", "mixed")
    if row is None:
        return None
    trained = "simulated" if sources[development] == "simulate" else "3D"
    real_acc, real_sd = REAL_SLAB_CNN["accuracy"]
    return (
        f"Sim-to-real: the mixed-setting CNNs trained on the {trained} `{development}` cohort "
        f"score the real slabs of `{cohort}` with accuracy "
        f"{_fmt(row.accuracy_mean, row.accuracy_sd)}, sensitivity "
        f"{_fmt(row.sensitivity_mean, row.sensitivity_sd)}, specificity "
        f"{_fmt(row.specificity_mean, row.specificity_sd)} and AUC "
        f"{_fmt(row.auc_mean, row.auc_sd)} (mean ± SD over {int(row.n_splits)} splits, every "
        f"image); a CNN trained on real slabs reaches accuracy {real_acc:.3f} ± {real_sd:.3f} "
        f"and AUC {REAL_SLAB_CNN['auc']:.3f} ({REAL_SLAB_CNN_SOURCE}; not computed by this run)."
    )


def summary_markdown(
    summary: pd.DataFrame,
    paired: pd.DataFrame,
    development: str,
    *,
    sources: Mapping[str, str] | None = None,
    sbr_not_scored: Iterable[str] = (),
    uncertainty: pd.DataFrame | None = None,
    excluded: pd.DataFrame | None = None,
    augmentation: pd.DataFrame | None = None,
    smooth_fwhm_mm: float = 18.0,
    camera_table: pd.DataFrame | None = None,
) -> str:
    """The results side by side with the study and a verdict on its findings.

    Parameters
    ----------
    summary, paired : pandas.DataFrame
        ``summary.tsv`` and ``paired_tests.tsv``.
    development : str
        The development cohort.
    sources : mapping, optional
        Config ``source`` of every cohort (``simulate``, ``sheet``, ``slabs``); without it every
        cohort counts as 3D.  A slab cohort scored by a 3D development cohort's models gets the
        sim-to-real sentence (:func:`sim_to_real_line`).
    sbr_not_scored : iterable of str
        Independent cohorts whose SBRs no cutoff scored (:func:`sbr_not_reported_line`).
    uncertainty : pandas.DataFrame, optional
        ``uncertainty.tsv``: the inconclusive calls (:func:`uncertainty_lines`).
    excluded : pandas.DataFrame, optional
        ``results/qc/excluded.tsv``: the scans that failed QC (:func:`excluded_lines`).
    augmentation : pandas.DataFrame, optional
        ``augmentation.tsv``: the augmented setting against mixed (:func:`augmentation_line`,
        the robustness curve read up to ``smooth_fwhm_mm``).
    camera_table : pandas.DataFrame, optional
        ``cameras.tsv``: leave-one-camera-out (:func:`cameras_line`).
    """
    sources = {c: "sheet" for c in [development, *summary["cohort"]]} | dict(sources or {})
    cohorts = list(dict.fromkeys(summary["cohort"]))
    settings = [s for s in SETTINGS if s in set(summary["setting"])]
    methods = [m for m in METHODS if m in set(summary["method"])]
    lines = [
        "# Results",
        "",
        f"Accuracy on the test parts of the `{development}` cohort, mean ± SD over "
        f"{int(summary['n_splits'].max())} splits; the study's figures in brackets.",
    ]

    def accuracy_cell(method, setting):
        ours = _fmt(*_accuracy(summary, development, method, setting))
        study = STUDY_ACCURACY.get((method, setting))
        return ours + (f" [{study[0]:.3f} ± {study[1]:.3f}]" if study else "")

    lines += _method_setting_table(methods, settings, accuracy_cell)
    lines += _calibration_lines(summary, development, methods, settings)
    if uncertainty is not None:
        lines += uncertainty_lines(uncertainty, development, methods, settings)
    for cohort in cohorts:
        if cohort == development:
            continue
        lines += ["", f"Independent cohort `{cohort}` (mixed-setting models, all scans):", ""]
        # a robust setting beside mixed (augmented) is named in its rows
        lines += [
            "| method | accuracy | sensitivity | specificity | AUC |",
            "|---|---|---|---|---|",
        ]
        for row in summary[summary["cohort"] == cohort].itertuples():
            name = row.method if row.setting == "mixed" else f"{row.method} ({row.setting})"
            lines.append(
                f"| {name} | {_fmt(row.accuracy_mean, row.accuracy_sd)} | "
                f"{_fmt(row.sensitivity_mean, row.sensitivity_sd)} | "
                f"{_fmt(row.specificity_mean, row.specificity_sd)} | "
                f"{_fmt(row.auc_mean, row.auc_sd)} |"
            )
        sentence = sim_to_real_line(summary, development, cohort, sources)
        if sentence:
            lines += ["", sentence]
    note = sbr_not_reported_line(development, sources, sbr_not_scored)
    if note:
        lines += ["", note]
    if excluded is not None:
        lines += excluded_lines(excluded)
    lines += ["", "## The study's findings on this run", ""]
    lines += _verdicts(summary, paired, development, cohorts)
    if augmentation is not None and not augmentation.empty:
        lines.append(augmentation_line(augmentation, development, smooth_fwhm_mm))
    if camera_table is not None and not camera_table.empty:
        lines.append(cameras_line(camera_table))
    lines += [
        "",
        "p-values come from paired tests over splits whose test parts overlap, so the paired "
        "t-test and Wilcoxon p-values are optimistic (the study used the same design); "
        "`p_nadeau_bengio` in paired_tests.tsv is the corrected resampled t-test.",
        "",
    ]
    return "\n".join(lines)


def _calibration_lines(summary, development, methods, settings) -> list[str]:
    """ECE and Brier score of the calibrated P(reduced) per method and setting, if measured."""
    if "ece_mean" not in summary or summary["ece_mean"].isna().all():
        return []
    lines = [
        "",
        "Calibration of P(reduced) on the same test parts: ECE / Brier score, mean over "
        "splits (CNN: calibrated on each split's validation part; SBR: logistic fit on the "
        "training part).",
    ]

    def calibration_cell(method, setting):
        row = _row(summary, development, method, setting)
        ok = row is not None and not np.isnan(row["ece_mean"])
        return f"{row['ece_mean']:.3f} / {row['brier_mean']:.3f}" if ok else "–"

    return lines + _method_setting_table(methods, settings, calibration_cell)


def uncertainty_lines(table: pd.DataFrame, development: str, methods, settings) -> list[str]:
    """The inconclusive calls: per method and setting on the development test parts (mean over
    splits), and the split ensemble on each independent cohort."""
    if table.empty:
        return []
    dev = table[(table["cohort"] == development) & (table["split"].astype(str) != "ensemble")]
    lines = [
        "",
        "Inconclusive calls on the same test parts (bands chosen on each split's validation "
        "part): share flagged / accuracy on the conclusive scans / share of errors flagged, "
        "mean over splits (errors: splits with any).",
    ]

    def cell(method, setting):
        rows = dev[(dev["method"] == method) & (dev["setting"] == setting)]
        if rows.empty:
            return "–"
        caught = rows["share_errors_flagged"].dropna()
        caught_text = f"{caught.mean():.2f}" if len(caught) else "no errors"
        return (
            f"{rows['share_flagged'].mean():.3f} / {rows['accuracy_conclusive'].mean():.3f} / "
            f"{caught_text}"
        )

    lines += _method_setting_table(methods, settings, cell)
    ensemble = table[table["split"].astype(str) == "ensemble"]
    for row in ensemble.itertuples():
        caught = (
            f"{row.n_errors_flagged} of its {row.n_errors} errors" if row.n_errors else "no errors"
        )
        lines += [
            "",
            f"The {row.method} split ensemble on `{row.cohort}` (as `classify` calls it) flags "
            f"{row.n_flagged} of {row.n} scans ({row.share_flagged:.1%}), with {caught}; "
            f"accuracy {row.accuracy:.3f} on all, {row.accuracy_conclusive:.3f} on the "
            "conclusive scans.",
        ]
    return lines


def _method_setting_table(methods, settings, cell) -> list[str]:
    """A markdown table, a row per method and a column per setting, after a blank line."""
    lines = ["", "| method | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(cell(method, s) for s in settings) + " |")
    return lines


def _verdicts(summary, paired, development, cohorts) -> list[str]:
    out = []
    row = _p(paired, development, "sbr_aal", "original", "sbr_aal", "mixed")
    if row is not None:
        holds = row.mean_diff > 0 and row.p_ttest < SIGNIFICANCE
        out.append(
            f"- AAL-SBR accuracy drops in the mixed setting (original − mixed = "
            f"{row.mean_diff:+.3f}, paired t p = {row.p_ttest:.2g}, Nadeau–Bengio p = "
            f"{row.p_nadeau_bengio:.2g}): **{'holds' if holds else 'does not hold'}** "
            f"(study: drop with p < {SIGNIFICANCE})."
        )
    cnn_orig = _accuracy(summary, development, "cnn", "original")[0]
    cnn_mixed = _accuracy(summary, development, "cnn", "mixed")[0]
    aal_mixed = _accuracy(summary, development, "sbr_aal", "mixed")[0]
    if not np.isnan(cnn_mixed):
        holds = abs(cnn_mixed - cnn_orig) <= 0.015
        out.append(
            f"- CNN mixed within 0.015 of CNN original ({cnn_mixed:.3f} vs {cnn_orig:.3f}): "
            f"**{'holds' if holds else 'does not hold'}**."
        )
        holds = cnn_mixed >= aal_mixed + 0.04
        out.append(
            f"- CNN mixed ≥ AAL-SBR mixed + 0.04 ({cnn_mixed:.3f} vs {aal_mixed:.3f}): "
            f"**{'holds' if holds else 'does not hold'}**."
        )
        for cohort in cohorts:
            if cohort == development:
                continue
            cnn = _accuracy(summary, cohort, "cnn", "mixed")[0]
            sbr = _accuracy(summary, cohort, "sbr_aal", "mixed")[0]
            if np.isnan(cnn) or np.isnan(sbr):  # e.g. SBRs not scored (another measurement)
                continue
            holds = cnn > sbr
            out.append(
                f"- `{cohort}`: mixed-trained CNN beats mixed-trained AAL-SBR cutoffs "
                f"({cnn:.3f} vs {sbr:.3f}): **{'holds' if holds else 'does not hold'}**."
            )
    return out or ["- (no comparisons available in this run)"]


def augmentation_line(table: pd.DataFrame, development: str, max_fwhm: float) -> str:
    """Beyond the study: the augmented CNN within 0.01 of the mixed CNN (issue 18's target) on
    the smoothed test images, along the robustness curve up to ``max_fwhm`` and on each
    independent cohort."""
    gaps = augmentation.gaps(table, development, max_fwhm)
    names = {"smoothed": "smoothed test images", "curve": f"robustness curve to {max_fwhm:g} mm"}
    parts = [f"{names.get(k, f'`{k}`')} {v:+.4f}" for k, v in gaps.items()]
    holds = all(v <= 0.01 for v in gaps.values())
    return (
        "- beyond the study: the augmented CNN (original images, random blur and noise) within "
        f"0.01 of the mixed CNN (mixed − augmented: {', '.join(parts)}; augmentation.tsv): "
        f"**{'holds' if holds else 'does not hold'}**."
    )


#: Issue 18's targets on an unseen camera: the CNN trained on >= 2 cameras reaches this...
CAMERA_CNN_TARGET = 0.95
#: ...while the training cameras' SBR cutoffs lose at least this there (the study's pattern).
CAMERA_SBR_LOSS = 0.04


def cameras_line(table: pd.DataFrame) -> str:
    """Beyond the study, the study's open hypothesis (one CNN for sites with other cameras):
    accuracy on cameras never seen in training of the models trained on >= 2 cameras (on 1
    where the run has no larger k), per method and setting, against their training cameras'
    test parts; the verdict reads the mixed CNN, the study's robust model, and the mixed SBR
    cutoffs."""
    min_k = 2 if (table["k"] >= 2).any() else int(table["k"].min())
    means = cameras.unseen_from(table, min_k)
    means = means.assign(order=[SETTINGS.index(s) for s in means["setting"]])
    means = means.sort_values(["order", "method"])
    cnn = means[means["method"] == "cnn"]
    sbr = means[(means["method"] != "cnn") & (means["setting"] == "mixed")]
    cnn_text = ", ".join(f"{r.setting} {r.unseen:.3f}" for r in cnn.itertuples())
    sbr_text = ", ".join(
        f"{METHOD_NAMES[r.method]} {r.unseen:.3f} vs {r.seen:.3f} (loss {r.loss:+.3f})"
        for r in sbr.itertuples()
    )
    mixed = cnn.loc[cnn["setting"] == "mixed", "unseen"]
    holds = (
        not mixed.empty
        and float(mixed.iloc[0]) >= CAMERA_CNN_TARGET
        and not sbr.empty
        and bool((sbr["loss"] >= CAMERA_SBR_LOSS).all())
    )
    n_cameras = table["camera"].nunique()
    return (
        f"- beyond the study, cameras never seen in training (leave-one-camera-out over "
        f"{n_cameras} cameras, models trained on ≥ {min_k}; cameras.tsv): CNN {cnn_text or '—'}; "
        f"mixed SBR cutoffs on the unseen vs their training cameras: {sbr_text or '—'}. "
        f"One CNN for many sites (mixed CNN ≥ {CAMERA_CNN_TARGET:.2f} on unseen cameras while "
        f"the cutoffs lose ≥ {CAMERA_SBR_LOSS:.2f}): **{'holds' if holds else 'does not hold'}**."
    )


def _what_became(excluded: pd.DataFrame) -> str:
    if (excluded["action"] == "kept").all():
        return "were used anyway (qc.on_fail: keep)"
    return (
        "were left out of the splits, the SBR cutoffs, CNN training and scoring, and so of "
        "every metric (qc.on_fail: exclude)"
    )


def excluded_lines(excluded: pd.DataFrame) -> list[str]:
    """The summary's table of the scans that failed normalization QC (none: no lines)."""
    if excluded.empty:
        return []
    lines = [
        "",
        "## Scans that failed normalization QC",
        "",
        f"{len(excluded)} scan(s) {_what_became(excluded)}; their QC values are in "
        "results/qc/normalization.tsv.",
        "",
        "| cohort | subject | flags |",
        "|---|---|---|",
    ]
    return lines + [f"| {r.cohort} | {r.subject_id} | {r.flags} |" for r in excluded.itertuples()]


def excluded_console_line(excluded: pd.DataFrame) -> str | None:
    """The line a finished run prints about the scans that failed QC (none: None)."""
    if excluded.empty:
        return None
    return (
        f"datspect: {len(excluded)} scan(s) failed normalization QC and {_what_became(excluded)}: "
        f"{listing(excluded)}; results/qc/excluded.tsv and results/summary.md list them"
    )
