"""The SBR distributions per label and image type, with the cutoffs of each training setting."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from datspect.errors import InputError
from datspect.evaluation.scoring import mean_cutoffs
from datspect.figures.style import (
    DPI,
    LABEL_COLORS,
    SETTING_COLORS,
    SETTING_LINESTYLES,
    new_figure,
    save,
    styled,
)
from datspect.io.tsv import cohort_rows, require_columns
from datspect.vocabulary import (
    LABEL_NAMES,
    METHOD_NAMES,
    SBR_COLUMN,
    SBR_REGION_NAMES,
    SETTINGS,
    ordered,
)


@styled
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
        (:data:`datspect.vocabulary.SBR_COLUMN`).
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
    require_columns(sbr, ["cohort", "image_setting", "label", column], "sbr")
    rows = cohort_rows(sbr, cohort, "sbr").dropna(subset=[column])
    cutoffs = mean_cutoffs(predictions, method)
    image_settings = ordered(rows["image_setting"], SETTINGS)
    edges = np.histogram_bin_edges(rows[column], bins=bins)
    fig = new_figure(10.0, 0.8 + 2.6 * len(image_settings))
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
    axes[-1].set_xlabel(f"Putamen SBR, {SBR_REGION_NAMES[method]} (ratio, no unit)")
    fig.suptitle(
        f"{METHOD_NAMES.get(method, method)} by image type; lines: Youden cutoffs "
        "(mean over splits) by training setting"
    )
    save(fig, out, dpi)
    return fig
