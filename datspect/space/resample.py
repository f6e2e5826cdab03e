"""Trilinear resampling of a voxel grid through an affine: one implementation for the
simulator's camera sampling and the normalization's MNI resampling.

SimpleITK rather than ``scipy.ndimage.affine_transform``: the same trilinear values (both
interpolate in double precision: equal to the last bit between the outermost voxel centres) in
a third of the time. ITK takes a voxel's value out to its outer face, half a voxel beyond the
outermost centre, where ndimage's ``constant`` mode already gives 0; points beyond that are 0.
"""

from __future__ import annotations

import numpy as np

_INTERPOLATORS = {0: "sitkNearestNeighbor", 1: "sitkLinear"}


def affine_resample(
    data: np.ndarray,
    out_from_in: np.ndarray,
    output_shape: tuple[int, ...],
    order: int = 1,
    threads: int = 1,
) -> np.ndarray:
    """``data`` sampled at ``out_from_in @ (i, j, k, 1)`` for every output voxel ``(i, j, k)``.

    Parameters
    ----------
    data : numpy.ndarray
        3D input volume.
    out_from_in : numpy.ndarray
        4x4 voxel -> voxel affine mapping output indices to input indices (the matrix that
        ``scipy.ndimage.affine_transform`` takes).
    output_shape : tuple of int
    order : {0, 1}
        0 nearest neighbour, 1 trilinear.
    threads : int
        ITK threads (the result does not depend on them).

    Returns
    -------
    numpy.ndarray
        float32, ``output_shape``.
    """
    import SimpleITK as sitk

    if order not in _INTERPOLATORS:
        raise ValueError(f"order must be 0 (nearest) or 1 (trilinear), not {order!r}")
    matrix = np.asarray(out_from_in, dtype=np.float64)
    # ITK stores arrays as (k, j, i); with unit spacing at the origin its points are indices.
    image = sitk.GetImageFromArray(np.ascontiguousarray(data, dtype=np.float32).transpose(2, 1, 0))
    resample = sitk.ResampleImageFilter()
    resample.SetNumberOfThreads(int(threads))
    resample.SetSize([int(n) for n in output_shape])
    resample.SetTransform(
        sitk.AffineTransform(matrix[:3, :3].ravel().tolist(), matrix[:3, 3].tolist())
    )
    resample.SetInterpolator(getattr(sitk, _INTERPOLATORS[order]))
    resample.SetDefaultPixelValue(0.0)
    resample.SetOutputPixelType(sitk.sitkFloat32)
    return np.ascontiguousarray(sitk.GetArrayFromImage(resample.Execute(image)).transpose(2, 1, 0))
