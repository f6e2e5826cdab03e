"""The study's vocabulary: methods, settings, which images a setting uses, and display names.

One place for the names every stage shares (the rules, the evaluation, the figures, the
exported model), so that a new method or setting is added once.
"""

from __future__ import annotations

import re

#: Classification methods, in the study's order.
METHODS = ("sbr_aal", "sbr_hv", "cnn")
#: The semi-quantitative methods and the putamen SBR column each is scored on.
SBR_COLUMN = {"sbr_aal": "putamen", "sbr_hv": "hv_putamen"}
#: The study's training/test settings, in its order (the default run's).
STUDY_SETTINGS = ("original", "smoothed", "mixed")
#: Every setting: the study's, then ``augmented`` (beyond it: trained on original images degraded
#: at random, :mod:`datspect.cnn.data`).
SETTINGS = (*STUDY_SETTINGS, "augmented")
#: The images every subject has; ``mixed`` pools both.
IMAGE_SETTINGS = ("original", "smoothed")
#: Which images of a subject a setting is tested on.
IMAGES_OF_SETTING = {
    "original": ("original",),
    "smoothed": ("smoothed",),
    "mixed": ("original", "smoothed"),
    "augmented": ("original", "smoothed"),
}
#: Which images of a subject a setting is trained and selected on: ``augmented`` asks whether
#: degrading homogeneous images replaces the smoothed ones that ``mixed`` needs.
TRAINING_IMAGES = IMAGES_OF_SETTING | {"augmented": ("original",)}
#: Settings of one method only: an SBR cutoff has nothing to augment.
CNN_ONLY_SETTINGS = ("augmented",)
#: Settings whose models also score the independent cohorts (the robust ones).
INDEPENDENT_SETTINGS = ("mixed", "augmented")
#: Images of independent cohorts are scored as acquired.
INDEPENDENT_IMAGES = ("original",)


def method_settings(methods, settings) -> list[tuple[str, str]]:
    """The (method, setting) pairs a run trains: every pair but SBR methods in CNN-only
    settings."""
    return [(m, s) for m in methods for s in settings if m == "cnn" or s not in CNN_ONLY_SETTINGS]


METHOD_NAMES = {"sbr_aal": "AAL-SBR", "sbr_hv": "HV-SBR", "cnn": "CNN"}
#: How each SBR method delineates the putamen, for axis labels.
SBR_REGION_NAMES = {"sbr_aal": "AAL putamen ROI", "sbr_hv": "putamen hottest voxels"}
LABEL_NAMES = {0: "normal", 1: "reduced"}

#: The one rule for subject ids: they become file and folder names and Snakemake's ``subject``
#: wildcard (rules/common.smk constrains it with this pattern), so ASCII only (no Unicode
#: look-alikes), no leading '.' (a hidden file) or '-' (read as an option), short enough for
#: any file system.
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
ID_RULE = "ASCII letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64"
#: Cohort names follow the id rule and also start with a letter and hold no '.': they key config
#: sections and are joined into the ``cohort`` wildcard unescaped (the schema's propertyNames).
COHORT_PATTERN = r"[A-Za-z][A-Za-z0-9_-]{0,63}"


def id_problem(value: str) -> str | None:
    """What keeps ``value`` from being a subject id (:data:`ID_PATTERN`), or None if it is one."""
    if re.fullmatch(ID_PATTERN, value):
        return None
    bad = sorted({ch for ch in value if not re.fullmatch(r"[A-Za-z0-9._-]", ch)})
    if bad:
        return "holds " + ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in bad)
    if len(value) > 64:
        return f"is {len(value)} characters long"
    return f"starts with {value[:1]!r}" if value else "is empty"


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
