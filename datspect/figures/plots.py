"""The workflow's figures: one function per figure, each writing one PNG atomically.

Every function takes the contract tables (or arrays) and an output path, draws on a
:class:`matplotlib.figure.Figure` with the non-interactive Agg canvas (no pyplot: no global
figure registry, nothing to close, safe in parallel jobs), writes it through
:func:`datspect.io.imageio.atomic_output` and returns the Figure so that callers and tests can check
what was drawn.  Colours are the Okabe-Ito palette (colour-blind safe); every setting, label and
method keeps one colour or name across figures.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import auc as area_under_curve
from sklearn.metrics import confusion_matrix, roc_curve

from datspect.errors import InputError
from datspect.features import slab
from datspect.io.imageio import atomic_output
from datspect.report.summary import STUDY_ACCURACY
from datspect.space import anatomy, slab_grid
from datspect.vocabulary import LABEL_NAMES, METHOD_NAMES, METHODS, SBR_COLUMN, SETTINGS

DPI = 150
# Okabe-Ito colours; settings and labels never share one, so cutoff lines stand out on histograms.
SETTING_COLORS = {"original": "#0072B2", "smoothed": "#E69F00", "mixed": "#009E73"}
SETTING_LINESTYLES = {"original": "-", "smoothed": "--", "mixed": ":"}
LABEL_COLORS = {0: "#999999", 1: "#CC79A7"}
# Methods (figures where settings are panels): Okabe-Ito, with markers so they survive greyscale.
# Warm colours for the SBR methods, blue for the CNN; hatches and markers tell the SBRs apart.
METHOD_COLORS = {"sbr_aal": "#D55E00", "sbr_hv": "#E69F00", "cnn": "#0072B2"}
METHOD_MARKERS = {"sbr_aal": "o", "sbr_hv": "s", "cnn": "D"}
METHOD_HATCHES = {"sbr_aal": "", "sbr_hv": "//", "cnn": ""}
COHORT_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00")
OUTLINE_COLOR = "#E69F00"
STUDY_LABEL = "study (mean ± SD)"
#: Fonts of at least 9 pt everywhere; no top/right frame lines.
STYLE = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _styled(func):
    """Run a figure function under :data:`STYLE` (rc values are read when artists are made)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out, dpi: int) -> None:
    # The temporary file keeps the target's extension, so savefig picks the same format.
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=dpi)


def _require(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(
            f"{name}: missing column(s) {', '.join(missing)}; expected at least "
            f"{', '.join(columns)} (see the data contracts in the design notes)"
        )


def _ordered(values, order: Sequence[str]) -> list[str]:
    """Distinct values in the canonical order, unknown ones after them, sorted."""
    present = set(values)
    return [v for v in order if v in present] + sorted(present - set(order))


def _cohort_rows(table: pd.DataFrame, cohort: str, name: str) -> pd.DataFrame:
    rows = table[table["cohort"] == cohort]
    if rows.empty:
        known = ", ".join(sorted(map(str, table["cohort"].unique()))) or "none"
        raise InputError(f"{name}: no rows for cohort {cohort!r}; cohorts in the table: {known}")
    return rows


def _mean_sd(values) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


@_styled
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
    _require(per_split, ["cohort", "method", "setting", "split", "accuracy"], "per_split")
    if per_split.empty:
        raise InputError("per_split: the table is empty; run the metrics step first")
    if cohorts is None:
        cohorts = _ordered(per_split["cohort"], [study_cohort])
    stats = per_split.groupby(["cohort", "method", "setting"])["accuracy"].agg(
        ["mean", "std", "count"]
    )
    panels = [_cohort_rows(per_split, c, "per_split") for c in cohorts]
    widths = [len(p.groupby(["method", "setting"])) + 1 for p in panels]
    fig = _new_figure(max(5.0, 0.55 * sum(widths) + 1.5), 4.2)
    axes = fig.subplots(1, len(cohorts), sharey=True, squeeze=False, width_ratios=widths)[0]
    lows = []
    for ax, cohort, rows in zip(axes, cohorts, panels, strict=True):
        methods = _ordered(rows["method"], METHODS)
        settings = _ordered(rows["setting"], SETTINGS)
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
    labels = _ordered(set(entries) - {STUDY_LABEL}, SETTINGS)
    labels += [STUDY_LABEL] if STUDY_LABEL in entries else []
    fig.legend(
        [entries[k] for k in labels],
        labels,
        loc="outside lower center",
        ncols=len(labels),
        title="bars: training setting",
    )
    fig.suptitle("Test accuracy per method and training setting")
    _save(fig, out, dpi)
    return fig


def _mean_roc(rows: pd.DataFrame, grid: np.ndarray):
    """Vertically averaged ROC over splits: mean and SD of TPR on ``grid``, AUC per split."""
    tprs, aucs = [], []
    for _, part in rows.groupby("split"):
        if part["label"].nunique() < 2:
            continue  # no ROC without both classes
        fpr, tpr, _ = roc_curve(part["label"], part["score_reduced"])
        interp = np.interp(grid, fpr, tpr)
        interp[0] = 0.0
        tprs.append(interp)
        aucs.append(area_under_curve(fpr, tpr))
    if not tprs:
        return None
    tprs = np.array(tprs)
    return tprs.mean(axis=0), tprs.std(axis=0), np.array(aucs)


@_styled
def _plot_mean_roc(ax, rows: pd.DataFrame, grid: np.ndarray, *, color, name, gid=None) -> None:
    """The mean ROC of ``rows`` over splits with a ± 1 SD band, labelled with its mean AUC."""
    roc = _mean_roc(rows, grid)
    if roc is None:
        return
    mean, sd, aucs = roc
    auc_mean, auc_sd = _mean_sd(aucs)
    label = f"{name}: AUC {auc_mean:.3f} ± {auc_sd:.3f}"
    ax.plot(grid, mean, color=color, linewidth=1.8, label=label, gid=gid)
    ax.fill_between(
        grid, np.clip(mean - sd, 0, 1), np.clip(mean + sd, 0, 1), color=color, alpha=0.15
    )


def roc_curves(
    predictions: pd.DataFrame, out, cohort: str, *, grid_points: int = 201, dpi: int = DPI
) -> Figure:
    """ROC curves per method (panel) and setting (line) on one cohort's scored images.

    Each split's test ROC (``sklearn.metrics.roc_curve`` on ``score_reduced``) is interpolated
    on a common false-positive-rate grid and averaged over splits (vertical averaging; the band
    is ± 1 SD).  Splits are not pooled because the models differ between splits, and for the
    CNN their scores are not on one scale.  The legend gives the AUC as mean ± SD over splits,
    the same numbers as ``per_split.tsv``.

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
    _require(predictions, cols, "predictions")
    rows = _cohort_rows(predictions, cohort, "predictions")
    methods = _ordered(rows["method"], METHODS)
    grid = np.linspace(0.0, 1.0, grid_points)
    fig = _new_figure(max(4.5, 3.6 * len(methods)), 4.6)
    axes = fig.subplots(1, len(methods), sharey=True, squeeze=False)[0]
    for ax, method in zip(axes, methods, strict=True):
        ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="chance")
        by_method = rows[rows["method"] == method]
        for setting in _ordered(by_method["setting"], SETTINGS):
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
    _save(fig, out, dpi)
    return fig


def pooled_confusion(predictions: pd.DataFrame, cohort: str) -> dict[tuple[str, str], np.ndarray]:
    """Confusion counts per (method, setting) of one cohort, summed over splits.

    Returns
    -------
    dict
        ``{(method, setting): 2x2 int array}``; rows true label, columns predicted label, index
        0 = normal, 1 = reduced.
    """
    _require(predictions, ["cohort", "method", "setting", "label", "prediction"], "predictions")
    rows = _cohort_rows(predictions, cohort, "predictions")
    return {
        (method, setting): confusion_matrix(part["label"], part["prediction"], labels=[0, 1])
        for (method, setting), part in rows.groupby(["method", "setting"])
    }


@_styled
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
    _require(predictions, ["split"], "predictions")
    counts = pooled_confusion(predictions, cohort)
    methods = _ordered([m for m, _ in counts], METHODS)
    settings = _ordered([s for _, s in counts], SETTINGS)
    fig = _new_figure(max(5.0, 1.2 + 2.4 * len(settings)), 1.1 + 2.2 * len(methods))
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
    n_splits = _cohort_rows(predictions, cohort, "predictions")["split"].nunique()
    fig.suptitle(
        f"Confusion matrices, cohort {cohort}\n(scored images pooled over {n_splits} splits)"
    )
    _save(fig, out, dpi)
    return fig


def mean_cutoffs(predictions: pd.DataFrame, method: str = "sbr_aal") -> pd.DataFrame:
    """Cutoff of an SBR method per training setting: mean and SD over splits.

    Cutoffs are fitted on the development cohort, so every scored cohort carries the same
    value per (setting, split); each split counts once.

    Returns
    -------
    pandas.DataFrame
        Index ``setting`` (canonical order), columns ``mean, sd, n_splits``.
    """
    _require(predictions, ["method", "setting", "split", "cutoff"], "predictions")
    rows = predictions[predictions["method"] == method].dropna(subset=["cutoff"])
    if rows.empty:
        raise InputError(f"predictions: no cutoffs for method {method!r}; is it an SBR method?")
    per_split = rows.groupby(["setting", "split"])["cutoff"].first()
    table = per_split.groupby(level="setting").agg(["mean", "std", "count"])
    table = table.rename(columns={"std": "sd", "count": "n_splits"}).fillna({"sd": 0.0})
    return table.loc[_ordered(table.index, SETTINGS)]


@_styled
def sbr_distributions(
    sbr: pd.DataFrame,
    predictions: pd.DataFrame,
    out,
    *,
    cohort: str,
    method: str = "sbr_aal",
    bins: int = 40,
    dpi: int = DPI,
) -> Figure:
    """Putamen SBR per label for original and smoothed images, with each setting's cutoff.

    One panel per image type (shared SBR axis), histograms per label, and one vertical line per
    training setting at the method's Youden cutoff (mean over splits; lines have the gid
    ``cutoff:<setting>``).  The legend gives, for each cutoff, the share of the panel's images it
    classifies correctly (reduced if SBR < cutoff): smoothing lowers the SBR, so a cutoff that
    fits one image type misclassifies the other, and the mixed-trained cutoff sits in between.

    Parameters
    ----------
    sbr : pandas.DataFrame
        ``sbr.tsv``: at least ``cohort, image_setting, label`` and the method's SBR column
        (:data:`datspect.evaluation.scoring.SBR_COLUMN`).
    predictions : pandas.DataFrame
        At least ``method, setting, split, cutoff`` (the fitted cutoffs).
    out : str or Path
        The PNG to write.
    cohort : str
        Whose images are plotted.
    method : {"sbr_aal", "sbr_hv"}
        The SBR method (its column and its cutoffs).
    bins : int
        Histogram bins, common to both panels.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if method not in SBR_COLUMN:
        raise InputError(f"method: {method!r} is not an SBR method; use one of {list(SBR_COLUMN)}")
    column = SBR_COLUMN[method]
    _require(sbr, ["cohort", "image_setting", "label", column], "sbr")
    rows = _cohort_rows(sbr, cohort, "sbr").dropna(subset=[column])
    cutoffs = mean_cutoffs(predictions, method)
    image_settings = _ordered(rows["image_setting"], SETTINGS)
    edges = np.histogram_bin_edges(rows[column], bins=bins)
    fig = _new_figure(10.0, 0.8 + 2.6 * len(image_settings))
    axes = fig.subplots(len(image_settings), 1, sharex=True, squeeze=False)[:, 0]
    for ax, image_setting in zip(axes, image_settings, strict=True):
        images = rows[rows["image_setting"] == image_setting]
        values, labels = images[column].to_numpy(), images["label"].to_numpy()
        for label in (0, 1):
            vals = values[labels == label]
            color = LABEL_COLORS[label]
            name = f"{LABEL_NAMES[label]} (n = {vals.size})"
            ax.hist(vals, bins=edges, histtype="stepfilled", alpha=0.45, color=color, label=name)
            ax.hist(vals, bins=edges, histtype="step", color=color, linewidth=1.2)
        for setting, cut in cutoffs.iterrows():
            correct = float(np.mean((values < cut["mean"]).astype(int) == labels))
            ax.axvline(
                cut["mean"],
                color=SETTING_COLORS.get(setting, "black"),
                linestyle=SETTING_LINESTYLES.get(setting, "-."),
                linewidth=2,
                gid=f"cutoff:{setting}",
                label=f"{setting}-trained cutoff {cut['mean']:.2f}: {correct:.0%} correct",
            )
        ax.set_title(f"{image_setting} images of cohort {cohort} (n = {values.size})")
        ax.set_ylabel("Images (count)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    kind = "AAL putamen ROI" if method == "sbr_aal" else "putamen hottest voxels"
    axes[-1].set_xlabel(f"Putamen SBR, {kind} (ratio, no unit)")
    fig.suptitle(
        f"{METHOD_NAMES.get(method, method)} by image type; lines: Youden cutoffs "
        "(mean over splits) by training setting"
    )
    _save(fig, out, dpi)
    return fig


@_styled
def qc_mosaic(
    slabs: Sequence[tuple[str, np.ndarray]],
    out,
    *,
    putamen_outline: bool = True,
    n_slices: int = 5,
    ncols: int = 6,
    dpi: int = DPI,
) -> Figure:
    """A grid of transversal striatal slabs, each with the AAL putamen outline.

    Slabs are shown as :func:`datspect.features.slab.make_slab` lays them out, with the origin at
    the
    bottom: anterior at the top and, since the x index of the SPM grid runs from the subject's
    right to left, the subject's right on the image's left (radiological convention).  All slabs
    share one grey scale (0 to the 99.5th percentile of all slabs), so reduced binding looks
    dark.  The outline (gid ``putamen-outline``) is the 0.5 contour of the AAL putamen mask
    averaged over the same slices as the slab.

    Parameters
    ----------
    slabs : sequence of (str, numpy.ndarray)
        ``(title, slab)`` pairs; titles are typically subject ids with QC flags; slabs have shape
        :data:`datspect.features.slab_grid.SLAB_SHAPE` (109, 91).
    out : str or Path
        The PNG to write.
    putamen_outline : bool
        Draw the AAL putamen outline on every slab.
    n_slices : int
        Slices the slabs average (for the outline and the title).
    ncols : int
        Slabs per row.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if len(slabs) == 0:
        raise InputError("slabs: the list is empty; pass at least one (title, slab) pair")
    arrays = []
    for title, array in slabs:
        arr = np.asarray(array, dtype=float)
        if arr.shape != slab_grid.SLAB_SHAPE:
            raise InputError(
                f"slabs: {title!r} has shape {arr.shape}, expected {slab_grid.SLAB_SHAPE} "
                "(rows y, columns x, as datspect.features.slab.make_slab returns)"
            )
        arrays.append(arr)
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays])
    vmax = float(np.percentile(finite, 99.5)) if finite.size else 1.0
    outline = None
    if putamen_outline:
        outline = slab.project_to_slab(anatomy.region("putamen").astype(float), n_slices)
    ncols = min(ncols, len(arrays))
    nrows = math.ceil(len(arrays) / ncols)
    fig = _new_figure(max(6.5, 1.55 * ncols + 1.0), 1.1 + 1.95 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    image = None
    for ax, (title, _), arr in zip(axes.flat, slabs, arrays, strict=False):
        image = ax.imshow(
            arr, origin="lower", cmap="gray", vmin=0, vmax=vmax, interpolation="nearest"
        )
        if outline is not None:
            contour = ax.contour(outline, levels=[0.5], colors=OUTLINE_COLOR, linewidths=0.9)
            contour.set_gid("putamen-outline")
        ax.set_title(str(title), fontsize=9)
        ax.set_axis_off()
    for ax in axes.flat[len(arrays) :]:
        ax.set_axis_off()
    fig.colorbar(image, ax=axes, shrink=0.6, label="Intensity / reference mean")
    z_mm = anatomy.MNI_AFFINE[2, 2] * slab_grid.putamen_slices(n_slices) + anatomy.MNI_AFFINE[2, 3]
    note = "; orange: AAL putamen" if putamen_outline else ""
    fig.suptitle(
        f"Transversal slabs, mean of z = {z_mm[0]:g} to {z_mm[-1]:g} mm (MNI){note}\n"
        "anterior at top, subject's right on the left (radiological)"
    )
    _save(fig, out, dpi)
    return fig


@_styled
def training_curves(
    histories: Mapping[tuple[str, int], pd.DataFrame], out, *, dpi: int = DPI
) -> Figure:
    """Loss (top: validation solid, training dashed) and validation accuracy (bottom) per epoch.

    One panel column per setting.  The training loss is the mean over the epoch's augmented
    batches with dropout on, so it can lie above the validation loss.

    Parameters
    ----------
    histories : mapping
        ``{(setting, split): history}``, each history with ``epoch, val_loss, val_accuracy``
        and optionally ``train_loss`` (the CNN's ``history.tsv``).
    out : str or Path
        The PNG to write.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
        One line per split in each panel.
    """
    if not histories:
        raise InputError("histories: no training histories given; train the CNN models first")
    for (setting, split), history in histories.items():
        _require(history, ["epoch", "val_loss", "val_accuracy"], f"history {setting}/{split}")
    settings = _ordered([s for s, _ in histories], SETTINGS)
    fig = _new_figure(max(5.0, 3.3 * len(settings)), 5.6)
    axes = fig.subplots(2, len(settings), sharex=True, sharey="row", squeeze=False)
    for j, setting in enumerate(settings):
        runs = sorted((split, h) for (s, split), h in histories.items() if s == setting)
        color = SETTING_COLORS.get(setting, "#56B4E9")
        for split, history in runs:
            for ax, col in zip(axes[:, j], ("val_loss", "val_accuracy"), strict=True):
                ax.plot(history["epoch"], history[col], color=color, alpha=0.7, gid=str(split))
            if "train_loss" in history:
                axes[0, j].plot(
                    history["epoch"],
                    history["train_loss"],
                    color=color,
                    alpha=0.5,
                    linestyle="--",
                    linewidth=1.0,
                    gid=f"train:{split}",
                )
        axes[0, j].set_title(f"trained on {setting} ({len(runs)} splits)")
        axes[1, j].set_xlabel("Epoch")
        axes[1, j].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylabel("Loss (weighted cross-entropy)\nsolid: validation, dashed: training")
    axes[1, 0].set_ylabel("Validation accuracy\n(fraction correct)")
    fig.suptitle("CNN training: one line per split")
    _save(fig, out, dpi)
    return fig


def _threshold_histogram(ax, groups, threshold, *, above_fails: bool, unit: str) -> None:
    """Step histograms of ``{cohort: values}`` on common bins, with the QC threshold line."""
    values = np.concatenate([v for v in groups.values()])
    lo, hi = min(values.min(), threshold), max(values.max(), threshold)
    edges = np.histogram_bin_edges(values, bins=30, range=(lo, hi) if hi > lo else None)
    for k, (cohort, vals) in enumerate(groups.items()):
        failed = int(np.sum(vals > threshold if above_fails else vals < threshold))
        ax.hist(
            vals,
            bins=edges,
            histtype="step",
            linewidth=1.6,
            color=COHORT_COLORS[k % len(COHORT_COLORS)],
            label=f"{cohort} (n = {vals.size}, {failed} flagged)",
        )
    ax.axvline(
        threshold,
        color="black",
        linestyle="--",
        gid="threshold",
        label=f"QC limit {threshold:g}{unit}",
    )
    ax.legend(framealpha=0.9)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


@_styled
def normalization_qc_summary(
    qc: pd.DataFrame,
    out,
    *,
    min_correlation: float,
    max_centroid_error_mm: float,
    dpi: int = DPI,
) -> Figure:
    """Histograms of the striatal centroid error and the template correlation per cohort.

    Parameters
    ----------
    qc : pandas.DataFrame
        The normalization QC table: at least ``cohort, subject_id, correlation,
        centroid_error_mm``.  The centroid error is per subject (one transform per subject; NaN
        for real scans, whose true transform is unknown); the correlation is per image.
    out : str or Path
        The PNG to write.
    min_correlation : float
        QC limit of the correlation (lower is flagged).
    max_centroid_error_mm : float
        QC limit of the centroid error in mm (higher is flagged).
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _require(qc, ["cohort", "subject_id", "correlation", "centroid_error_mm"], "qc")
    if qc.empty:
        raise InputError("qc: the table is empty; run the normalization QC step first")
    cohorts = sorted(qc["cohort"].unique())
    per_subject = qc.groupby(["cohort", "subject_id"])["centroid_error_mm"].mean()
    errors = {c: per_subject[c].dropna().to_numpy() for c in cohorts}
    errors = {c: v for c, v in errors.items() if v.size}
    correlations = {
        c: qc.loc[qc["cohort"] == c, "correlation"].dropna().to_numpy() for c in cohorts
    }
    correlations = {c: v for c, v in correlations.items() if v.size}
    fig = _new_figure(9.0, 3.8)
    ax_err, ax_r = fig.subplots(1, 2)
    for ax, groups, threshold, above, unit in (
        (ax_err, errors, max_centroid_error_mm, True, " mm"),
        (ax_r, correlations, min_correlation, False, ""),
    ):
        if groups:
            _threshold_histogram(ax, groups, threshold, above_fails=above, unit=unit)
        else:
            ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes)
    ax_err.set_xlabel("Striatal centroid error (mm)")
    ax_err.set_ylabel("Subjects (count)")
    ax_err.set_title("Error against the true transform\n(simulated scans only)")
    ax_r.set_xlabel("Correlation with the template (Pearson r)")
    ax_r.set_ylabel("Images (count)")
    ax_r.set_title("Similarity to the template\n(every normalized image)")
    fig.suptitle("Spatial normalization QC")
    _save(fig, out, dpi)
    return fig


METRIC_NAMES = {
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "auc": "AUC",
}


@_styled
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
    _require(per_split, ["cohort", "method", "setting", "split", *metric_cols], "per_split")
    _require(predictions, ["cohort", "method", "setting", "split", "label"], "predictions")
    scored = per_split[per_split["setting"] == setting]
    stats = scored.groupby(["cohort", "method"])[metric_cols].agg(["mean", "std", "count"])
    grid = np.linspace(0.0, 1.0, grid_points)
    fig = _new_figure(11.0, 0.9 + 4.2 * len(cohorts))
    axes = fig.subplots(len(cohorts), 2, squeeze=False, width_ratios=[1.5, 1.0])
    for row, cohort in enumerate(cohorts):
        rows = _cohort_rows(scored, cohort, f"per_split ({setting} setting)")
        methods = _ordered(rows["method"], METHODS)
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
        for method in _ordered(images["method"], METHODS):
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
    _save(fig, out, dpi)
    return fig


@_styled
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
    _require(table, ["fwhm", "method", "trained_setting", "split", "accuracy"], "robustness")
    if table.empty:
        raise InputError("robustness: the table is empty; run the robustness rules first")
    settings = _ordered(table["trained_setting"], SETTINGS)
    stats = table.groupby(["trained_setting", "method", "fwhm"])["accuracy"].agg(
        ["mean", "std", "count"]
    )
    levels = sorted(table["fwhm"].unique())
    fig = _new_figure(max(5.0, 4.6 * len(settings)), 4.6)
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
        methods = _ordered(rows["method"], METHODS)
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
    _save(fig, out, dpi)
    return fig


def placeholder(out, text: str, *, dpi: int = DPI) -> Figure:
    """A figure that says why there is nothing to show (keeps the report's file list fixed)."""
    fig = _new_figure(6.0, 1.5)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    _save(fig, out, dpi)
    return fig
