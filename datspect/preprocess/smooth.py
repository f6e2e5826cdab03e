"""Isotropic Gaussian smoothing given as FWHM in millimetres.

The study's ``smoothed`` setting adds a 3D Gaussian of 18 mm FWHM to every scan, which mimics a
camera/reconstruction of poorer resolution.  The FWHM is physical, so the kernel's sigma in voxels
follows each axis' voxel size (anisotropic voxels get different sigmas per axis).

Boundary: ``mode="constant"`` (zeros outside the array).  A SPECT field of view ends in air, where
there is no activity, so zero is the physically right continuation; ``"nearest"`` would replicate
the edge voxels outwards and, where the field of view cuts through the head (cerebellum, vertex),
smear invented activity back into the image and bias the reference region.  The price is that
counts within a few sigma of the array border leak out of the array; they are preserved everywhere
else.
"""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
from nibabel.affines import voxel_sizes
from nibabel.processing import fwhm2sigma
from scipy import ndimage

from datspect.errors import InputError

#: Kernel radius in sigmas (scipy's default): the truncated tail holds < 1e-4 of the mass.
_TRUNCATE = 4.0


def _check_fwhm(fwhm_mm: float) -> float:
    fwhm = float(fwhm_mm)
    if not math.isfinite(fwhm) or fwhm <= 0:
        raise InputError(
            f"preprocess.smooth_fwhm_mm must be a positive number of millimetres, got {fwhm_mm!r}; "
            "set it in config.yaml (the study used 18)."
        )
    return fwhm


def smooth_fwhm(img: nib.Nifti1Image, fwhm_mm: float) -> nib.Nifti1Image:
    """Smooth a 3D image with an isotropic Gaussian of ``fwhm_mm`` (mm).

    Parameters
    ----------
    img : nibabel.Nifti1Image
        3D image; voxel sizes come from its affine (rotations are fine; for a sheared affine the
        per-axis sigma is an approximation).
    fwhm_mm : float
        Full width at half maximum of the kernel in millimetres, > 0.

    Returns
    -------
    nibabel.Nifti1Image
        Smoothed float32 image with the same affine and header.

    Raises
    ------
    InputError
        ``fwhm_mm`` is not a positive finite number (config key ``preprocess.smooth_fwhm_mm``).
    """
    fwhm = _check_fwhm(fwhm_mm)
    data = np.asarray(img.dataobj, dtype=np.float64)
    if data.ndim != 3:
        raise ValueError(f"smooth_fwhm needs a 3D image, got shape {data.shape}")
    # Not nibabel's smooth_image: its sigma, fwhm2sigma(fwhm / voxel), differs in the last bit.
    sigma_vox = fwhm2sigma(fwhm) / voxel_sizes(img.affine)
    out = ndimage.gaussian_filter(data, sigma_vox, mode="constant", cval=0.0, truncate=_TRUNCATE)
    result = nib.Nifti1Image(out.astype(np.float32), img.affine, header=img.header)
    result.set_data_dtype(np.float32)
    return result


def smooth_fwhm_2d(
    array2d: np.ndarray, fwhm_mm: float, pixel_mm: float | tuple[float, float]
) -> np.ndarray:
    """Smooth a 2D array (e.g. a transversal slab) with an isotropic Gaussian of ``fwhm_mm``.

    Parameters
    ----------
    array2d : numpy.ndarray
        2D image.
    fwhm_mm : float
        Kernel FWHM in millimetres, > 0.
    pixel_mm : float or (float, float)
        Pixel size in mm, one value or one per axis (axis 0, axis 1).

    Returns
    -------
    numpy.ndarray
        Smoothed float32 array, same shape; zeros assumed outside (see the module docstring).
    """
    fwhm = _check_fwhm(fwhm_mm)
    arr = np.asarray(array2d, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"smooth_fwhm_2d needs a 2D array, got shape {arr.shape}")
    pixel = np.broadcast_to(np.asarray(pixel_mm, dtype=np.float64), (2,))
    if not np.all(pixel > 0):
        raise ValueError(f"pixel_mm must be positive, got {pixel_mm!r}")
    sigma_pix = fwhm2sigma(fwhm) / pixel
    out = ndimage.gaussian_filter(arr, sigma_pix, mode="constant", cval=0.0, truncate=_TRUNCATE)
    return out.astype(np.float32)
