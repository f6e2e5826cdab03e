"""Semi-quantitative analysis: specific binding ratios (SBR) on the MNI 2 mm grid.

``SBR = mean(target) / mean(reference) - 1``.  Two putamen measures of the study:

* **AAL-SBR** (:func:`aal_sbr`): the mean in the AAL putamen (caudate, striatum) of each side.
* **Hottest voxels** (:func:`hv_sbr`): per hemisphere, the mean of the hottest voxels adding up to
  a fixed volume inside a generous putamen VOI.  A fixed volume of the hottest voxels follows the
  activity even when the scan is slightly misregistered or blurred, where a fixed anatomical ROI
  loses counts.

Both have 2D variants for slabs (:func:`aal_sbr_slab`, :func:`hv_sbr_slab`), e.g. the published
PPMI PNG slabs, using the regions projected onto the slab slices (:func:`slab_masks`).  SBR is a
ratio, so a slab's unknown intensity scale (8-bit PNG) cancels.  The slab's reference mean
(:func:`~datspect.features.slab.slab_reference_mean`) is the one that scales the CNN's slab input
(:func:`~datspect.features.slab.scale_slab`).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from datspect.errors import InputError
from datspect.features.slab import (
    check_mni_volume,
    check_slab,
    masked_mean,
    project_region,
    reference_mean,
    slab_reference_mask,
    slab_reference_mean,
)
from datspect.space import anatomy

SIDES = ("l", "r")
_VOXEL_SIZE_MM = np.abs(np.diag(anatomy.MNI_AFFINE)[:3])
_VOXEL_ML = float(np.prod(_VOXEL_SIZE_MM)) / 1000.0
_PIXEL_MM2 = float(_VOXEL_SIZE_MM[0] * _VOXEL_SIZE_MM[1])


def _combine(left: float, right: float, combine: str) -> float:
    """Combine left and right SBR: ``min`` (the more affected side, default) or ``mean``."""
    if combine == "min":
        return min(left, right)
    if combine == "mean":
        return (left + right) / 2.0
    raise InputError(f"combine: {combine!r} is not supported; use 'min' or 'mean'")


@functools.lru_cache(maxsize=1)
def _hemispheres() -> dict[str, np.ndarray]:
    """Boolean masks of the left (world x < 0) and right (x > 0) hemisphere; midline in neither."""
    x_world = anatomy.mni_world_coords()[..., 0]
    masks = {"l": x_world < 0, "r": x_world > 0}
    for mask in masks.values():
        mask.flags.writeable = False
    return masks


@functools.lru_cache(maxsize=8)
def hv_voi(side: str, margin_mm: float = 6.0, exclude_caudate: bool = True) -> np.ndarray:
    """Generous putamen VOI of one hemisphere for the hottest-voxels analysis.

    Parameters
    ----------
    side : {"l", "r"}
        Hemisphere.
    margin_mm : float
        The AAL putamen of that side grown by this Euclidean distance (mm), clipped to the
        hemisphere.
    exclude_caudate : bool
        Drop voxels closer to the AAL caudate than to the putamen of that side.  The grown VOI
        otherwise takes a third of the caudate at 6 mm, whose preserved binding in early PD
        would mask putaminal loss.

    Returns
    -------
    numpy.ndarray
        Read-only boolean mask on the MNI grid.
    """
    if side not in SIDES:
        raise InputError(f"side: {side!r} must be 'l' or 'r'")
    if not margin_mm >= 0:
        raise InputError(f"margin_mm: {margin_mm!r} must be >= 0")
    putamen = anatomy.region(f"putamen_{side}")
    to_putamen = ndimage.distance_transform_edt(~putamen, sampling=_VOXEL_SIZE_MM)
    voi = (to_putamen <= margin_mm) & _hemispheres()[side]
    if exclude_caudate:
        caudate = anatomy.region(f"caudate_{side}")
        to_caudate = ndimage.distance_transform_edt(~caudate, sampling=_VOXEL_SIZE_MM)
        voi &= to_putamen <= to_caudate
    voi.flags.writeable = False
    return voi


def _aal_regions() -> dict[str, np.ndarray]:
    regions = {
        f"{r}_{s}": anatomy.region(f"{r}_{s}") for r in ("putamen", "caudate") for s in SIDES
    }
    for s in SIDES:
        regions[f"striatum_{s}"] = regions[f"putamen_{s}"] | regions[f"caudate_{s}"]
    return regions


def _aal_sbr_from(values: np.ndarray, regions: dict, ref: float, *, name: str, combine: str):
    out = {
        key: masked_mean(values, mask, name=name, region=key) / ref - 1.0
        for key, mask in regions.items()
    }
    for key in ("putamen", "caudate", "striatum"):
        out[key] = _combine(out[f"{key}_l"], out[f"{key}_r"], combine)
    out["reference_mean"] = ref
    return out


def aal_sbr(
    volume,
    *,
    reference: str = "brain_without_striatum",
    combine: str = "min",
    name: str = "volume",
) -> dict[str, float]:
    """Regional SBR in the AAL caudate, putamen and striatum (caudate + putamen) of each side.

    Parameters
    ----------
    volume : array_like
        Normalized image on the MNI 2 mm grid, shape (91, 109, 91).
    reference : {"brain_without_striatum", "occipital"}
        Reference region (:func:`datspect.space.anatomy.reference_mask`).
    combine : {"min", "mean"}
        How the unsuffixed keys combine left and right.
    name : str
        Name of the image (file, subject) in error messages.

    Returns
    -------
    dict
        ``putamen_l, putamen_r, caudate_l, caudate_r, striatum_l, striatum_r`` (striatum = mean
        over the union of caudate and putamen voxels), ``putamen, caudate, striatum`` (left/right
        combined) and ``reference_mean``.

    Raises
    ------
    InputError
        Wrong shape, unknown option, non-finite values in a region, or reference mean <= 0.
    """
    arr = check_mni_volume(volume, name=name)
    ref = reference_mean(arr, reference, name=name)
    return _aal_sbr_from(arr, _aal_regions(), ref, name=name, combine=combine)


def _n_hottest(amount: float, unit: float, what: str) -> int:
    n = int(round(amount / unit))
    if n < 1:
        raise InputError(f"{what}: {amount!r} is smaller than one voxel/pixel; use a larger value")
    return n


def _hottest_mean(values: np.ndarray, voi: np.ndarray, n: int, *, name: str, region: str):
    inside = values[voi]
    if n > inside.size:
        raise InputError(
            f"{name}: {n} hottest voxels/pixels requested but the {region} VOI has only "
            f"{inside.size}; lower the hottest-voxels volume/area or raise margin_mm"
        )
    if not np.all(np.isfinite(inside)):
        raise InputError(
            f"{name}: non-finite values (NaN/inf) inside the {region} VOI; replace them or check "
            "the spatial normalization"
        )
    return float(np.partition(inside, inside.size - n)[inside.size - n :].mean())


def _hv_from(values, vois, n, ref, *, name, combine):
    out = {
        f"hv_putamen_{s}": _hottest_mean(values, vois[s], n, name=name, region=f"putamen_{s}") / ref
        - 1.0
        for s in SIDES
    }
    out["hv_putamen"] = _combine(out["hv_putamen_l"], out["hv_putamen_r"], combine)
    return out


def hv_sbr(
    volume,
    *,
    volume_ml: float = 10.0,
    margin_mm: float = 6.0,
    reference: str = "brain_without_striatum",
    combine: str = "min",
    exclude_caudate: bool = True,
    name: str = "volume",
) -> dict[str, float]:
    """Putamen SBR by hottest-voxels (HV) analysis.

    Per hemisphere, the mean of the ``round(volume_ml * 1000 / 8)`` hottest voxels (2 mm voxels)
    inside :func:`hv_voi`, divided by the reference mean, minus 1.

    Parameters
    ----------
    volume : array_like
        Normalized image on the MNI 2 mm grid.
    volume_ml : float
        Total volume of the hottest voxels per hemisphere (10 ml = 1250 voxels, about 1.2x the
        AAL putamen of one side).
    margin_mm : float
        Growth of the AAL putamen that makes the VOI (:func:`hv_voi`).
    reference : {"brain_without_striatum", "occipital"}
        Reference region.
    combine : {"min", "mean"}
        How ``hv_putamen`` combines left and right.
    exclude_caudate : bool
        Keep the VOI off the caudate (:func:`hv_voi`).
    name : str
        Name of the image in error messages.

    Returns
    -------
    dict
        ``hv_putamen_l, hv_putamen_r, hv_putamen``.
    """
    arr = check_mni_volume(volume, name=name)
    ref = reference_mean(arr, reference, name=name)
    n = _n_hottest(volume_ml, _VOXEL_ML, "volume_ml")
    vois = {s: hv_voi(s, float(margin_mm), bool(exclude_caudate)) for s in SIDES}
    return _hv_from(arr, vois, n, ref, name=name, combine=combine)


@functools.lru_cache(maxsize=8)
def slab_masks(
    n_slices: int = 5,
    *,
    reference: str = "brain_without_striatum",
    margin_mm: float = 6.0,
    exclude_caudate: bool = True,
) -> dict[str, np.ndarray]:
    """Regions projected onto the slab of :func:`~datspect.features.slab.make_slab` (rows y,
    columns x).

    A pixel belongs to a region when at least half of its ``n_slices`` voxels do
    (:func:`~datspect.features.slab.project_region`); ``reference`` is
    :func:`~datspect.features.slab.slab_reference_mask`, the region whose mean scales the CNN's
    slab too.

    Returns
    -------
    dict
        Read-only boolean (109, 91) masks: ``putamen_l, putamen_r, caudate_l, caudate_r,
        striatum_l, striatum_r``, ``reference`` and the HV VOIs ``hv_voi_l, hv_voi_r``.
    """
    masks3d = dict(_aal_regions())
    for s in SIDES:
        masks3d[f"hv_voi_{s}"] = hv_voi(s, float(margin_mm), bool(exclude_caudate))
    out = {key: project_region(mask, n_slices, region=key) for key, mask in masks3d.items()}
    out["reference"] = slab_reference_mask(n_slices, reference)
    return out


def aal_sbr_slab(
    slab2d,
    *,
    n_slices: int = 5,
    reference: str = "brain_without_striatum",
    combine: str = "min",
    name: str = "slab",
) -> dict[str, float]:
    """AAL SBR of a 2D slab, with the regions projected by :func:`slab_masks`.

    Parameters
    ----------
    slab2d : array_like
        Slab of shape (109, 91), any intensity scale.
    n_slices : int
        Number of slices the slab averages (5 for the study's slabs).
    reference, combine, name
        As in :func:`aal_sbr`; the reference mean is taken within the slab.

    Returns
    -------
    dict
        The keys of :func:`aal_sbr`.
    """
    arr = check_slab(slab2d, name=name)
    masks = slab_masks(n_slices, reference=reference)
    ref = slab_reference_mean(arr, n_slices=n_slices, reference=reference, name=name)
    regions = {k: v for k, v in masks.items() if k.startswith(("putamen_", "caudate_", "striat"))}
    return _aal_sbr_from(arr, regions, ref, name=name, combine=combine)


def hv_sbr_slab(
    slab2d,
    *,
    area_mm2: float = 450.0,
    n_slices: int = 5,
    margin_mm: float = 6.0,
    reference: str = "brain_without_striatum",
    combine: str = "min",
    exclude_caudate: bool = True,
    name: str = "slab",
) -> dict[str, float]:
    """Hottest-pixels putamen SBR of a 2D slab.

    Per hemisphere, the mean of the ``round(area_mm2 / 4)`` hottest pixels inside the projected
    HV VOI, over the slab's reference mean, minus 1.

    Parameters
    ----------
    slab2d : array_like
        Slab of shape (109, 91), any intensity scale.
    area_mm2 : float
        Total area of the hottest pixels per hemisphere (450 mm^2 = 112 pixels, about 1.2x the
        projected AAL putamen of one side, matching the 10 ml default of :func:`hv_sbr`).
    n_slices, margin_mm, reference, combine, exclude_caudate, name
        As in :func:`slab_masks` and :func:`hv_sbr`.

    Returns
    -------
    dict
        ``hv_putamen_l, hv_putamen_r, hv_putamen``.
    """
    arr = check_slab(slab2d, name=name)
    masks = slab_masks(
        n_slices, reference=reference, margin_mm=float(margin_mm), exclude_caudate=exclude_caudate
    )
    ref = slab_reference_mean(arr, n_slices=n_slices, reference=reference, name=name)
    n = _n_hottest(area_mm2, _PIXEL_MM2, "area_mm2")
    vois = {s: masks[f"hv_voi_{s}"] for s in SIDES}
    return _hv_from(arr, vois, n, ref, name=name, combine=combine)
