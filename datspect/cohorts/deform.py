"""Between-subject anatomy: a smooth, invertible random deformation of the MNI anatomy.

Every real brain differs from the template in ways an affine spatial normalization cannot undo,
and that residual misalignment is what makes a fixed ROI (the AAL putamen) lose part of the
striatum and gain white matter or CSF.  The simulator warps each subject's activity map with the
sum of three displacement fields, all in MNI mm:

* a smooth random field: cubic B-spline of independent Gaussian coefficients on a control grid
  of ``spacing_mm`` (shape and position of structures), scaled to an RMS displacement of
  ``amplitude_mm`` per axis;
* per hemisphere, a local scaling of the striatum about its centroid by a log-normal factor of
  log-SD ``striatal_scale_cv`` (striatal size), inside a Gaussian window;
* an expansion of the lateral ventricles about their centroid that grows with age
  (``ventricle_expansion_per_decade`` above ``binding.age_ref``; the ventricles enlarge with
  atrophy and push the caudate heads outwards).

The warped image is ``act(x + u(x))`` (pull-back). The map ``x -> x + u(x)`` is a
diffeomorphism when the displacement's Jacobian has norm < 1 everywhere; the field is scaled down
to a Frobenius norm of at most :data:`MAX_GRADIENT` (which bounds the spectral norm), so every
warp is invertible, and :func:`invert` recovers the inverse by fixed-point iteration.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

#: Keys of ``simulation.anatomy`` that switch the deformation on when any is > 0.
SIZE_KEYS = ("amplitude_mm", "striatal_scale_cv", "ventricle_expansion_per_decade", "ventricle_cv")
#: Largest Frobenius norm of the displacement gradient allowed (< 1 keeps the warp invertible;
#: the margin keeps the fixed-point inversion fast).
MAX_GRADIENT = 0.8
#: Width (Gaussian sigma, mm) of the windows of the striatal and ventricular scalings: about
#: the half-length of a striatum, so the scaling fades out within the neighbouring structures.
WINDOW_SIGMA_MM = 15.0
#: The lateral ventricles near the striata: CSF-dominated voxels in this MNI box (mm).
VENTRICLE_BOX_MM = ((-25.0, 25.0), (-40.0, 30.0), (0.0, 35.0))


def _bspline3(t: np.ndarray) -> np.ndarray:
    """The cubic B-spline kernel."""
    a = np.abs(t)
    return np.where(
        a < 1.0,
        2.0 / 3.0 - a**2 + a**3 / 2.0,
        np.where(a < 2.0, (2.0 - a) ** 3 / 6.0, 0.0),
    )


def _basis(n: int, spacing_vox: float) -> np.ndarray:
    """(n, m) cubic B-spline weights of ``m`` control points spaced ``spacing_vox`` apart,
    normalized so that i.i.d. unit coefficients give unit variance on average."""
    m = int(math.ceil((n - 1) / spacing_vox)) + 4
    t = np.arange(n)[:, None] / spacing_vox + 1.0 - np.arange(m)[None, :]
    b = _bspline3(t)
    return b / math.sqrt(float(np.mean(np.sum(b**2, axis=1))))


def random_field(
    rng: np.random.Generator, shape, voxel_mm: float, spacing_mm: float, amplitude_mm: float
) -> np.ndarray:
    """A smooth random displacement field, shape ``(3, *shape)`` in mm (B-spline, see module)."""
    if amplitude_mm <= 0:
        return np.zeros((3, *shape), dtype=np.float32)
    bases = [_basis(n, spacing_mm / voxel_mm) for n in shape]
    coeff = rng.standard_normal((3, *(b.shape[1] for b in bases)))
    field = np.einsum("ai,bj,ck,dijk->dabc", *bases, coeff, optimize=True)
    return (amplitude_mm * field).astype(np.float32)


def _grid_mm(shape, affine: np.ndarray) -> np.ndarray:
    """MNI mm of every voxel, shape ``(3, *shape)`` (axis-aligned affine)."""
    axes = [affine[i, i] * np.arange(n) + affine[i, 3] for i, n in enumerate(shape)]
    return np.stack(np.meshgrid(*axes, indexing="ij")).astype(np.float32)


def local_scaling(grid_mm: np.ndarray, centre_mm, factor: float) -> np.ndarray:
    """Displacement that scales the neighbourhood of ``centre_mm`` by ``factor`` (pull-back)."""
    d = grid_mm - np.asarray(centre_mm, dtype=np.float32)[:, None, None, None]
    window = np.exp(-np.sum(d**2, axis=0) / (2.0 * WINDOW_SIGMA_MM**2))
    return ((1.0 / factor - 1.0) * d * window).astype(np.float32)


def gradient_norm(field: np.ndarray, voxel_mm: float) -> np.ndarray:
    """Frobenius norm of the displacement's Jacobian (dimensionless) at every voxel."""
    total = np.zeros(field.shape[1:], dtype=np.float64)
    for component in field:
        for g in np.gradient(component, voxel_mm):
            total += g.astype(np.float64) ** 2
    return np.sqrt(total)


def limit_gradient(field: np.ndarray, voxel_mm: float) -> tuple[np.ndarray, float]:
    """Scale ``field`` down so its gradient norm stays below :data:`MAX_GRADIENT`.

    Returns the field and the factor applied (1 when it was already smooth enough).
    """
    peak = float(gradient_norm(field, voxel_mm).max())
    factor = min(1.0, MAX_GRADIENT / peak) if peak > 0 else 1.0
    return (field * np.float32(factor) if factor < 1.0 else field), factor


def centroid_mm(mask_index: np.ndarray, shape, affine: np.ndarray) -> np.ndarray:
    """MNI mm of the centroid of flat voxel indices ``mask_index``."""
    ijk = np.array(np.unravel_index(mask_index, shape), dtype=float).mean(axis=1)
    return affine[:3, :3] @ ijk + affine[:3, 3]


def ventricle_centroid_mm(csf: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Centroid (MNI mm) of the CSF-dominated voxels in :data:`VENTRICLE_BOX_MM`."""
    grid = _grid_mm(csf.shape, affine)
    inside = csf > 0.5
    for axis, (lo, hi) in enumerate(VENTRICLE_BOX_MM):
        inside &= (grid[axis] >= lo) & (grid[axis] <= hi)
    return grid[:, inside].mean(axis=1)


def upsample2(a: np.ndarray, axis: int, n: int) -> np.ndarray:
    """Linear interpolation from every second voxel of ``axis`` back to all ``n`` voxels (an
    even ``n``'s last voxel holds the edge value)."""
    a = np.moveaxis(a, axis, 0)
    out = np.empty((n, *a.shape[1:]), dtype=a.dtype)
    out[0::2] = a[: (n + 1) // 2]
    mid = (a[:-1] + a[1:]) * a.dtype.type(0.5)
    out[1::2] = mid if n % 2 else np.concatenate([mid, a[-1:]])
    return np.moveaxis(out, 0, axis)


_FRAMES: dict = {}


def _coarse_frame(geo) -> tuple:
    """Per geometry: the MNI mm of every second voxel, the 4 mm affine, the striatal and
    ventricular centroids (computed once per process; geometries are cached, so their identity
    is a key)."""
    if id(geo) in _FRAMES:
        return _FRAMES[id(geo)][1]
    affine = geo.affine.copy()
    affine[:3, :3] *= 2.0
    shape = tuple((n + 1) // 2 for n in geo.shape)
    centres = {
        side: centroid_mm(
            np.concatenate([geo.region_index[f"{r}_{side}"] for r in ("putamen", "caudate")]),
            geo.shape,
            geo.affine,
        )
        for side in "lr"
    }
    centres["ventricles"] = ventricle_centroid_mm(geo.csf, geo.affine)
    frame = (_grid_mm(shape, affine), affine, centres)
    _FRAMES[id(geo)] = (geo, frame)
    return frame


def draw_deformation(rng: np.random.Generator, geo, anatomy: dict, age: float, age_ref: float):
    """One subject's displacement field on the geometry grid and a summary for its truth.

    The field is smooth on the scale of centimetres, so it is built on every second voxel
    (4 mm) and interpolated linearly to the 2 mm grid.

    Parameters
    ----------
    rng : numpy.random.Generator
        The subject's anatomy stream.
    geo : datspect.cohorts.phantom.Geometry
    anatomy : dict
        ``simulation.anatomy``: ``amplitude_mm``, ``spacing_mm``, ``striatal_scale_cv``,
        ``ventricle_expansion_per_decade``, ``ventricle_cv``.
    age, age_ref : float
        Years.

    Returns
    -------
    field : ndarray (3, *geo.shape), float32, mm
    summary : dict
        ``striatal_scale`` (per side), ``ventricle_scale``, ``gradient_scaled`` (the factor of
        :func:`limit_gradient`).
    """
    grid, affine, centres = _coarse_frame(geo)
    voxel = float(abs(affine[0, 0]))
    field = random_field(rng, grid.shape[1:], voxel, anatomy["spacing_mm"], anatomy["amplitude_mm"])
    scales = {}
    for side in "lr":
        factor = math.exp(anatomy["striatal_scale_cv"] * rng.standard_normal())
        field += local_scaling(grid, centres[side], factor)
        scales[side] = round(factor, 6)
    decades = max(0.0, (age - age_ref) / 10.0)
    ventricle = (1.0 + anatomy["ventricle_expansion_per_decade"] * decades) * math.exp(
        anatomy["ventricle_cv"] * rng.standard_normal()
    )
    field += local_scaling(grid, centres["ventricles"], ventricle)
    field, limited = limit_gradient(field, voxel)
    fine = field
    for axis, n in reversed(list(enumerate(geo.shape, start=1))):  # 2x faster than 1, 2, 3
        fine = upsample2(fine, axis, n)
    fine = np.ascontiguousarray(fine, dtype=np.float32)
    summary = {
        "striatal_scale": scales,
        "ventricle_scale": round(ventricle, 6),
        "gradient_scaled": round(limited, 6),
    }
    return fine, summary


def warp(image: np.ndarray, field: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``image(x + u(x))`` by linear interpolation (0 outside the grid); ``affine``: the
    grid's axis-aligned voxel -> mm map (its signed voxel sizes convert mm to voxels)."""
    coords = np.indices(image.shape, dtype=np.float32)
    coords += field / np.diag(affine)[:3].astype(np.float32)[:, None, None, None]
    return ndimage.map_coordinates(image, coords, order=1, cval=0.0).astype(np.float32)


def invert(field: np.ndarray, affine: np.ndarray, iterations: int = 30) -> np.ndarray:
    """The inverse displacement ``v`` with ``y = x + u(x)  <=>  x = y + v(y)``.

    Fixed point ``v(y) = -u(y + v(y))``, a contraction because ``|grad u| < 1``.
    """
    inverse = -field.copy()
    for _ in range(iterations):
        inverse = -np.stack([warp(c, inverse, affine) for c in field])
    return inverse
