"""The reliability diagram (calibrated P(reduced) against the observed share of reduced scans)
and the accuracy-vs-coverage figure of the inconclusive calls.

The bins and the ECE come from :mod:`datspect.evaluation.calibration`, so the figure shows the
quantity ``per_split.tsv`` reports (here of the test parts pooled over splits).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from datspect.evaluation.calibration import expected_calibration_error, reliability_bins
from datspect.evaluation.uncertainty import coverage_curve
from datspect.figures.style import DPI, METHOD_COLORS, METHOD_MARKERS, new_figure, save, styled
from datspect.io.tsv import cohort_rows, require_columns
from datspect.vocabulary import METHOD_NAMES, METHODS, SETTINGS, ordered

#: The uncalibrated CNN, drawn dashed beside its calibrated curve.
RAW = "p_reduced_raw"


def _curve(ax, labels, p, n_bins, *, color, marker, label, linestyle="-", gid=None) -> str:
    """Draw one reliability curve; return its line of the panel's ECE box."""
    bins = reliability_bins(labels, p, n_bins)
    filled = bins[bins["n"] > 0]
    ax.plot(
        filled["mean_p"],
        filled["observed"],
        color=color,
        marker=marker,
        markersize=4,
        linestyle=linestyle,
        linewidth=1.5,
        label=label,
        gid=gid,
    )
    return f"{label}: {expected_calibration_error(labels, p, n_bins):.3f}"


@styled
def reliability_diagrams(
    predictions: pd.DataFrame, out, cohort: str, *, n_bins: int = 10, dpi: int = DPI
) -> Figure:
    """Reliability diagrams of one cohort's scored images, one column per setting.

    Top: per method, the observed share of reduced scans against the mean calibrated
    P(reduced) in each of ``n_bins`` equal-width bins (empty bins left out), the images of all
    splits pooled; the CNN's uncalibrated probability (``p_reduced_raw``) is dotted.  A box in
    each panel gives each curve's ECE on the pooled images.  Bottom: how many calibrated
    probabilities fall in each bin.

    Parameters
    ----------
    predictions : pandas.DataFrame
        At least ``cohort, method, setting, split, label, p_reduced``.
    out : str or Path
        The PNG to write.
    cohort : str
        The cohort to plot (the development cohort: its test parts).
    n_bins : int
        Equal-width bins of P(reduced), as ``evaluation.calibration.ece_bins``.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
        Curves have the gid ``reliability:<setting>:<method>`` (``...:cnn_raw`` for the
        uncalibrated CNN).
    """
    cols = ["cohort", "method", "setting", "split", "label", "p_reduced"]
    require_columns(predictions, cols, "predictions")
    rows = cohort_rows(predictions, cohort, "predictions").dropna(subset=["p_reduced"])
    settings = ordered(rows["setting"], SETTINGS)
    fig = new_figure(max(4.8, 3.8 * len(settings)), 5.6)
    axes = fig.subplots(
        2, len(settings), sharex=True, squeeze=False, height_ratios=[3, 1], sharey="row"
    )
    centres = (np.arange(n_bins) + 0.5) / n_bins
    for j, setting in enumerate(settings):
        top, bottom = axes[0, j], axes[1, j]
        top.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="ideal")
        by_setting = rows[rows["setting"] == setting]
        methods = ordered(by_setting["method"], METHODS)
        offsets = (np.arange(len(methods)) - (len(methods) - 1) / 2) * 0.8 / n_bins / len(methods)
        eces = []
        for method, offset in zip(methods, offsets, strict=True):
            part = by_setting[by_setting["method"] == method]
            color = METHOD_COLORS.get(method, "#56B4E9")
            name = METHOD_NAMES.get(method, method)
            marker = METHOD_MARKERS.get(method, "o")
            if method == "cnn" and RAW in part and part[RAW].notna().all():
                eces.append(
                    _curve(
                        top,
                        part["label"],
                        part[RAW],
                        n_bins,
                        color=color,
                        marker=marker,
                        linestyle=":",
                        label=f"{name} uncalibrated",
                        gid=f"reliability:{setting}:cnn_raw",
                    )
                )
            eces.append(
                _curve(
                    top,
                    part["label"],
                    part["p_reduced"],
                    n_bins,
                    color=color,
                    marker=marker,
                    label=name,
                    gid=f"reliability:{setting}:{method}",
                )
            )
            counts = reliability_bins(part["label"], part["p_reduced"], n_bins)["n"]
            bottom.bar(centres + offset, counts, 0.8 / n_bins / len(methods), color=color)
        n_splits = by_setting["split"].nunique()
        top.set_title(f"trained on {setting} ({n_splits} split{'s' * (n_splits > 1)} pooled)")
        top.set_xlim(0, 1)
        top.set_ylim(-0.02, 1.02)
        top.text(
            0.03,
            0.97,
            "ECE, pooled\n" + "\n".join(eces),
            transform=top.transAxes,
            va="top",
            fontsize=9,
            bbox={"facecolor": "white", "edgecolor": "#cccccc", "alpha": 0.85},
        )
        bottom.set_xlabel(f"P(reduced), mean per bin\n(bars: calibrated images per 1/{n_bins})")
    entries = {}
    for ax in axes[0]:
        handles, labels = ax.get_legend_handles_labels()
        entries.update(zip(labels, handles, strict=True))
    fig.legend(entries.values(), entries.keys(), loc="outside lower center", ncols=len(entries))
    axes[0, 0].set_ylabel("Observed share of reduced scans")
    axes[1, 0].set_ylabel("Images per bin")
    fig.suptitle(f"Reliability of P(reduced) on cohort {cohort}: test parts, {n_bins} bins")
    save(fig, out, dpi)
    return fig


@styled
def coverage_figure(predictions: pd.DataFrame, out, cohort: str, *, dpi: int = DPI) -> Figure:
    """Accuracy against coverage on one cohort's scored images, one panel per setting.

    Per method, the images of all splits pooled and set aside least certain first (smallest
    margin: :func:`datspect.evaluation.uncertainty.coverage_curve`); a dot marks where the
    validation-chosen bands put it (share kept, accuracy on the conclusive images).

    Parameters
    ----------
    predictions : pandas.DataFrame
        At least ``cohort, method, setting, label, prediction, margin, inconclusive``.
    out : str or Path
    cohort : str
    dpi : int

    Returns
    -------
    matplotlib.figure.Figure
        Curves have the gid ``coverage:<setting>:<method>``.
    """
    cols = ["cohort", "method", "setting", "label", "prediction", "margin", "inconclusive"]
    require_columns(predictions, cols, "predictions")
    rows = cohort_rows(predictions, cohort, "predictions")
    settings = ordered(rows["setting"], SETTINGS)
    fig = new_figure(max(4.8, 3.8 * len(settings)), 4.2)
    axes = fig.subplots(1, len(settings), squeeze=False, sharey=True)[0]
    for ax, setting in zip(axes, settings, strict=True):
        by_setting = rows[rows["setting"] == setting]
        for method in ordered(by_setting["method"], METHODS):
            part = by_setting[by_setting["method"] == method]
            correct = (part["prediction"] == part["label"]).to_numpy()
            curve = coverage_curve(part["margin"], correct)
            color = METHOD_COLORS.get(method, "#56B4E9")
            name = METHOD_NAMES.get(method, method)
            ax.plot(
                curve["coverage"],
                curve["accuracy"],
                color=color,
                linewidth=1.5,
                label=name,
                gid=f"coverage:{setting}:{method}",
            )
            conclusive = ~part["inconclusive"].astype(bool).to_numpy()
            if conclusive.any():
                ax.plot(
                    conclusive.mean(),
                    correct[conclusive].mean(),
                    marker=METHOD_MARKERS.get(method, "o"),
                    color=color,
                    markeredgecolor="black",
                    markersize=7,
                    linestyle="none",
                )
        ax.set_title(f"trained on {setting}")
        ax.set_xlim(1.0, 0.5)
        ax.set_xlabel("Coverage (share of images called)")
    axes[0].set_ylabel("Accuracy on the images called")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=max(1, len(labels)))
    fig.suptitle(
        f"Accuracy vs coverage on cohort {cohort} (splits pooled; dots: validation-chosen bands)"
    )
    save(fig, out, dpi)
    return fig
