"""The config's ``sbr`` section as keyword arguments of the SBR functions of :mod:`.sbr`.

The one place where a key of ``config.yaml`` (``hv_volume_ml``) becomes an argument of an SBR
function (``volume_ml``): the workflow's rules, the robustness experiment and ``classify`` all go
through :func:`sbr_arguments`, so a scan is measured the same way in each.  No numpy here: the
rules call it while Snakemake plans, and importing :mod:`.sbr` would add ~0.3 s to every dry run.
"""

from __future__ import annotations

from collections.abc import Mapping


def sbr_arguments(sbr: Mapping, method: str, *, slab: bool = False) -> dict:
    """Keyword arguments of ``method``'s SBR function from the config's ``sbr`` section.

    Parameters
    ----------
    sbr : mapping
        The config's ``sbr`` section: ``reference``, ``combine`` and the ``hv_*`` keys.
    method : {"sbr_aal", "sbr_hv"}
        :func:`~datspect.features.sbr.aal_sbr` or :func:`~datspect.features.sbr.hv_sbr`.
    slab : bool
        Arguments of the slab variants instead (:func:`~datspect.features.sbr.aal_sbr_slab`,
        :func:`~datspect.features.sbr.hv_sbr_slab`, which also take ``n_slices``).

    Returns
    -------
    dict
        Only what ``method`` uses on that kind of image, so that a rule taking it as a parameter
        reruns exactly when one of those keys changes.
    """
    arguments = {"reference": sbr["reference"], "combine": sbr["combine"]}
    if method == "sbr_hv":
        arguments["margin_mm"] = sbr["hv_margin_mm"]
        arguments["exclude_caudate"] = sbr["hv_exclude_caudate"]
        if slab:
            arguments["area_mm2"] = sbr["hv_slab_area_mm2"]
        else:
            arguments["volume_ml"] = sbr["hv_volume_ml"]
    elif method != "sbr_aal":
        raise ValueError(f"no SBR method {method!r}; use sbr_aal or sbr_hv")
    return arguments
