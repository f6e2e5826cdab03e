"""CNN inputs on the MNI 2 mm grid: the study's 2D putamen slab and an optional 3D striatal box.

The slab is the mean of ``n_slices`` transversal slices centred on the AAL putamen, laid out as
the published PPMI PNG slabs: 109 rows along y (row 0 posterior, row 108 anterior; the striatum
sits around row 66) and 91 columns along the x index of the SPM grid.  Intensities are divided by
the mean of the reference region of the 3D volume, so slabs of different scans share one scale.

This module also holds the two helpers every MNI-grid computation needs (shape/finiteness checks
and the reference mean); :mod:`datspect.features.sbr` builds on them.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from datspect.errors import InputError
from datspect.space import anatomy
from datspect.space.slab_grid import putamen_slices


def check_mni_volume(volume, *, name: str = "volume") -> np.ndarray:
    """Return ``volume`` as a float64 array after checking that it lies on the MNI 2 mm grid.

    Parameters
    ----------
    volume : array_like
        Image data, shape :data:`datspect.space.anatomy.MNI_SHAPE` (91, 109, 91).
    name : str
        How the caller names the image (file path or key) in error messages.

    Raises
    ------
    InputError
        If the shape is not the MNI grid.
    """
    arr = np.asarray(volume, dtype=np.float64)
    if arr.shape != anatomy.MNI_SHAPE:
        raise InputError(
            f"{name}: image has shape {arr.shape}, expected the MNI 2 mm grid "
            f"{anatomy.MNI_SHAPE}; spatially normalize it first (preprocess step)"
        )
    return arr


def masked_mean(values: np.ndarray, mask: np.ndarray, *, name: str, region: str) -> float:
    """Mean of ``values`` inside ``mask``; raise :class:`InputError` on empty or non-finite data."""
    if not mask.any():
        raise InputError(f"{name}: region {region!r} is empty on this grid; choose another region")
    inside = values[mask]
    if not np.all(np.isfinite(inside)):
        raise InputError(
            f"{name}: {int(np.sum(~np.isfinite(inside)))} non-finite values (NaN/inf) inside "
            f"region {region!r}; replace them (e.g. NaN outside the field of view -> 0) or check "
            "the spatial normalization"
        )
    return float(inside.mean())


def reference_mean(
    volume, reference: str = "brain_without_striatum", *, name: str = "volume"
) -> float:
    """Mean of a 3D MNI-grid volume in the reference region, checked to be positive.

    Parameters
    ----------
    volume : array_like
        Image on the MNI 2 mm grid.
    reference : {"brain_without_striatum", "occipital"}
        Reference region (:func:`datspect.space.anatomy.reference_mask`).
    name : str
        Name of the image in error messages.

    Raises
    ------
    InputError
        Wrong shape, unknown reference, non-finite values in the region, or a mean <= 0.
    """
    arr = check_mni_volume(volume, name=name)
    mean = masked_mean(arr, reference_region(reference), name=name, region=reference)
    return positive_reference(mean, name=name, reference=reference)


def positive_reference(mean: float, *, name: str, reference: str) -> float:
    """Return ``mean`` if > 0, else raise: a ratio to a non-positive reference is meaningless."""
    if not mean > 0:
        raise InputError(
            f"{name}: mean in reference region {reference!r} is {mean:g}, must be > 0; check that "
            "the image is a normalized DAT-SPECT with counts (not an empty, negative or "
            "mis-registered image)"
        )
    return mean


@functools.lru_cache(maxsize=4)
def reference_region(reference: str = "brain_without_striatum") -> np.ndarray:
    """Read-only reference mask on the MNI grid; an unknown name raises :class:`InputError`."""
    try:
        mask = anatomy.reference_mask(reference)
    except ValueError as err:
        raise InputError(f"reference: {err}") from None
    mask.flags.writeable = False
    return mask


def project_to_slab(volume: np.ndarray, n_slices: int = 5) -> np.ndarray:
    """Mean of the putamen slices of a 3D MNI-grid array, in slab layout (rows y, columns x)."""
    return volume[:, :, putamen_slices(n_slices)].mean(axis=2).T


def make_slab(
    volume,
    n_slices: int = 5,
    reference: str = "brain_without_striatum",
    *,
    name: str = "volume",
) -> np.ndarray:
    """The study's 2D CNN input: the reference-normalized mean of the putamen slices.

    Parameters
    ----------
    volume : array_like
        Normalized image on the MNI 2 mm grid, shape (91, 109, 91), axes (x, y, z).
    n_slices : int
        Number of transversal slices averaged (:func:`putamen_slices`).
    reference : {"brain_without_striatum", "occipital"}
        Region whose 3D mean divides the slab.
    name : str
        Name of the image in error messages.

    Returns
    -------
    numpy.ndarray
        float32, shape (109, 91): row = y index (0 posterior .. 108 anterior), column = x index
        (column 0 = the subject's right on the SPM LAS grid).
    """
    arr = check_mni_volume(volume, name=name)
    ref = reference_mean(arr, reference, name=name)
    slab = project_to_slab(arr, n_slices) / ref
    if not np.all(np.isfinite(slab)):
        raise InputError(
            f"{name}: non-finite values (NaN/inf) in the putamen slices; replace them or check "
            "the spatial normalization"
        )
    return slab.astype(np.float32)


@functools.lru_cache(maxsize=8)
def striatal_box_slices(margin_mm: float = 8.0) -> tuple[slice, slice, slice]:
    """Index box around both striata (AAL caudate, putamen, pallidum) grown by ``margin_mm``."""
    if not margin_mm >= 0:
        raise InputError(f"margin_mm: {margin_mm!r} must be >= 0")
    striata = (
        anatomy.region("striatum") | anatomy.region("pallidum_l") | anatomy.region("pallidum_r")
    )
    (box,) = ndimage.find_objects(striata.astype(np.int8))
    grow = int(np.ceil(margin_mm / 2.0))  # 2 mm voxels
    return tuple(
        slice(max(s.start - grow, 0), min(s.stop + grow, n))
        for s, n in zip(box, anatomy.MNI_SHAPE, strict=True)
    )


def striatal_box(
    volume,
    *,
    margin_mm: float = 8.0,
    reference: str = "brain_without_striatum",
    name: str = "volume",
) -> np.ndarray:
    """Optional 3D CNN input: the reference-normalized box around the striata.

    Parameters
    ----------
    volume : array_like
        Normalized image on the MNI 2 mm grid, axes (x, y, z).
    margin_mm : float
        Margin added on every side of the bounding box of the AAL striata (rounded up to whole
        2 mm voxels and clipped to the grid).  The box is fixed on the grid, so every scan gives
        the same shape (44 x 35 x 28 voxels for 8 mm).
    reference : {"brain_without_striatum", "occipital"}
        Region whose 3D mean divides the box.
    name : str
        Name of the image in error messages.

    Returns
    -------
    numpy.ndarray
        float32 box, axes (x, y, z) as the input.
    """
    arr = check_mni_volume(volume, name=name)
    ref = reference_mean(arr, reference, name=name)
    box = arr[striatal_box_slices(float(margin_mm))] / ref
    if not np.all(np.isfinite(box)):
        raise InputError(
            f"{name}: non-finite values (NaN/inf) around the striata; replace them or check the "
            "spatial normalization"
        )
    return box.astype(np.float32)


def cnn_input(
    volume,
    kind: str = "slab",
    *,
    n_slices: int = 5,
    box_margin_mm: float = 8.0,
    reference: str = "brain_without_striatum",
    name: str = "volume",
) -> np.ndarray:
    """The CNN input of ``cnn.input`` kind: :func:`make_slab` (``slab``) or :func:`striatal_box`."""
    if kind == "slab":
        return make_slab(volume, n_slices, reference, name=name)
    if kind == "box":
        return striatal_box(volume, margin_mm=box_margin_mm, reference=reference, name=name)
    raise InputError(f"cnn.input: {kind!r} is not a CNN input kind; use 'slab' or 'box'")
