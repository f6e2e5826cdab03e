"""The DAT-SPECT registration template on the MNI 2 mm grid.

Spatial normalization needs a template that looks like a [123I]FP-CIT scan in MNI space.  No such
template ships with the installed packages, and one averaged from the cohort's own scans would
leak test data into the preprocessing of every split.  The default template is therefore built
from anatomy alone (:mod:`datspect.space.anatomy`):

* non-displaceable uptake proportional to tissue: grey matter 1, white matter
  ``wm_ratio`` (0.6 by default; DAT-SPECT white matter is visibly cooler than cortex), CSF 0;
* a scalp shell (``scalp_uptake`` = 0.4 of grey matter, from 6 to 14 mm outside the brain;
  the skull in between has none).  Every FP-CIT scan shows this extracerebral soft-tissue
  activity.  Without it in the template, mutual information can match the scalp of a small or
  PD-like head to the template's brain edge and over-scale the affine by 10-15 % (striatal
  errors of 3-6 mm in ``bench/registration.py``);
* specific binding on top of it in the AAL caudate and putamen, ``striatal_sbr`` times the local
  non-displaceable uptake (a typical healthy, partial-volume-free binding ratio), and a small
  fraction of it (``pallidum_fraction``, 0.2) in the AAL pallidum, whose DAT density is low;
* blurred with an isotropic Gaussian of ``fwhm_mm`` (a typical reconstructed SPECT resolution);
* scaled so that the mean in the SBR reference region (whole brain without the striata) is 1.

A user-supplied template (for example one averaged from an external normal database) can
replace it: :func:`load_template` validates it and puts it onto the same grid and scale.
"""

from __future__ import annotations

import functools
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.affines import voxel_sizes
from nibabel.processing import fwhm2sigma
from scipy import ndimage

from datspect.errors import InputError
from datspect.io import imageio
from datspect.io.dicom import one_line
from datspect.space import anatomy


def activity_map(
    striatal_sbr: float,
    *,
    putamen_factor: float = 1.0,
    wm_ratio: float = 0.6,
    pallidum_fraction: float = 0.2,
    scalp_uptake: float = 0.0,
    scalp_gap_mm: float = 6.0,
    scalp_thickness_mm: float = 8.0,
) -> np.ndarray:
    """Unblurred DAT tracer activity on the MNI grid from the anatomical priors.

    Parameters
    ----------
    striatal_sbr : float
        Specific-to-non-displaceable binding ratio in caudate and putamen (> 0).
    putamen_factor : float
        Scale of the putaminal specific binding: 1 healthy, near 0 for a PD-like scan.
    wm_ratio : float
        Non-displaceable uptake of white relative to grey matter.
    pallidum_fraction : float
        Specific binding in the pallidum as a fraction of ``striatal_sbr``.
    scalp_uptake : float
        Uptake of the extracerebral shell relative to grey matter (0: no shell).
    scalp_gap_mm, scalp_thickness_mm : float
        The shell starts ``scalp_gap_mm`` outside the brain mask and is ``scalp_thickness_mm``
        thick.

    Returns
    -------
    numpy.ndarray
        float32 array of shape :data:`datspect.space.anatomy.MNI_SHAPE`, arbitrary units.
    """
    if not striatal_sbr > 0:
        raise ValueError(f"striatal_sbr must be > 0, not {striatal_sbr!r}")
    if not 0 <= putamen_factor:
        raise ValueError(f"putamen_factor must be >= 0, not {putamen_factor!r}")
    nondisplaceable = anatomy.tissue("gm") + wm_ratio * anatomy.tissue("wm")
    # Specific binding sits on voxels of the nucleus even where the GM prior is weak
    # (AAL and the ICBM tissue maps disagree by a voxel or two at the striatal border).
    base = np.maximum(nondisplaceable, 1.0)
    binding = np.zeros(anatomy.MNI_SHAPE, dtype=np.float32)
    binding[anatomy.region("caudate")] = striatal_sbr
    binding[anatomy.region("putamen")] = striatal_sbr * putamen_factor
    pallidum = anatomy.region("pallidum_l") | anatomy.region("pallidum_r")
    binding[pallidum] = striatal_sbr * pallidum_fraction
    activity = np.where(binding > 0, base * (1.0 + binding), nondisplaceable)
    if scalp_uptake > 0:
        activity = activity + scalp_uptake * _shell(scalp_gap_mm, scalp_thickness_mm)
    return activity.astype(np.float32)


@functools.lru_cache(maxsize=2)
def _shell(gap_mm: float, thickness_mm: float) -> np.ndarray:
    """Boolean shell from ``gap_mm`` to ``gap_mm + thickness_mm`` outside the MNI brain."""
    dist = ndimage.distance_transform_edt(~anatomy.brain_mask(), sampling=2.0)
    shell = (dist > gap_mm) & (dist <= gap_mm + thickness_mm)
    shell.flags.writeable = False
    return shell


def _blur(volume: np.ndarray, fwhm_mm: float, voxel_mm: float = 2.0) -> np.ndarray:
    """Isotropic Gaussian blur of ``volume`` with ``fwhm_mm`` on a grid of ``voxel_mm`` voxels."""
    # Not preprocess.smooth_fwhm: it filters in float64, and 115302 template voxels would change.
    if fwhm_mm < 0:
        raise ValueError(f"fwhm_mm must be >= 0, not {fwhm_mm!r}")
    if fwhm_mm == 0:
        return np.asarray(volume, dtype=np.float32)
    # fwhm * sigma-per-mm as before: fwhm2sigma(fwhm) differs in the last bit for 4 % of FWHMs.
    sigma = fwhm_mm * fwhm2sigma(1.0) / voxel_mm
    return ndimage.gaussian_filter(np.asarray(volume, dtype=np.float32), sigma, mode="constant")


def scale_to_reference(volume: np.ndarray) -> np.ndarray:
    """Divide an MNI-grid volume by its mean in the default SBR reference region."""
    ref = float(np.mean(volume[anatomy.reference_mask()]))
    if not ref > 0:
        raise ValueError("the reference region (brain without striata) has no positive uptake")
    return (volume / ref).astype(np.float32)


def anatomical_template(
    striatal_sbr: float = 6.0,
    fwhm_mm: float = 12.0,
    *,
    wm_ratio: float = 0.6,
    pallidum_fraction: float = 0.2,
    scalp_uptake: float = 0.4,
) -> nib.Nifti1Image:
    """The default DAT-SPECT template built from anatomy (see the module docstring).

    Parameters
    ----------
    striatal_sbr : float
        Specific binding ratio of caudate and putamen before blurring.
    fwhm_mm : float
        FWHM of the isotropic Gaussian that models the SPECT resolution.
    wm_ratio, pallidum_fraction, scalp_uptake : float
        See :func:`activity_map`.

    Returns
    -------
    nibabel.Nifti1Image
        float32 image on the MNI grid, mean 1 in the reference region.
    """
    activity = activity_map(
        striatal_sbr,
        wm_ratio=wm_ratio,
        pallidum_fraction=pallidum_fraction,
        scalp_uptake=scalp_uptake,
    )
    data = scale_to_reference(_blur(activity, fwhm_mm))
    return nib.Nifti1Image(data, anatomy.MNI_AFFINE.copy())


def _mni_coverage(shape, affine) -> float:
    """Fraction of MNI brain voxels whose centre lies inside a grid (``shape``, ``affine``)."""
    xyz = anatomy.mni_world_coords()[anatomy.brain_mask()]
    ijk = (np.linalg.inv(affine) @ np.c_[xyz, np.ones(len(xyz))].T)[:3].T
    inside = np.all((ijk > -0.5) & (ijk < np.asarray(shape) - 0.5), axis=1)
    return float(inside.mean())


def load_template(path: str | Path | None, **kw) -> nib.Nifti1Image:
    """Load a user template onto the MNI grid, or build the anatomical one when ``path`` is None.

    A user template must be a 3D NIfTI with finite values, voxels of 0.5-4 mm and a field of view
    that covers at least 95 % of the MNI brain (that is, it must already be in MNI space); it is
    resampled (trilinear) onto the MNI 2 mm grid if its grid differs, and scaled to reference
    mean 1.

    Parameters
    ----------
    path : str, pathlib.Path or None
        NIfTI file of the template, or None for :func:`anatomical_template`.
    **kw
        Passed to :func:`anatomical_template` when ``path`` is None (ignored otherwise).

    Raises
    ------
    InputError
        When the file is missing, unreadable or not an MNI-space 3D DAT-SPECT template.
    """
    if path is None:
        return anatomical_template(**kw)
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "file not found"
        raise InputError(
            f"{path}: template (preprocess.template) {what}; give a NIfTI file of the template "
            "in MNI space, or null for the built-in one"
        )
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise InputError(
            f"{path}: the template (preprocess.template) is not a NIfTI image (.nii or .nii.gz); "
            "give a NIfTI file of the template in MNI space, or null for the built-in one"
        )
    try:  # size, type and orientation before any data
        imageio.nifti_header(path, imageio.MAX_VOXELS)
    except InputError as err:
        problem = str(err).removeprefix(f"{path}: ")
        raise InputError(f"{path}: the template (preprocess.template): {problem}") from err
    try:
        img = nib.load(path)
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises several types for broken files
        raise InputError(
            f"{path}: the template (preprocess.template) cannot be read as NIfTI "
            f"({type(exc).__name__}: {one_line(exc)}); copy it again, or give null for the "
            "built-in template"
        ) from exc
    # Many tools write 3D volumes as 4D with one frame.
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(
            f"template {path}: shape {img.shape} is not a 3D volume; give a single 3D image "
            f"in MNI space (ideally {anatomy.MNI_SHAPE} voxels of 2 mm)"
        )
    if not np.all(np.isfinite(data)):
        raise InputError(f"template {path}: contains NaN or infinite values; replace them by 0")
    affine = img.affine
    voxel_mm = voxel_sizes(affine)
    if np.any(voxel_mm < 0.5) or np.any(voxel_mm > 4.0):
        raise InputError(
            f"template {path}: voxel size {np.round(voxel_mm, 2).tolist()} mm is outside "
            "0.5-4 mm; give a template on an MNI grid such as the SPM 2 mm grid"
        )
    coverage = _mni_coverage(data.shape, affine)
    if coverage < 0.95:
        raise InputError(
            f"template {path}: shape {data.shape} with its affine covers only "
            f"{coverage:.0%} of the MNI brain; the template must be in MNI space "
            f"(e.g. {anatomy.MNI_SHAPE} voxels of 2 mm)"
        )
    same_grid = data.shape == anatomy.MNI_SHAPE and np.allclose(
        affine, anatomy.MNI_AFFINE, atol=1e-3
    )
    if not same_grid:
        data = anatomy.resample_to_grid(nib.Nifti1Image(data, affine), order=1)
    try:
        data = scale_to_reference(data)
    except ValueError as exc:
        raise InputError(
            f"template {path}: {exc}; is it a DAT-SPECT template in MNI space?"
        ) from exc
    return nib.Nifti1Image(data, anatomy.MNI_AFFINE.copy())
