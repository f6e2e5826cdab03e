"""The study's vocabulary: methods, settings, which images a setting uses, and display names.

One place for the names every stage shares (the rules, the evaluation, the figures, the
exported model), so that a new method or setting is added once.
"""

from __future__ import annotations

#: Classification methods, in the study's order.
METHODS = ("sbr_aal", "sbr_hv", "cnn")
#: The semi-quantitative methods and the putamen SBR column each is scored on.
SBR_COLUMN = {"sbr_aal": "putamen", "sbr_hv": "hv_putamen"}
#: Training/test settings, in the study's order.
SETTINGS = ("original", "smoothed", "mixed")
#: The images every subject has; ``mixed`` pools both.
IMAGE_SETTINGS = ("original", "smoothed")
#: Which images of a subject a setting uses.
IMAGES_OF_SETTING = {
    "original": ("original",),
    "smoothed": ("smoothed",),
    "mixed": ("original", "smoothed"),
}
#: Images of independent cohorts are scored as acquired.
INDEPENDENT_IMAGES = ("original",)

METHOD_NAMES = {"sbr_aal": "AAL-SBR", "sbr_hv": "HV-SBR", "cnn": "CNN"}
#: How each SBR method delineates the putamen, for axis labels.
SBR_REGION_NAMES = {"sbr_aal": "AAL putamen ROI", "sbr_hv": "putamen hottest voxels"}
LABEL_NAMES = {0: "normal", 1: "reduced"}


def ordered(values, order) -> list:
    """Distinct ``values`` in a canonical ``order``, unknown ones after them, sorted.

    Parameters
    ----------
    values : iterable
        Method, setting or cohort names, repeats allowed.
    order : sequence
        The canonical order, e.g. :data:`METHODS` or :data:`SETTINGS`.
    """
    present = set(values)
    return [v for v in order if v in present] + sorted(present - set(order))
