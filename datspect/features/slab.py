"""CNN inputs on the MNI 2 mm grid: the study's 2D putamen slab and an optional 3D striatal box.

The slab is the mean of ``n_slices`` transversal slices centred on the AAL putamen, laid out as
the published PPMI PNG slabs: 109 rows along y (row 0 posterior, row 108 anterior; the striatum
sits around row 66) and 91 columns along the x index of the SPM grid.

**The 2D CNN input** (:func:`scale_slab`, one definition for every cohort): the slab divided by
its own mean inside the reference region projected onto the slab (:func:`slab_reference_mask`: a
pixel belongs when at least half of its ``n_slices`` voxels do).  A published PNG slab holds
nothing else, so a 3D volume is scaled the same way (:func:`make_slab` =
``scale_slab(project_to_slab(volume))``): slabs of 3D scans and of published PNGs share one scale,
and the result does not depend on the image's intensity unit.  The 3D box
(:func:`striatal_box`) has no slab equivalent and is divided by the 3D reference mean.

This module also holds the helpers every MNI-grid computation needs (shape/finiteness checks,
the reference means, the projection of a region onto the slab); :mod:`datspect.features.sbr`
builds on them.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from datspect.errors import InputError
from datspect.space import anatomy
from datspect.space.slab_grid import SLAB_SHAPE, putamen_slices


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


def reference_region(reference: str = "brain_without_striatum") -> np.ndarray:
    """Read-only reference mask on the MNI grid; an unknown name raises :class:`InputError`."""
    try:
        return anatomy.reference_mask(reference)
    except ValueError as err:
        raise InputError(f"reference: {err}") from None


def project_to_slab(volume: np.ndarray, n_slices: int = 5) -> np.ndarray:
    """Mean of the putamen slices of a 3D MNI-grid array, in slab layout (rows y, columns x)."""
    return volume[:, :, putamen_slices(n_slices)].mean(axis=2).T


def project_region(mask: np.ndarray, n_slices: int = 5, *, region: str) -> np.ndarray:
    """A 3D MNI-grid region projected onto the slab: pixels where at least half of the
    ``n_slices`` voxels belong to it; read-only boolean (109, 91).

    Raises
    ------
    InputError
        If the region does not reach the putamen slices.
    """
    proj = project_to_slab(np.asarray(mask, dtype=np.float64), n_slices) >= 0.5
    if not proj.any():
        raise InputError(
            f"slab: region {region!r} does not reach the {n_slices} putamen slices; use more "
            "slices or another region (e.g. reference 'brain_without_striatum')"
        )
    proj.flags.writeable = False
    return proj


@functools.lru_cache(maxsize=8)
def slab_reference_mask(n_slices: int = 5, reference: str = "brain_without_striatum") -> np.ndarray:
    """The reference region projected onto the slab (:func:`project_region`), read-only."""
    return project_region(reference_region(reference), n_slices, region=reference)


def check_slab(slab2d, *, name: str = "slab") -> np.ndarray:
    """Return ``slab2d`` as a float64 array after checking its shape (109, 91)."""
    arr = np.asarray(slab2d, dtype=np.float64)
    if arr.shape != SLAB_SHAPE:
        raise InputError(
            f"{name}: slab has shape {arr.shape}, expected {SLAB_SHAPE} (rows along y, columns "
            "along x of the MNI 2 mm grid); transpose or re-create it with datspect.features.slab"
        )
    return arr


def slab_reference_mean(
    slab2d, *, n_slices: int = 5, reference: str = "brain_without_striatum", name: str = "slab"
) -> float:
    """Mean of a (109, 91) slab in the projected reference region, checked to be positive."""
    arr = check_slab(slab2d, name=name)
    mean = masked_mean(arr, slab_reference_mask(n_slices, reference), name=name, region=reference)
    return positive_reference(mean, name=name, reference=reference)


def scale_slab(
    slab2d,
    *,
    n_slices: int = 5,
    reference: str = "brain_without_striatum",
    name: str = "slab",
) -> np.ndarray:
    """The study's 2D CNN input from a slab: the slab over its in-slab reference mean.

    The one definition for 3D-derived slabs (:func:`make_slab`) and published PNG slabs (a
    ``source: slabs`` cohort): the mean of the putamen slices divided by the mean of the slab
    inside the reference region projected onto it (:func:`slab_reference_mask`).  Invariant to
    the slab's intensity scale (8-bit PNG or counts).

    Parameters
    ----------
    slab2d : array_like
        Slab of shape (109, 91) (rows y, columns x), any positive intensity scale.
    n_slices : int
        Number of slices the slab averages (the projection of the reference region).
    reference : {"brain_without_striatum", "occipital"}
        Reference region (:func:`datspect.space.anatomy.reference_mask`).
    name : str
        Name of the image in error messages.

    Returns
    -------
    numpy.ndarray
        float32, shape (109, 91).

    Raises
    ------
    InputError
        Wrong shape, unknown reference, non-finite values, or a reference mean <= 0.
    """
    arr = check_slab(slab2d, name=name)
    ref = slab_reference_mean(arr, n_slices=n_slices, reference=reference, name=name)
    scaled = arr / ref
    if not np.all(np.isfinite(scaled)):
        raise InputError(
            f"{name}: non-finite values (NaN/inf) in the slab (the putamen slices); replace them "
            "or check the spatial normalization"
        )
    return scaled.astype(np.float32)


def make_slab(
    volume,
    n_slices: int = 5,
    reference: str = "brain_without_striatum",
    *,
    name: str = "volume",
) -> np.ndarray:
    """The study's 2D CNN input of a 3D volume: ``scale_slab(project_to_slab(volume))``.

    The mean of the putamen slices over its mean in the projected reference region
    (:func:`scale_slab`), exactly as a published PNG slab is scaled.

    Parameters
    ----------
    volume : array_like
        Normalized image on the MNI 2 mm grid, shape (91, 109, 91), axes (x, y, z).
    n_slices : int
        Number of transversal slices averaged (:func:`putamen_slices`).
    reference : {"brain_without_striatum", "occipital"}
        Region whose in-slab mean divides the slab.
    name : str
        Name of the image in error messages.

    Returns
    -------
    numpy.ndarray
        float32, shape (109, 91): row = y index (0 posterior .. 108 anterior), column = x index
        (column 0 = the subject's right on the SPM LAS grid).
    """
    arr = check_mni_volume(volume, name=name)
    return scale_slab(
        project_to_slab(arr, n_slices), n_slices=n_slices, reference=reference, name=name
    )


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
    """Optional 3D CNN input: the box around the striata over the 3D reference-region mean.

    Unlike the slab (:func:`scale_slab`), the box is divided by the mean of the 3D reference
    region (:func:`reference_mean`): a box has no slab equivalent, and only 3D cohorts have one.

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
