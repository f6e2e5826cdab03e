"""Quality-control figures: the mosaic of normalized striatal slabs and the normalization QC."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from datspect.errors import InputError
from datspect.figures.slab import region_fraction
from datspect.figures.style import COHORT_COLORS, DPI, PUTAMEN_COLOR, new_figure, save, styled
from datspect.io.tsv import require_columns
from datspect.space import anatomy, slab_grid


@styled
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

    Slabs are shown as :func:`datspect.features.slab.make_slab` lays them out, with the origin
    at the bottom: anterior at the top and, since the x index of the SPM grid runs from the
    subject's right to left, the subject's right on the image's left (radiological convention).
    All slabs share one grey scale (0 to the 99.5th percentile of all slabs), so reduced binding
    looks dark.  The outline (gid ``putamen-outline``) is the 0.5 contour of the AAL putamen mask
    averaged over the same slices as the slab.

    Parameters
    ----------
    slabs : sequence of (str, numpy.ndarray)
        ``(title, slab)`` pairs; titles are typically subject ids with QC flags; slabs have shape
        :data:`datspect.space.slab_grid.SLAB_SHAPE` (109, 91).
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
        outline = region_fraction("putamen", n_slices)
    ncols = min(ncols, len(arrays))
    nrows = math.ceil(len(arrays) / ncols)
    fig = new_figure(max(6.5, 1.55 * ncols + 1.0), 1.1 + 1.95 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    image = None
    for ax, (title, _), arr in zip(axes.flat, slabs, arrays, strict=False):
        image = ax.imshow(
            arr, origin="lower", cmap="gray", vmin=0, vmax=vmax, interpolation="nearest"
        )
        if outline is not None:
            contour = ax.contour(outline, levels=[0.5], colors=PUTAMEN_COLOR, linewidths=0.9)
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
    save(fig, out, dpi)
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


@styled
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
    require_columns(qc, ["cohort", "subject_id", "correlation", "centroid_error_mm"], "qc")
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
    fig = new_figure(9.0, 3.8)
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
    save(fig, out, dpi)
    return fig
