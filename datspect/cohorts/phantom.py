"""The activity model of a [123I]FP-CIT brain scan on the MNI 2 mm grid.

The tracer concentration is built from anatomy: non-specific uptake in grey matter, white matter
and CSF (MNI152 tissue probabilities), a thin extracerebral shell (scalp and soft tissue, a
dilated brain mask separated from the brain by a skull gap), and specific dopamine-transporter
binding in the AAL caudate, putamen and pallidum.  Binding is expressed as a voxelwise specific
binding ratio (SBR: specific / non-specific concentration), so the striatal concentration is
``grey * (1 + sbr)``.  The geometry (padded grid, masks, antero-posterior position) is computed
once per process; per subject only the voxelwise SBR and the weighted sum are evaluated.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from datspect.space import anatomy

#: The binding regions of the model: AAL labels of :mod:`datspect.space.anatomy`.
STRIATAL_REGIONS = ("putamen_l", "putamen_r", "caudate_l", "caudate_r", "pallidum_l", "pallidum_r")

_VOXEL_MM = 2.0  # the MNI grid of `anatomy`


@dataclass(frozen=True)
class Geometry:
    """Anatomy on a padded, cropped MNI 2 mm grid (read-only arrays, shared per process).

    Attributes
    ----------
    affine : ndarray (4, 4)
        Voxel -> MNI mm of the cropped grid.
    shape : tuple of int
        Grid shape.
    grey, white, csf : ndarray, float32
        Tissue fractions inside the brain (0 outside); striatal voxels are pure grey matter.
    shell : ndarray, bool
        Extracerebral soft tissue (scalp).
    region_index : dict
        Flat voxel indices of each binding region (:data:`STRIATAL_REGIONS`).
    ap_position : dict
        Per region, the antero-posterior position of its voxels, 0 = most anterior, 1 = most
        posterior (MNI y).
    brain_corners_mm : ndarray (8, 3)
        Corners of the brain's bounding box in MNI mm (for field-of-view checks).
    """

    affine: np.ndarray
    shape: tuple
    grey: np.ndarray
    white: np.ndarray
    csf: np.ndarray
    shell: np.ndarray
    region_index: dict
    ap_position: dict
    brain_corners_mm: np.ndarray


def _corners(lo: np.ndarray, hi: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """MNI mm of the 8 corners of the voxel box ``lo..hi`` (inclusive)."""
    pts = np.array(
        [[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]
    )
    return pts @ affine[:3, :3].T + affine[:3, 3]


@functools.lru_cache(maxsize=4)
def geometry(shell_gap_mm: float, shell_thickness_mm: float, margin_mm: float) -> Geometry:
    """Build (once per process and parameter set) the anatomy of the activity model.

    Parameters
    ----------
    shell_gap_mm : float
        Distance between the brain surface and the inner surface of the extracerebral shell
        (skull and CSF space, no activity).
    shell_thickness_mm : float
        Thickness of the extracerebral shell.
    margin_mm : float
        Empty margin kept around the shell so that blurring does not run into the grid border.

    Returns
    -------
    Geometry
    """
    if shell_gap_mm < 0 or shell_thickness_mm < 0 or margin_mm < 0:
        raise ValueError("shell gap, shell thickness and margin must be >= 0 mm")
    # Pad the MNI grid so the shell and blur tails fit (the brain touches the grid's bottom).
    pad = int(np.ceil((shell_gap_mm + shell_thickness_mm + margin_mm) / _VOXEL_MM))
    brain = np.pad(anatomy.brain_mask(), pad)
    gm = np.pad(anatomy.tissue("gm"), pad)
    wm = np.pad(anatomy.tissue("wm"), pad)
    labels = np.pad(anatomy.aal(), pad)
    affine = anatomy.MNI_AFFINE.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.full(3, pad)

    dist = ndimage.distance_transform_edt(~brain, sampling=_VOXEL_MM)
    shell = (dist > shell_gap_mm) & (dist <= shell_gap_mm + shell_thickness_mm)
    head = brain | shell
    lo = np.argwhere(head).min(axis=0) - int(np.ceil(margin_mm / _VOXEL_MM))
    hi = np.argwhere(head).max(axis=0) + int(np.ceil(margin_mm / _VOXEL_MM))
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.array(brain.shape) - 1)
    crop = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
    affine[:3, 3] += affine[:3, :3] @ lo

    brain, gm, wm, labels, shell = (x[crop] for x in (brain, gm, wm, labels, shell))
    # Normalise the tissue fractions inside the brain; what is left is CSF.
    total = gm + wm
    over = total > 1.0
    gm = np.where(over, gm / np.maximum(total, 1e-6), gm)
    wm = np.where(over, wm / np.maximum(total, 1e-6), wm)
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    grey, white, csf = (np.where(brain, x, 0.0).astype(np.float32) for x in (gm, wm, csf))

    region_index, ap_position = {}, {}
    y_mm = (affine[1, 1] * np.arange(labels.shape[1]) + affine[1, 3])[None, :, None]
    y_mm = np.broadcast_to(y_mm, labels.shape).ravel()
    for name in STRIATAL_REGIONS:
        idx = np.flatnonzero(labels.ravel() == anatomy.AAL_LABELS[name])
        y = y_mm[idx]
        region_index[name] = idx
        ap_position[name] = ((y.max() - y) / max(y.max() - y.min(), 1e-6)).astype(np.float32)
        # Binding voxels are grey matter by definition of the model's non-specific level.
        grey.ravel()[idx], white.ravel()[idx], csf.ravel()[idx] = 1.0, 0.0, 0.0

    b = np.argwhere(brain)
    corners = _corners(b.min(axis=0), b.max(axis=0), affine)
    for arr in (grey, white, csf, shell, corners, affine, *region_index.values()):
        arr.flags.writeable = False
    for arr in ap_position.values():
        arr.flags.writeable = False
    return Geometry(affine, grey.shape, grey, white, csf, shell, region_index, ap_position, corners)


def putamen_profile(
    ap_position: np.ndarray,
    level: float,
    gradient: float,
    loss_anterior: float,
    loss_posterior: float,
    max_loss: float,
) -> np.ndarray:
    """Voxelwise SBR of one putamen: healthy A-P gradient times the remaining fraction.

    Parameters
    ----------
    ap_position : ndarray
        0 (anterior) .. 1 (posterior) for each voxel.
    level : float
        Healthy mean SBR of the region.
    gradient : float
        Healthy SBR difference between the anterior and the posterior end, as a fraction of
        ``level`` (posterior lower); the region mean stays ``level``.
    loss_anterior, loss_posterior : float
        Fraction of binding lost at the anterior and posterior end (linear in between).
    max_loss : float
        Upper bound of the lost fraction (some binding always remains).

    Returns
    -------
    ndarray, float32
    """
    t = ap_position
    healthy = level * (1.0 + gradient * (float(t.mean()) - t))
    loss = np.clip(loss_anterior + (loss_posterior - loss_anterior) * t, 0.0, max_loss)
    return np.maximum(healthy * (1.0 - loss), 0.0).astype(np.float32)


def activity(
    geo: Geometry,
    region_sbr: dict,
    grey: float,
    white: float,
    csf: float,
    extracerebral: float,
) -> np.ndarray:
    """Tracer concentration on the geometry's grid (arbitrary units, grey matter = ``grey``).

    Parameters
    ----------
    geo : Geometry
    region_sbr : dict
        For every name in :data:`STRIATAL_REGIONS`, the voxelwise SBR (array matching
        ``geo.region_index[name]``) or one scalar for the whole region.
    grey, white, csf, extracerebral : float
        Non-specific concentrations.

    Returns
    -------
    ndarray, float32
    """
    act = grey * geo.grey + white * geo.white + csf * geo.csf
    act += np.float32(extracerebral) * geo.shell
    flat = act.reshape(-1)
    for name in STRIATAL_REGIONS:
        flat[geo.region_index[name]] = grey * (1.0 + np.asarray(region_sbr[name], np.float32))
    return act.astype(np.float32, copy=False)
