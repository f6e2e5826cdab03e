"""Figures on the striatal slab: the CNN's class-average saliency and the ``classify`` report page.

Slabs are drawn as :func:`datspect.features.slab.make_slab` lays them out, on MNI millimetres:
anterior at the top and the subject's right on the image's left (radiological, as the QC
mosaic).  Attributions are integrated gradients (:mod:`datspect.cnn.saliency`) drawn over the
slab with an opacity that grows with their size: a diverging red-blue map (colour-blind safe)
for signed values, red towards "reduced" and blue towards "normal", and magma for absolute
values.  Style and colours follow :mod:`datspect.figures.style`.
"""

from __future__ import annotations

import functools
import textwrap

import numpy as np
from matplotlib import colormaps
from matplotlib import patheffects as pe
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from datspect.errors import InputError
from datspect.features.slab import project_to_slab
from datspect.figures.style import (
    CAUDATE_COLOR,
    DPI,
    LABEL_COLORS,
    PUTAMEN_COLOR,
    SETTING_COLORS,
    new_figure,
    save,
    styled,
)
from datspect.space import anatomy, slab_grid
from datspect.vocabulary import LABEL_NAMES, METHOD_NAMES, SBR_COLUMN, SBR_REGION_NAMES

CUTOFF_COLOR = SETTING_COLORS["mixed"]
SIGNED_CMAP = "RdBu_r"
ABSOLUTE_CMAP = "magma"
#: Pixel centres of the slab in MNI mm: columns along x (+ = subject's right), rows along y.
X_MM = anatomy.MNI_AFFINE[0, 0] * np.arange(anatomy.MNI_SHAPE[0]) + anatomy.MNI_AFFINE[0, 3]
Y_MM = anatomy.MNI_AFFINE[1, 1] * np.arange(anatomy.MNI_SHAPE[1]) + anatomy.MNI_AFFINE[1, 3]
_EXTENT = (X_MM[0] + 1, X_MM[-1] - 1, Y_MM[0] - 1, Y_MM[-1] + 1)
_WHITE_ON_BLACK = [pe.Stroke(linewidth=2.4, foreground="black"), pe.Normal()]


@functools.lru_cache(maxsize=16)
def region_fraction(name: str, n_slices: int) -> np.ndarray:
    """Share of each slab pixel's slices inside an AAL region (the outline is its 0.5 contour)."""
    return project_to_slab(anatomy.region(name).astype(np.float64), n_slices)


def _crop_mm(crop, margin_mm: float = 0.0):
    """``(x_left, x_right, y_bottom, y_top)`` in mm of a crop ``[[row0, row1], [col0, col1]]``."""
    (r0, r1), (c0, c1) = crop
    return (
        X_MM[c0] + 1 + margin_mm,
        X_MM[c1 - 1] - 1 - margin_mm,
        Y_MM[r0] - 1 - margin_mm,
        Y_MM[r1 - 1] + 1 + margin_mm,
    )


def _slab_axes(ax, crop=None, *, xlabel=True, ylabel=True) -> None:
    """MNI mm axes, zoomed to the CNN's crop (with a margin) when there is one."""
    left, right, bottom, top = _EXTENT if crop is None else _crop_mm(crop, 10.0)
    ax.set_xlim(min(left, _EXTENT[0]), max(right, _EXTENT[1]))
    ax.set_ylim(max(bottom, _EXTENT[2]), min(top, _EXTENT[3]))
    if xlabel:
        ax.set_xlabel("x (mm, MNI; subject's right on the left)")
    if ylabel:
        ax.set_ylabel("y (mm, MNI; anterior up)")


def _show_slab(ax, arr, vmax: float):
    return ax.imshow(
        arr, origin="lower", cmap="gray", vmin=0, vmax=vmax, extent=_EXTENT, interpolation="nearest"
    )


def _outline(ax, name: str, n_slices: int, color: str, *, gid: str, **kwargs) -> None:
    contour = ax.contour(
        X_MM, Y_MM, region_fraction(name, n_slices), levels=[0.5], colors=color, **kwargs
    )
    contour.set_gid(gid)


def _striatum_outline(ax, n_slices: int) -> None:
    contour = ax.contour(
        X_MM, Y_MM, region_fraction("striatum", n_slices), levels=[0.5], colors="white"
    )
    contour.set(path_effects=_WHITE_ON_BLACK, linewidth=1.2)
    contour.set_gid("striatum-outline")


def _crop_box(ax, crop) -> None:
    """The part of the slab the CNN sees (its ``arch.crop``), dashed."""
    if crop is None:
        return
    left, right, bottom, top = _crop_mm(crop)
    box = Rectangle(
        (right, bottom),
        left - right,
        top - bottom,
        fill=False,
        edgecolor="white",
        linestyle="--",
        linewidth=1.0,
        gid="cnn-crop",
    )
    ax.add_patch(box)


def _overlay(ax, values, *, cmap: str, norm: Normalize, vmax: float, gid: str):
    """``values`` over the slab; opacity grows with |value| / vmax (0 where there is none)."""
    rgba = colormaps[cmap](norm(values))
    rgba[..., 3] = 0.9 * np.clip(np.abs(values) / vmax, 0.0, 1.0) ** 0.6
    image = ax.imshow(rgba, origin="lower", extent=_EXTENT, interpolation="nearest")
    image.set_gid(gid)
    return image


def _robust_max(*arrays) -> float:
    values = np.abs(np.concatenate([np.ravel(a) for a in arrays]))
    top = float(np.percentile(values, 99.5)) if values.size else 0.0
    return top if top > 0 else 1.0


@styled
def saliency_figure(
    maps: dict,
    template_slab: np.ndarray,
    out,
    *,
    n_slices: int,
    crop=None,
    n_models: int,
    dpi: int = DPI,
) -> Figure:
    """Class-average integrated gradients of the CNNs over test images, on the template slab.

    Parameters
    ----------
    maps : dict
        ``{label: {"signed", "absolute", "n"}}`` from
        :func:`datspect.cnn.saliency.class_average`.
    template_slab : numpy.ndarray
        The template's slab (:data:`datspect.space.slab_grid.SLAB_SHAPE`), the grey background.
    out : str or Path
        The PNG to write.
    n_slices : int
        Slices of the slab (for the striatum outline).
    crop : list, optional
        The CNN's input crop ``[[row0, row1], [col0, col1]]``, drawn dashed.
    n_models : int
        Models (splits) whose test images were averaged (for the title).
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
        Top row: mean absolute attribution (where the CNNs look); bottom row: mean signed
        attribution (red towards "reduced", blue towards "normal"); one column per label.
    """
    labels = [label for label in (0, 1) if label in maps]
    if not labels:
        raise InputError("saliency maps: no test images of either label; check the splits")
    if np.shape(template_slab) != slab_grid.SLAB_SHAPE:
        raise InputError(
            f"template slab: shape {np.shape(template_slab)}, not {slab_grid.SLAB_SHAPE}"
        )
    bg_max = float(np.percentile(template_slab, 99.5))
    fig = new_figure(3.6 * len(labels) + 1.6, 8.6)
    axes = fig.subplots(2, len(labels), squeeze=False, sharex=True, sharey=True)
    rows = (
        ("absolute", ABSOLUTE_CMAP, "Mean |attribution| (log-odds per pixel)"),
        ("signed", SIGNED_CMAP, "Mean attribution (log-odds per pixel)\n+ towards reduced"),
    )
    for i, (kind, cmap, bar_label) in enumerate(rows):
        vmax = _robust_max(*(maps[label][kind] for label in labels))
        norm = Normalize(0.0 if kind == "absolute" else -vmax, vmax)
        for j, label in enumerate(labels):
            ax = axes[i, j]
            _show_slab(ax, template_slab, bg_max)
            _overlay(ax, maps[label][kind], cmap=cmap, norm=norm, vmax=vmax, gid=f"{kind}:{label}")
            _striatum_outline(ax, n_slices)
            _crop_box(ax, crop)
            _slab_axes(ax, crop, xlabel=i == 1, ylabel=j == 0)
            if i == 0:
                ax.set_title(f"true {LABEL_NAMES[label]} (n = {maps[label]['n']} images)")
        fig.colorbar(
            ScalarMappable(norm=norm, cmap=colormaps[cmap]),
            ax=axes[i, :],
            shrink=0.8,
            label=bar_label,
        )
    fig.suptitle(
        f"Where the mixed-setting CNNs look: integrated gradients over the test images of "
        f"{n_models} splits,\neach image explained by its own split's model; grey: template "
        "slab, white: AAL striatum, dashed: CNN input crop"
    )
    save(fig, out, dpi)
    return fig


def _sbr_panel(ax, model, result, method: str) -> None:
    column = SBR_COLUMN[method]
    dev = model.development_sbr
    value = result.row[f"{method}_putamen"]
    cutoffs = model.method_cutoffs(method)
    edges = np.histogram_bin_edges(np.r_[dev[column].to_numpy(), value], bins=30)
    for label in (0, 1):
        vals = dev.loc[dev["label"] == label, column].to_numpy()
        ax.hist(
            vals,
            bins=edges,
            histtype="stepfilled",
            alpha=0.55,
            color=LABEL_COLORS[label],
            label=f"{LABEL_NAMES[label]} (n = {vals.size})",
        )
    ax.axvspan(cutoffs.min(), cutoffs.max(), color=CUTOFF_COLOR, alpha=0.2, linewidth=0)
    ax.axvline(
        cutoffs.mean(),
        color=CUTOFF_COLOR,
        linestyle="--",
        linewidth=2,
        gid="cutoff",
        label=f"cutoff {cutoffs.mean():.2f}",
    )
    ax.axvline(value, color="black", linewidth=2.5, gid="scan", label=f"this scan {value:.2f}")
    ax.set_title(f"{METHOD_NAMES[method]}: {result.row[f'{method}_call']}")
    kind = "slab SBR" if result.row.get("sbr_measurement") == "slab" else "SBR"
    ax.set_xlabel(f"Putamen {kind}, {SBR_REGION_NAMES[method]} (ratio)")
    ax.set_ylabel("Development images\n(count)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=2, frameon=False, fontsize=9)


def _cnn_panel(ax, model, result) -> None:
    p = result.probabilities
    splits = [split for split, _, _ in model.cnns]
    colors = [LABEL_COLORS[int(v >= 0.5)] for v in p]
    ax.scatter(np.arange(p.size), p, c=colors, edgecolors="black", s=50, zorder=3, gid="models")
    mean, sd = result.row["cnn_p_mean"], result.row["cnn_p_sd"]
    ax.errorbar(
        [p.size + 0.5], [mean], yerr=[sd], fmt="D", color="black", capsize=4, gid="ensemble"
    )
    ax.axhline(0.5, color="#555555", linestyle=":", linewidth=1.2)
    band = result.row["cnn_band"]
    if band > 0:
        ax.axhspan(0.5 - band, 0.5 + band, color="#E69F00", alpha=0.2, lw=0, gid="band")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xticks([*range(p.size), p.size + 0.5], [*map(str, splits), "mean ± SD"])
    ax.set_ylabel("P(reduced)")
    ax.set_xlabel(
        "Model (split); grey: calls normal, pink: calls reduced; dotted: 0.5; "
        "orange: inconclusive band"
    )
    flag = "; MODELS DISAGREE" if result.row["cnn_disagreement"] else ""
    ax.set_title(
        f"CNN: {result.row['cnn_call']}, P(reduced) {mean:.2f} ± {sd:.2f} (mean ± SD), "
        f"{result.row['cnn_votes']} models reduced{flag}"
    )


def _summary_lines(result, model) -> tuple[str, str]:
    """Two text columns: the verdicts (left) and the measurements and provenance (right)."""
    r = result.row
    manifest = model.manifest
    registration = "registered" if r["registered"] else "not registered"
    right = [
        f"input {r['input_kind']}, {registration}",
        *(
            ["no normalization QC (a slab)"]
            if r["input_kind"] == "slab"
            else [
                f"template correlation {r['qc_correlation']:.3f}",
                f"  (QC needs >= {model.config['preprocess']['qc_min_correlation']})",
            ]
        ),
        f"model: {len(model.cnns)} CNNs + cutoffs, mixed, from "
        f"{'slabs' if model.input_kind == 'slab' else '3D scans'}",
        f"  cohort {manifest['development_cohort']}, datspect {manifest['versions']['datspect']}",
        "Research use only; not a medical device.",
    ]
    if not result.classified:
        return "NOT CLASSIFIED\n" + _wrap(r["note"], 44), "\n".join(right)

    def sbr_line(method: str) -> str:
        value, cut, call = r[f"{method}_putamen"], r[f"{method}_cutoff"], r[f"{method}_call"]
        sign = "<" if value < cut else ">="
        band = r[f"{method}_band"]
        return (
            f"{METHOD_NAMES[method]:<8} {call.upper()} ({value:.2f} {sign} {cut:.2f}, "
            f"borderline ± {band:.2f})"
        )

    left = [
        f"CNN      {r['cnn_call'].upper()}",
        *_wrap(f"  {r['cnn_reason']}", 44).splitlines(),
        f"  P(reduced) {r['cnn_p_mean']:.3f} ± {r['cnn_p_sd']:.3f}",
        f"  {r['cnn_votes']} models reduced",
        f"  models disagree: {'YES' if r['cnn_disagreement'] else 'no'}",
    ]
    if not r.get("sbr_measurement"):  # a slab under 3D SBR cutoffs
        return "\n".join([*left, *_wrap(r["note"], 44).splitlines()]), "\n".join(right)
    header = "slab SBR" if r["sbr_measurement"] == "slab" else "putamen SBR"
    left += map(sbr_line, SBR_COLUMN)
    right = [
        f"{header:<14}left   right",
        f"  AAL       {r['sbr_aal_putamen_l']:6.2f}  {r['sbr_aal_putamen_r']:6.2f}",
        f"  HV        {r['sbr_hv_putamen_l']:6.2f}  {r['sbr_hv_putamen_r']:6.2f}",
        *right,
    ]
    return "\n".join(left), "\n".join(right)


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width))


@styled
def classification_page(result, model, out, *, title: str, dpi: int = 100) -> Figure:
    """The one-page report of one scan (A4 portrait, fixed layout).

    From the top: the verdicts, the numbers and the input kind; the normalized slab with the AAL
    putamen (orange) and caudate (blue) outlines beside the ensemble's saliency on it; the AAL and
    HV putamen SBR against the development cohort's values (both image types; green: the mean
    mixed-setting cutoff, band: the range of the split cutoffs; no panels for a slab under 3D SBR
    cutoffs); each model's P(reduced).  A scan that failed QC shows its slab and the reason only.
    """
    n_slices = model.config["slab"]["n_slices"]
    crop = model.manifest["cnn"]["arch"]["crop"]
    fig = Figure(figsize=(8.27, 11.69))
    FigureCanvasAgg(fig)
    status = "" if result.classified else " (NOT CLASSIFIED)"
    fig.text(0.5, 0.975, f"DaTscan classification: {title}{status}", ha="center", fontsize=13)
    for x, text in zip((0.06, 0.54), _summary_lines(result, model), strict=True):
        fig.text(x, 0.945, text, va="top", ha="left", family="monospace", fontsize=10)
    ax_slab = fig.add_axes((0.10, 0.52, 0.37, 0.28))
    vmax = float(np.percentile(result.slab, 99.5)) or 1.0
    image = _show_slab(ax_slab, result.slab, vmax)
    _outline(ax_slab, "putamen", n_slices, PUTAMEN_COLOR, gid="putamen-outline", linewidths=1.4)
    _outline(ax_slab, "caudate", n_slices, CAUDATE_COLOR, gid="caudate-outline", linewidths=1.4)
    _slab_axes(ax_slab, crop)
    ax_slab.set_title("Normalized slab: AAL putamen (orange),\ncaudate (blue)")
    fig.colorbar(
        image,
        cax=fig.add_axes((0.14, 0.455, 0.29, 0.012)),
        orientation="horizontal",
        label="Intensity / reference mean" if result.classified else "Intensity / maximum",
    )
    if result.classified:
        ax_sal = fig.add_axes((0.59, 0.52, 0.37, 0.28), sharex=ax_slab, sharey=ax_slab)
        _show_slab(ax_sal, result.slab, vmax)
        top = _robust_max(result.saliency)
        norm = Normalize(-top, top)
        _overlay(ax_sal, result.saliency, cmap=SIGNED_CMAP, norm=norm, vmax=top, gid="saliency")
        _striatum_outline(ax_sal, n_slices)
        _crop_box(ax_sal, crop)
        _slab_axes(ax_sal, crop, ylabel=False)
        ax_sal.set_title("CNN saliency (integrated gradients,\nred: towards reduced)")
        fig.colorbar(
            ScalarMappable(norm=norm, cmap=colormaps[SIGNED_CMAP]),
            cax=fig.add_axes((0.63, 0.455, 0.29, 0.012)),
            orientation="horizontal",
            label="Attribution (log-odds per pixel)",
        )
        if result.row.get("sbr_measurement"):
            for x, method in zip((0.12, 0.60), SBR_COLUMN, strict=True):
                _sbr_panel(fig.add_axes((x, 0.25, 0.35, 0.14)), model, result, method)
        _cnn_panel(fig.add_axes((0.12, 0.05, 0.83, 0.085)), model, result)
    save(fig, out, dpi)
    return fig
