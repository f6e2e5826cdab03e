"""The realism figure: simulated vs real slabs (results/figures/realism.png)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from datspect.evaluation import realism
from datspect.figures.style import DPI, LABEL_COLORS, new_figure, save, styled
from datspect.space.anatomy import MNI_AFFINE

SIM_COLOR, REAL_COLOR = "#D55E00", "#0072B2"
CLASS_NAMES = {0: "normal", 1: "reduced"}


@styled
def realism_figure(
    sim: np.ndarray,
    sim_labels,
    real: np.ndarray,
    real_labels,
    out,
    *,
    sbr: Mapping,
    n_slices: int = 5,
    dpi: int = DPI,
) -> Figure:
    """Class-mean slabs (simulated, real, difference), slab-SBR histograms, putamen profiles
    along y (posterior to anterior), fine-scale noise (high-pass SD per image) and its radial
    noise power spectrum.

    Slabs are reference-scaled (:func:`datspect.evaluation.realism.scaled_slab`), shown with the
    origin at the bottom (anterior at the top); simulated and real share one grey scale per class,
    the difference (simulated - real) a symmetric colour scale.
    """
    sim_labels, real_labels = np.asarray(sim_labels), np.asarray(real_labels)
    sim_sbr = realism.slab_sbr(sim, sbr, n_slices)
    real_sbr = realism.slab_sbr(real, sbr, n_slices)
    fig = new_figure(13.0, 9.0)
    grid = fig.add_gridspec(3, 4)
    for row, label in enumerate(realism.LABELS):
        s, r = sim[sim_labels == label], real[real_labels == label]
        if not len(s) or not len(r):
            continue
        s_mean, r_mean = s.mean(axis=0), r.mean(axis=0)
        vmax = max(np.percentile(s_mean, 99.9), np.percentile(r_mean, 99.9))
        for col, (title, img) in enumerate(
            ((f"simulated (n={len(s)})", s_mean), (f"real (n={len(r)})", r_mean))
        ):
            ax = fig.add_subplot(grid[row, col])
            im = ax.imshow(img, origin="lower", cmap="gray", vmin=0, vmax=vmax)
            ax.set_title(f"{CLASS_NAMES[label]}: {title}")
            ax.set_axis_off()
        fig.colorbar(im, ax=ax, shrink=0.8, label="/ reference mean")
        ax = fig.add_subplot(grid[row, 2])
        diff = s_mean - r_mean
        lim = float(np.abs(diff).max()) or 1.0
        im = ax.imshow(diff, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"{CLASS_NAMES[label]}: simulated - real")
        ax.set_axis_off()
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax = fig.add_subplot(grid[row, 3])
        rows, s_prof = realism.putamen_profile(s_mean, n_slices)
        _, r_prof = realism.putamen_profile(r_mean, n_slices)
        y_mm = MNI_AFFINE[1, 3] + MNI_AFFINE[1, 1] * rows
        ax.plot(y_mm, s_prof, color=SIM_COLOR, label="simulated")
        ax.plot(y_mm, r_prof, color=REAL_COLOR, label="real")
        ax.set_xlabel("MNI y (mm), posterior to anterior")
        ax.set_ylabel("putamen mean / reference")
        ax.set_title(f"{CLASS_NAMES[label]}: putamen profile")
        ax.legend(frameon=False)
    for col, method in enumerate(("sbr_aal", "sbr_hv")):
        ax = fig.add_subplot(grid[2, col])
        values = np.r_[sim_sbr[method], real_sbr[method]]
        bins = np.linspace(values.min(), values.max(), 30)
        for label in realism.LABELS:
            ax.hist(
                real_sbr[method][real_labels == label],
                bins=bins,
                density=True,
                color=LABEL_COLORS[label],
                alpha=0.5,
                label=f"real {CLASS_NAMES[label]}",
            )
            ax.hist(
                sim_sbr[method][sim_labels == label],
                bins=bins,
                density=True,
                histtype="step",
                color=SIM_COLOR,
                linestyle="-" if label == 0 else "--",
                linewidth=1.5,
                label=f"simulated {CLASS_NAMES[label]}",
            )
        ax.set_xlabel(f"{method} slab SBR (putamen)")
        ax.set_ylabel("density")
        ax.legend(frameon=False)
    ax = fig.add_subplot(grid[2, 2])
    s_hp, r_hp = realism.highpass_sd(sim), realism.highpass_sd(real)
    bins = np.linspace(0, max(s_hp.max(), r_hp.max()) * 1.05, 40)
    ax.hist(r_hp, bins=bins, density=True, color=REAL_COLOR, alpha=0.5, label="real")
    ax.hist(
        s_hp,
        bins=bins,
        density=True,
        histtype="step",
        color=SIM_COLOR,
        linewidth=1.5,
        label="simulated",
    )
    ax.set_xlabel(f"SD of slab - blur (sigma {realism.HIGHPASS_SIGMA:g} px), striatal window")
    ax.set_ylabel("density")
    ax.set_title("fine-scale noise per image")
    ax.legend(frameon=False)
    ax = fig.add_subplot(grid[2, 3])
    for label in realism.LABELS:
        for slabs, labels, color, name in (
            (sim, sim_labels, SIM_COLOR, "simulated"),
            (real, real_labels, REAL_COLOR, "real"),
        ):
            if np.any(labels == label):
                freq, power = realism.noise_power_spectrum(slabs[labels == label])
                ax.semilogy(
                    freq,
                    power,
                    color=color,
                    linestyle="-" if label == 0 else "--",
                    label=f"{name} {CLASS_NAMES[label]}",
                )
    ax.set_xlabel("radial frequency (cycles/mm)")
    ax.set_ylabel("noise power (median)")
    ax.set_title("noise power spectrum (fine-scale residual)")
    ax.legend(frameon=False, fontsize="small")
    save(fig, out, dpi)
    return fig
