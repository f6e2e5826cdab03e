"""The results figures: accuracy bars, ROC curves, confusion matrices, the independent cohorts,
the robustness curve and the leave-one-camera-out curve.

The mean ROC over splits and the pooled confusion counts come from :mod:`datspect.evaluation`;
the bars' mean ± SD over splits is a groupby of the table they are given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from datspect.errors import InputError
from datspect.evaluation.roc import mean_roc
from datspect.evaluation.scoring import pooled_confusion
from datspect.figures.style import (
    DPI,
    METHOD_COLORS,
    METHOD_HATCHES,
    METHOD_MARKERS,
    SETTING_COLORS,
    new_figure,
    save,
    styled,
)
from datspect.io.tsv import cohort_rows, require_columns
from datspect.report.summary import STUDY_ACCURACY
from datspect.vocabulary import LABEL_NAMES, METHOD_NAMES, METHODS, SETTINGS, ordered

STUDY_LABEL = "study (mean ± SD)"
METRIC_NAMES = {
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "auc": "AUC",
}


@styled
def accuracy_bars(
    per_split: pd.DataFrame,
    out,
    *,
    study: Mapping[tuple[str, str], tuple[float, float]] = STUDY_ACCURACY,
    study_cohort: str,
    cohorts: Sequence[str] | None = None,
    dpi: int = DPI,
) -> Figure:
    """Accuracy (mean ± SD over splits) per method and setting, one panel per cohort.

    Parameters
    ----------
    per_split : pandas.DataFrame
        ``per_split.tsv``: at least ``cohort, method, setting, split, accuracy``.
    out : str or Path
        The PNG to write.
    study : mapping
        ``{(method, setting): (mean, sd)}`` of the study, drawn as black diamonds with error bars
        in the panel of ``study_cohort``.
    study_cohort : str
        The development cohort, which the study's values describe.
    cohorts : sequence of str, optional
        Panels, left to right; default the development cohort, then the others sorted.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require_columns(per_split, ["cohort", "method", "setting", "split", "accuracy"], "per_split")
    if per_split.empty:
        raise InputError("per_split: the table is empty; run the metrics step first")
    if cohorts is None:
        cohorts = ordered(per_split["cohort"], [study_cohort])
    stats = per_split.groupby(["cohort", "method", "setting"])["accuracy"].agg(
        ["mean", "std", "count"]
    )
    panels = [cohort_rows(per_split, c, "per_split") for c in cohorts]
    widths = [len(p.groupby(["method", "setting"])) + 1 for p in panels]
    fig = new_figure(max(5.0, 0.55 * sum(widths) + 1.5), 4.2)
    axes = fig.subplots(1, len(cohorts), sharey=True, squeeze=False, width_ratios=widths)[0]
    lows = []
    for ax, cohort, rows in zip(axes, cohorts, panels, strict=True):
        methods = ordered(rows["method"], METHODS)
        settings = ordered(rows["setting"], SETTINGS)
        width = 0.8 / len(settings)
        for i, method in enumerate(methods):
            for j, setting in enumerate(settings):
                if (cohort, method, setting) not in stats.index:
                    continue
                mean, sd, n = stats.loc[(cohort, method, setting)]
                sd = 0.0 if n < 2 else sd
                x = i + (j - (len(settings) - 1) / 2) * width
                ax.bar(
                    x,
                    mean,
                    width * 0.92,
                    yerr=sd,
                    capsize=3,
                    color=SETTING_COLORS.get(setting, "#56B4E9"),
                    label=setting,
                    error_kw={"elinewidth": 1.0},
                )
                lows.append(mean - sd)
                if cohort == study_cohort and (method, setting) in study:
                    s_mean, s_sd = study[(method, setting)]
                    # beside the bar's own SD bar, so the two error bars do not overlap
                    ax.errorbar(
                        x + 0.25 * width,
                        s_mean,
                        yerr=s_sd,
                        fmt="D",
                        color="black",
                        markersize=5,
                        capsize=2,
                        label=STUDY_LABEL,
                        zorder=3,
                    )
                    lows.append(s_mean - s_sd)
        n_splits = rows["split"].nunique()
        role = "development" if cohort == study_cohort else "independent"
        ax.set_title(f"{cohort} ({role}, {n_splits} splits)")
        ax.set_xticks(range(len(methods)), [METHOD_NAMES.get(m, m) for m in methods])
        ax.set_xlabel("Method")
    low = max(0.0, math.floor((min(lows) - 0.05) * 10) / 10)
    axes[0].set_ylim(low, 1.0)
    axes[0].set_ylabel("Accuracy (fraction correct)\nmean ± SD over splits")
    # One legend for all panels: the settings in canonical order, then the study's values.
    entries = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        entries.update(zip(labels, handles, strict=True))
    labels = ordered(set(entries) - {STUDY_LABEL}, SETTINGS)
    labels += [STUDY_LABEL] if STUDY_LABEL in entries else []
    fig.legend(
        [entries[k] for k in labels],
        labels,
        loc="outside lower center",
        ncols=len(labels),
        title="bars: training setting",
    )
    fig.suptitle("Test accuracy per method and training setting")
    save(fig, out, dpi)
    return fig


def _plot_mean_roc(ax, rows: pd.DataFrame, grid: np.ndarray, *, color, name, gid=None) -> None:
    """The mean ROC of ``rows`` over splits with a ± 1 SD band, labelled with its mean AUC."""
    roc = mean_roc(rows, grid)
    if roc is None:
        return
    label = f"{name}: AUC {roc.auc_mean:.3f} ± {roc.auc_sd:.3f}"
    ax.plot(roc.fpr, roc.tpr, color=color, linewidth=1.8, label=label, gid=gid)
    ax.fill_between(
        roc.fpr,
        np.clip(roc.tpr - roc.tpr_sd, 0, 1),
        np.clip(roc.tpr + roc.tpr_sd, 0, 1),
        color=color,
        alpha=0.15,
    )


@styled
def roc_curves(
    predictions: pd.DataFrame, out, cohort: str, *, grid_points: int = 201, dpi: int = DPI
) -> Figure:
    """ROC curves per method (panel) and setting (line) on one cohort's scored images.

    Each split's test ROC is averaged over splits (:func:`datspect.evaluation.roc.mean_roc`;
    the band is ± 1 SD).  The legend gives the AUC as mean ± SD over splits, the same numbers
    as ``per_split.tsv``.

    Parameters
    ----------
    predictions : pandas.DataFrame
        At least ``cohort, method, setting, split, label, score_reduced``.
    out : str or Path
        The PNG to write.
    cohort : str
        The cohort to plot.
    grid_points : int
        Points of the false-positive-rate grid.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    cols = ["cohort", "method", "setting", "split", "label", "score_reduced"]
    require_columns(predictions, cols, "predictions")
    rows = cohort_rows(predictions, cohort, "predictions")
    methods = ordered(rows["method"], METHODS)
    grid = np.linspace(0.0, 1.0, grid_points)
    fig = new_figure(max(4.5, 3.6 * len(methods)), 4.6)
    axes = fig.subplots(1, len(methods), sharey=True, squeeze=False)[0]
    for ax, method in zip(axes, methods, strict=True):
        ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="chance")
        by_method = rows[rows["method"] == method]
        for setting in ordered(by_method["setting"], SETTINGS):
            _plot_mean_roc(
                ax,
                by_method[by_method["setting"] == setting],
                grid,
                color=SETTING_COLORS.get(setting, "#56B4E9"),
                name=setting,
            )
        ax.set_title(METHOD_NAMES.get(method, method))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("False-positive rate\n(1 − specificity)")
        ax.legend(loc="lower right", title="trained on", framealpha=0.9)
    axes[0].set_ylabel("True-positive rate (sensitivity)")
    n_splits = rows["split"].nunique()
    fig.suptitle(f"ROC on cohort {cohort}: mean over {n_splits} splits (band ± 1 SD)")
    save(fig, out, dpi)
    return fig


@styled
def confusion_matrices(predictions: pd.DataFrame, out, cohort: str, *, dpi: int = DPI) -> Figure:
    """Confusion matrices (counts pooled over splits) per method (row) and setting (column).

    Cells show the count and its share of the true class; the colour is that share.

    Parameters
    ----------
    predictions : pandas.DataFrame
        At least ``cohort, method, setting, split, label, prediction``.
    out : str or Path
        The PNG to write.
    cohort : str
        The cohort to plot.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require_columns(predictions, ["split"], "predictions")
    counts = pooled_confusion(predictions, cohort)
    methods = ordered([m for m, _ in counts], METHODS)
    settings = ordered([s for _, s in counts], SETTINGS)
    fig = new_figure(max(5.0, 1.2 + 2.4 * len(settings)), 1.1 + 2.2 * len(methods))
    axes = fig.subplots(len(methods), len(settings), squeeze=False)
    image = None
    ticks = [LABEL_NAMES[0], LABEL_NAMES[1]]
    for i, method in enumerate(methods):
        for j, setting in enumerate(settings):
            ax = axes[i, j]
            if (method, setting) not in counts:
                ax.set_axis_off()
                continue
            cm = counts[(method, setting)]
            share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
            image = ax.imshow(share, cmap="cividis", vmin=0, vmax=1)
            for (r, c), n in np.ndenumerate(cm):
                # cividis is dark at 0 and light at 1: pick the readable text colour.
                color = "black" if share[r, c] > 0.5 else "white"
                ax.text(c, r, f"{n}\n({share[r, c]:.0%})", ha="center", va="center", color=color)
            ax.set_xticks([0, 1], ticks)
            ax.set_yticks([0, 1], ticks)
            ax.set_title(f"{METHOD_NAMES.get(method, method)}, {setting}")
            ax.set_xlabel("Predicted label")
            ax.set_ylabel("True label")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.7, label="Share of the true class")
    n_splits = cohort_rows(predictions, cohort, "predictions")["split"].nunique()
    fig.suptitle(
        f"Confusion matrices, cohort {cohort}\n(scored images pooled over {n_splits} splits)"
    )
    save(fig, out, dpi)
    return fig


@styled
def independent_results(
    per_split: pd.DataFrame,
    predictions: pd.DataFrame,
    out,
    *,
    cohorts: Sequence[str],
    development: str,
    setting: str = "mixed",
    grid_points: int = 201,
    dpi: int = DPI,
) -> Figure:
    """The independent cohorts scored by one setting's models: metrics (left) and ROC (right).

    Left: accuracy, sensitivity, specificity and AUC per method (bars: mean ± SD over splits);
    white diamonds give the same models on the development cohort's test parts, so the bars
    show what carries over to another camera and population.  Right: ROC per method, averaged
    over splits as in :func:`roc_curves`.  One row per independent cohort.

    Parameters
    ----------
    per_split : pandas.DataFrame
        ``per_split.tsv``: ``cohort, method, setting, split`` and the metric columns.
    predictions : pandas.DataFrame
        Scored images: ``cohort, method, setting, split, label, score_reduced``.
    out : str or Path
        The PNG to write.
    cohorts : sequence of str
        The independent cohorts (one row each).
    development : str
        The development cohort (its values are the diamonds).
    setting : str
        Whose models scored the independent cohorts (the study: ``mixed``).
    grid_points : int
        Points of the ROC's false-positive-rate grid.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
        Bars have the gid ``bars:<method>``, ROC lines ``roc:<method>``.
    """
    if not cohorts:
        raise InputError("cohorts: no independent cohort given; the figure needs at least one")
    metric_cols = list(METRIC_NAMES)
    require_columns(per_split, ["cohort", "method", "setting", "split", *metric_cols], "per_split")
    require_columns(predictions, ["cohort", "method", "setting", "split", "label"], "predictions")
    scored = per_split[per_split["setting"] == setting]
    stats = scored.groupby(["cohort", "method"])[metric_cols].agg(["mean", "std", "count"])
    grid = np.linspace(0.0, 1.0, grid_points)
    fig = new_figure(11.0, 0.9 + 4.2 * len(cohorts))
    axes = fig.subplots(len(cohorts), 2, squeeze=False, width_ratios=[1.5, 1.0])
    for row, cohort in enumerate(cohorts):
        rows = cohort_rows(scored, cohort, f"per_split ({setting} setting)")
        methods = ordered(rows["method"], METHODS)
        width = 0.8 / len(methods)
        ax = axes[row, 0]
        for i, method in enumerate(methods):
            x = np.arange(len(metric_cols)) + (i - (len(methods) - 1) / 2) * width
            mean = [stats.loc[(cohort, method), (m, "mean")] for m in metric_cols]
            n = stats.loc[(cohort, method), (metric_cols[0], "count")]
            sd = [stats.loc[(cohort, method), (m, "std")] if n > 1 else 0.0 for m in metric_cols]
            ax.bar(
                x,
                mean,
                width * 0.92,
                yerr=sd,
                capsize=3,
                color=METHOD_COLORS.get(method, "#999999"),
                hatch=METHOD_HATCHES.get(method, ""),
                edgecolor="white",
                label=METHOD_NAMES.get(method, method),
                error_kw={"elinewidth": 1.0, "ecolor": "black"},
                gid=f"bars:{method}",
            )
            if (development, method) in stats.index:
                dev = [stats.loc[(development, method), (m, "mean")] for m in metric_cols]
                ax.plot(
                    x,
                    dev,
                    "D",
                    markerfacecolor="white",
                    markeredgecolor="black",
                    markersize=5,
                    linestyle="none",
                    label=f"same models on the {development} test parts",
                    zorder=3,
                )
        ax.set_xticks(range(len(metric_cols)), [METRIC_NAMES[m] for m in metric_cols])
        ax.set_ylim(0, 1.0)
        ax.set_ylabel("Fraction (AUC: area)\nmean ± SD over splits")
        n_splits = rows["split"].nunique()
        ax.set_title(f"{cohort}: {setting}-trained models of {n_splits} splits")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        order = sorted(unique, key=lambda k: k.startswith("same models"))  # bars, then diamonds
        ax.legend(
            [unique[k] for k in order],
            order,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.1),
            ncols=len(order),
            frameon=False,
        )

        ax = axes[row, 1]
        ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="chance")
        images = predictions[
            (predictions["cohort"] == cohort) & (predictions["setting"] == setting)
        ]
        for method in ordered(images["method"], METHODS):
            _plot_mean_roc(
                ax,
                images[images["method"] == method],
                grid,
                color=METHOD_COLORS.get(method, "#999999"),
                name=METHOD_NAMES.get(method, method),
                gid=f"roc:{method}",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("False-positive rate (1 − specificity)")
        ax.set_ylabel("True-positive rate (sensitivity)")
        ax.set_title(f"ROC on {cohort}: mean over splits (band ± 1 SD)")
        ax.legend(loc="lower right", framealpha=0.9)
    fig.suptitle(f"Independent cohort{'s' if len(cohorts) > 1 else ''}: the models of every split")
    save(fig, out, dpi)
    return fig


@styled
def robustness_curve(
    table: pd.DataFrame,
    out,
    *,
    setting_fwhm_mm: float | None = None,
    dpi: int = DPI,
) -> Figure:
    """Test accuracy against extra smoothing of the test scans; one panel per training setting.

    Parameters
    ----------
    table : pandas.DataFrame
        ``robustness.tsv``: ``fwhm, method, trained_setting, split, accuracy``.
    out : str or Path
        The PNG to write.
    setting_fwhm_mm : float, optional
        The ``smoothed`` setting's extra FWHM, marked by a vertical line (the resolution the
        mixed-trained models have seen).
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
        One line per method (gid ``<setting>:<method>``): mean ± SD over splits.
    """
    require_columns(table, ["fwhm", "method", "trained_setting", "split", "accuracy"], "robustness")
    if table.empty:
        raise InputError("robustness: the table is empty; run the robustness rules first")
    settings = ordered(table["trained_setting"], SETTINGS)
    stats = table.groupby(["trained_setting", "method", "fwhm"])["accuracy"].agg(
        ["mean", "std", "count"]
    )
    levels = sorted(table["fwhm"].unique())
    fig = new_figure(max(5.0, 4.6 * len(settings)), 4.6)
    axes = fig.subplots(1, len(settings), sharey=True, squeeze=False)[0]
    for ax, setting in zip(axes, settings, strict=True):
        rows = table[table["trained_setting"] == setting]
        if setting_fwhm_mm is not None:
            ax.axvline(
                setting_fwhm_mm,
                color="#999999",
                linestyle=":",
                linewidth=1.2,
                label=f"smoothed setting ({setting_fwhm_mm:g} mm)",
            )
        methods = ordered(rows["method"], METHODS)
        for k, method in enumerate(methods):
            part = stats.loc[(setting, method)]
            sd = np.where(part["count"] > 1, part["std"].fillna(0.0), 0.0)
            # a small horizontal offset per method keeps overlapping error bars apart
            offset = (k - (len(methods) - 1) / 2) * 0.3
            ax.errorbar(
                part.index.to_numpy(dtype=float) + offset,
                part["mean"].to_numpy(dtype=float),
                yerr=sd,
                color=METHOD_COLORS.get(method, "#999999"),
                marker=METHOD_MARKERS.get(method, "o"),
                markersize=5,
                capsize=3,
                linewidth=1.6,
                label=METHOD_NAMES.get(method, method),
                gid=f"{setting}:{method}",
            )
        n_splits = rows["split"].nunique()
        ax.set_title(f"trained on {setting} ({n_splits} splits)")
        ax.set_xticks(levels, [f"{v:g}" for v in levels])
        ax.set_xlabel("Extra smoothing of the test scans, FWHM (mm)")
    low = float((stats["mean"] - stats["std"].fillna(0.0)).min())
    axes[0].set_ylim(max(0.0, math.floor((low - 0.05) * 10) / 10), 1.0)
    axes[0].set_ylabel("Test accuracy (fraction correct)\nmean ± SD over splits")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    fig.suptitle("Robustness to resolution: development test parts smoothed further")
    save(fig, out, dpi)
    return fig


@styled
def camera_curve(table: pd.DataFrame, out, *, dpi: int = DPI) -> Figure:
    """Leave-one-camera-out: accuracy against the number of training cameras; one panel per
    training setting.

    Parameters
    ----------
    table : pandas.DataFrame
        ``cameras.tsv`` (:func:`datspect.evaluation.cameras.camera_metrics`).
    out : str or Path
        The PNG to write.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
        Per method a solid line on the unseen cameras (gid ``<setting>:<method>:unseen``, mean
        ± SD over training sets, splits and cameras) and a dashed one on the training cameras'
        test parts (``...:seen``).
    """
    from datspect.evaluation.cameras import accuracy_by_k

    require_columns(table, ["method", "setting", "k", "seen", "accuracy"], "cameras")
    if table.empty:
        raise InputError("cameras: the table is empty; run the camera experiment first")
    stats = accuracy_by_k(table)
    settings = ordered(stats["setting"], SETTINGS)
    ks = sorted(stats["k"].unique())
    fig = new_figure(max(5.0, 4.6 * len(settings)), 4.6)
    axes = fig.subplots(1, len(settings), sharey=True, squeeze=False)[0]
    for ax, setting in zip(axes, settings, strict=True):
        rows = stats[stats["setting"] == setting]
        methods = ordered(rows["method"], METHODS)
        for i, method in enumerate(methods):
            color = METHOD_COLORS.get(method, "#999999")
            name = METHOD_NAMES.get(method, method)
            offset = (i - (len(methods) - 1) / 2) * 0.06
            for seen in (False, True):
                part = rows[(rows["method"] == method) & (rows["seen"] == seen)].sort_values("k")
                sd = np.where(part["n_tests"] > 1, part["sd"].fillna(0.0), 0.0)
                ax.errorbar(
                    part["k"].to_numpy(dtype=float) + offset,
                    part["mean"].to_numpy(dtype=float),
                    yerr=None if seen else sd,
                    color=color,
                    marker=METHOD_MARKERS.get(method, "o"),
                    markersize=4 if seen else 5,
                    capsize=3,
                    linewidth=1.0 if seen else 1.6,
                    linestyle="--" if seen else "-",
                    alpha=0.6 if seen else 1.0,
                    label=f"{name}, {'training cameras (test parts)' if seen else 'unseen camera'}",
                    gid=f"{setting}:{method}:{'seen' if seen else 'unseen'}",
                )
        ax.set_title(f"trained on {setting}")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("Number of training cameras (k)")
    low = float((stats["mean"] - stats["sd"].fillna(0.0)).min())
    axes[0].set_ylim(max(0.0, math.floor((low - 0.05) * 10) / 10), 1.0)
    axes[0].set_ylabel("Accuracy (fraction correct)\nmean ± SD over sets, splits, cameras")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False)
    fig.suptitle("Leave-one-camera-out: accuracy on cameras never seen in training")
    save(fig, out, dpi)
    return fig
