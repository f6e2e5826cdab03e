"""Where a 2D slab sits on the MNI 2 mm grid, and how a slab is stored as NIfTI.

A slab is the mean of ``n_slices`` transversal slices centred on the AAL putamen, laid out as
the published PPMI PNG slabs: 109 rows along y, 91 columns along the x index of the SPM grid.
Slab cohorts store each slab as a one-slice NIfTI at the centre of those slices.
"""

from __future__ import annotations

import functools

import nibabel as nib
import numpy as np

from datspect.errors import InputError
from datspect.space import anatomy

#: Pixel size of a slab: the MNI grid's voxel size in x and y.
PIXEL_MM = 2.0
#: Shape of a slab: rows along y (posterior -> anterior), columns along the x index.
SLAB_SHAPE = (anatomy.MNI_SHAPE[1], anatomy.MNI_SHAPE[0])


@functools.lru_cache(maxsize=8)
def putamen_slices(n_slices: int = 5) -> np.ndarray:
    """Indices along z of the ``n_slices`` transversal slices centred on the AAL putamen.

    The centre is the z index nearest to the centroid of the AAL putamen (both sides) on the MNI
    grid (z index 37, i.e. z = 2 mm).  For an even count the extra slice goes superior.

    Parameters
    ----------
    n_slices : int
        Number of 2 mm slices (5 = a 10 mm slab, as in the study).

    Returns
    -------
    numpy.ndarray
        Sorted int indices into the third (z) axis of the MNI grid, read-only.
    """
    if not isinstance(n_slices, (int, np.integer)) or not 1 <= n_slices <= anatomy.MNI_SHAPE[2]:
        raise InputError(
            f"n_slices: {n_slices!r} must be an integer between 1 and {anatomy.MNI_SHAPE[2]}"
        )
    z_centroid = np.argwhere(anatomy.region("putamen"))[:, 2].mean()
    start = int(np.floor(z_centroid - (n_slices - 1) / 2 + 0.5))
    start = min(max(start, 0), anatomy.MNI_SHAPE[2] - n_slices)
    idx = np.arange(start, start + n_slices)
    idx.flags.writeable = False
    return idx


def slab_affine(n_slices: int) -> np.ndarray:
    """MNI affine of a one-slice image at the centre of the putamen slices, ``n_slices`` thick."""
    affine = anatomy.MNI_AFFINE.copy()
    z = putamen_slices(n_slices).mean()
    affine[:3, 3] += affine[:3, 2] * z
    affine[:3, 2] *= n_slices
    return affine


def slab_to_nifti(slab2d: np.ndarray, n_slices: int) -> nib.Nifti1Image:
    """A (109, 91) slab as a (91, 109, 1) NIfTI on the MNI grid (x, y, one z slice)."""
    data = np.asarray(slab2d, dtype=np.float32).T[:, :, None]
    return nib.Nifti1Image(data, slab_affine(n_slices))


def is_slab(array: np.ndarray) -> bool:
    """Whether an array loaded from a NIfTI is a stored slab rather than an MNI volume."""
    return array.shape == (SLAB_SHAPE[1], SLAB_SHAPE[0], 1)


def as_slab(array: np.ndarray) -> np.ndarray:
    """The (109, 91) slab of an array stored by :func:`slab_to_nifti`."""
    return array[:, :, 0].T
