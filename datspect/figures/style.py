"""What every figure shares: colours, the style, a new figure, its atomic save, a placeholder.

Every figure function takes the contract tables (or arrays) and an output path, draws on a
:class:`matplotlib.figure.Figure` with the non-interactive Agg canvas (no pyplot: no global
figure registry, nothing to close, safe in parallel jobs), writes it through
:func:`datspect.io.imageio.atomic_output` and returns the Figure so that callers and tests can check
what was drawn; it runs under :data:`STYLE` by the :func:`styled` decorator.  Colours are the
Okabe-Ito palette (colour-blind safe); every setting, label and method keeps one colour or name
across figures.
"""

from __future__ import annotations

import functools

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from datspect.io.imageio import atomic_output

DPI = 150
# Okabe-Ito colours; settings and labels never share one, so cutoff lines stand out on histograms.
SETTING_COLORS = {
    "original": "#0072B2",
    "smoothed": "#E69F00",
    "mixed": "#009E73",
    "augmented": "#CC79A7",
}
SETTING_LINESTYLES = {"original": "-", "smoothed": "--", "mixed": ":", "augmented": "-."}
LABEL_COLORS = {0: "#999999", 1: "#CC79A7"}
# Methods (figures where settings are panels): Okabe-Ito, with markers so they survive greyscale.
# Warm colours for the SBR methods, blue for the CNN; hatches and markers tell the SBRs apart.
METHOD_COLORS = {"sbr_aal": "#D55E00", "sbr_hv": "#E69F00", "cnn": "#0072B2"}
METHOD_MARKERS = {"sbr_aal": "o", "sbr_hv": "s", "cnn": "D"}
METHOD_HATCHES = {"sbr_aal": "", "sbr_hv": "//", "cnn": ""}
COHORT_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00")
#: AAL outlines on slabs (QC mosaic, classify page).
PUTAMEN_COLOR = "#E69F00"
CAUDATE_COLOR = "#56B4E9"
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


def styled(func):
    """Run a figure function under :data:`STYLE` (rc values are read when artists are made).

    The wrapper's ``style`` attribute is :data:`STYLE`, so tests can tell styled functions apart.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return func(*args, **kwargs)

    wrapper.style = STYLE
    return wrapper


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, out, dpi: int) -> None:
    # The temporary file keeps the target's extension, so savefig picks the same format.
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=dpi)


@styled
def placeholder(out, text: str, *, dpi: int = DPI) -> Figure:
    """A figure that says why there is nothing to show (keeps the report's file list fixed)."""
    fig = new_figure(6.0, 1.5)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    save(fig, out, dpi)
    return fig
