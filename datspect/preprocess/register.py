"""Spatial normalization of native DAT-SPECT scans to the MNI 2 mm grid.

The transform is estimated once per subject on the original scan with SimpleITK (fixed image =
template on the MNI grid, moving image = native scan) and returned as a 4x4 world affine
``native_from_mni``: it maps MNI world coordinates (RAS mm, as in NIfTI) to the native scan's
world coordinates (RAS mm).  The same matrix then resamples the original and the smoothed scan.

Settings follow the measurements in the project notes: moments initialisation; a rigid
(Euler3D) stage at shrink 4 (sigma 2 voxels) and an affine stage at shrink 2 (sigma 1 voxel);
Mattes mutual information with 32 bins on a seeded random sample of the voxels; regular-step
gradient descent.  No stage runs at full resolution: that costs 10x the time for < 0.1 mm.
Both images are smoothed here, as ITK's pyramid would, and the metric takes the moving image's
gradient by central differences at its sampled points: ITK's own pyramid computes a gradient
image of the whole moving scan at full resolution for every stage, two thirds of the time of a
registration (``bench/registration.py``). The template's levels are kept per process, and the
moving scan is cropped to its head box first (:func:`_head_box`): smoothing the empty field of
view cost as much as the optimisation.

The metric sees ``log(1 + v / level)`` of both images (``level`` = median of the head voxels),
not the raw counts.  Mattes bins span min..max linearly, and a striatum 5-8 times hotter than
cortex leaves the whole brain, its outline and the scalp in the lowest few of 32 bins; a PD-like
scan with one hot striatum then registers by matching its hot spot alone.  The log spreads the
non-specific uptake over the histogram, so the head outline anchors the affine.

ITK works in LPS physical coordinates, NIfTI in RAS; :func:`to_sitk` and :func:`itk_to_ras`
are the two places where the sign flip of x and y happens.
"""

from __future__ import annotations

import functools
import hashlib

import nibabel as nib
import numpy as np
from nibabel.affines import voxel_sizes
from scipy import ndimage

from datspect.errors import InputError
from datspect.space import anatomy
from datspect.space.resample import affine_resample

#: RAS <-> LPS: negate x and y (its own inverse).
_FLIP = np.diag([-1.0, -1.0, 1.0])
_FLIP4 = np.diag([-1.0, -1.0, 1.0, 1.0])
STAGES = ("rigid", "affine")


def volume_data(img: nib.Nifti1Image) -> np.ndarray:
    """The image data as a float32 3D array; trailing singleton dimensions are dropped."""
    data = np.asarray(img.dataobj, dtype=np.float32)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        name = img.get_filename() or "image"
        raise InputError(f"{name}: shape {img.shape} is not a 3D volume; give one 3D scan")
    return data


def to_sitk(img: nib.Nifti1Image):
    """A SimpleITK image with the same voxels and the same place in the world as ``img``.

    NIfTI maps voxel (i, j, k) to RAS by ``img.affine``; ITK maps index (i, j, k) to LPS by
    ``origin + direction @ diag(spacing) @ index`` and stores arrays as (k, j, i).
    """
    import SimpleITK as sitk

    data = volume_data(img)
    lps = _FLIP @ img.affine[:3, :3]
    spacing = voxel_sizes(img.affine)  # the flip of x and y leaves the lengths as they are
    out = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    out.SetSpacing(spacing.tolist())
    out.SetDirection((lps / spacing).ravel().tolist())
    out.SetOrigin((_FLIP @ img.affine[:3, 3]).tolist())
    return out


def metric_image(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """``log(1 + v / level)``, level = median of the voxels above 5 % of the maximum.

    The registration metric sees this compressed image (see the module docstring); the
    transform it finds applies to the original.
    """
    data = volume_data(img)
    name = img.get_filename() or "image"
    if not np.all(np.isfinite(data)):
        raise InputError(f"{name}: contains NaN or infinite values; replace them by 0")
    head = data[data > 0.05 * float(data.max())]
    level = float(np.median(head)) if head.size else 0.0
    if not level > 0:
        raise InputError(f"{name}: no positive counts; is it an empty or inverted scan?")
    return nib.Nifti1Image(np.log1p(np.maximum(data, 0.0) / level), img.affine)


def _head_box(img: nib.Nifti1Image, margin: int) -> nib.Nifti1Image:
    """``img`` cropped to the box of its voxels above 5 % of the maximum (the head), widened by
    ``margin`` voxels, with the affine of the crop: the registration smooths and samples the
    head, not the empty field of view (measured on 16 simulated scans: 0.21 -> 0.14 s per
    registration, striatal points within 0.2 mm of where the uncropped registration puts them).
    """
    data = volume_data(img)
    head = np.argwhere(data > 0.05 * float(data.max()))
    if head.size == 0:
        return img  # metric_image names the problem
    lo = np.maximum(head.min(axis=0) - margin, 0)
    hi = np.minimum(head.max(axis=0) + margin + 1, data.shape)
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ lo + img.affine[:3, 3]
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    return nib.Nifti1Image(np.ascontiguousarray(data[box]), affine)


def _itk_seed(seed: int) -> int:
    """A seed ITK accepts: 1..2**32-1 (ITK reads 0 as 'seed from the wall clock')."""
    return int(seed) % (2**32 - 1) + 1


def itk_to_ras(matrix: np.ndarray, translation: np.ndarray, center: np.ndarray) -> np.ndarray:
    """4x4 RAS affine of an ITK matrix transform ``y = M (x - c) + c + t`` (x, y in LPS)."""
    lps = np.eye(4)
    lps[:3, :3] = matrix
    lps[:3, 3] = translation + center - matrix @ center
    return _FLIP4 @ lps @ _FLIP4


def estimate_transform(
    moving: nib.Nifti1Image,
    template: nib.Nifti1Image,
    *,
    stages: tuple[str, ...] = STAGES,
    sampling: float = 0.05,
    iterations: int = 100,
    shrink: tuple[int, ...] = (4, 2),
    seed: int,
    threads: int = 1,
) -> np.ndarray:
    """Register a native scan to the template; return ``native_from_mni`` (4x4, RAS mm).

    Parameters
    ----------
    moving : nibabel.Nifti1Image
        Native scan (any grid and orientation).
    template : nibabel.Nifti1Image
        Template on the MNI grid (:func:`datspect.space.template.load_template`).
    stages : tuple of {"rigid", "affine"}
        Registration stages, run in order, each starting from the previous result.
    sampling : float
        Fraction (0-1] of the (shrunken) template voxels that the metric samples at random;
        the sample is drawn once per stage.
    iterations : int
        Maximum gradient-descent iterations per stage.
    shrink : tuple of int
        Shrink factor per stage (smoothing sigma = shrink / 2 voxels).
    seed : int
        Seed of the random metric sampling (any integer; ITK's wall-clock seed 0 is never
        used); with ``threads=1`` the result is reproducible.
    threads : int
        ITK threads for this registration.

    Returns
    -------
    numpy.ndarray
        4x4 affine mapping MNI world (RAS mm) to the moving scan's world (RAS mm).
    """
    import SimpleITK as sitk

    if (
        len(stages) == 0
        or any(s not in STAGES for s in stages)
        or list(stages) != sorted(stages, key=STAGES.index)
    ):
        raise ValueError(f"stages must be a non-empty sequence of {STAGES} in this order")
    if len(shrink) != len(stages):
        raise ValueError(f"shrink {shrink!r} needs one factor per stage {stages!r}")
    if not 0 < sampling <= 1:
        raise ValueError(f"sampling must be in (0, 1], not {sampling!r}")
    previous_threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        fixed = _template_levels(template)
        # margin: 3 sigma of the coarsest level's smoothing (sigma = shrink / 2) + 2 voxels
        moving_itk = to_sitk(metric_image(_head_box(moving, margin=3 * max(shrink) // 2 + 2)))
        current = sitk.CenteredTransformInitializer(
            fixed[0],
            moving_itk,
            sitk.Euler3DTransform(),
            sitk.CenteredTransformInitializerFilter.MOMENTS,
        )
        for stage, factor in zip(stages, shrink, strict=True):
            if stage == "rigid":
                tx = sitk.Euler3DTransform(current)
            else:
                tx = sitk.AffineTransform(3)
                tx.SetCenter(current.GetCenter())
                tx.SetMatrix(current.GetMatrix())
                tx.SetTranslation(current.GetTranslation())
            if factor not in fixed:
                fixed[factor] = _smoothed(fixed[0], factor)
            current = _run_stage(
                fixed[factor],
                _smoothed(moving_itk, factor),
                tx,
                factor,
                sampling,
                iterations,
                seed,
                threads,
            )
        return itk_to_ras(
            np.asarray(current.GetMatrix()).reshape(3, 3),
            np.asarray(current.GetTranslation()),
            np.asarray(current.GetCenter()),
        )
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous_threads)


def estimate_from_config(
    moving: nib.Nifti1Image, template: nib.Nifti1Image, registration: dict, *, seed: int, threads=1
) -> np.ndarray:
    """:func:`estimate_transform` with the config's ``preprocess.registration`` section.

    The workflow's normalize step and the ``classify`` command both call this, so a scan is
    registered the same way in both.
    """
    return estimate_transform(
        moving,
        template,
        stages=tuple(registration["stages"]),
        sampling=registration["sampling"],
        iterations=registration["iterations"],
        shrink=tuple(registration["shrink"]),
        seed=int(seed),
        threads=int(threads),
    )


_TEMPLATE_LEVELS: dict = {}


def _template_levels(template: nib.Nifti1Image) -> dict:
    """The template's metric image (key 0) and its smoothed levels (key: shrink factor), kept
    per process: every scan of a run registers to the same template."""
    data = volume_data(template)
    key = hashlib.sha1(data.tobytes() + np.asarray(template.affine).tobytes()).hexdigest()
    if key not in _TEMPLATE_LEVELS:
        _TEMPLATE_LEVELS.clear()
        _TEMPLATE_LEVELS[key] = {0: to_sitk(metric_image(template))}
    return _TEMPLATE_LEVELS[key]


def _smoothed(image, shrink: int):
    """``image`` smoothed for a level of shrink factor ``shrink`` (Gaussian sigma shrink / 2
    voxels, as ITK's pyramid)."""
    import SimpleITK as sitk

    return sitk.SmoothingRecursiveGaussian(image, [shrink / 2.0 * s for s in image.GetSpacing()])


def _registration_method(shrink, sampling, iterations, seed, threads):
    """A single-level stage's metric, sampling, optimizer and shrink factor; the caller sets how
    the images are smoothed."""
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetNumberOfThreads(int(threads))
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(float(sampling), _itk_seed(seed))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0,
        minStep=1e-3,
        numberOfIterations=int(iterations),
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-6,
    )
    # Scales from physical shift make one step of a rotation or a matrix entry move voxels
    # about as far as one step of a translation.
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([int(shrink)])
    return reg


def _run_stage(fixed, moving, tx, shrink, sampling, iterations, seed, threads):
    """One single-level registration stage on images already smoothed for it; returns the
    optimised transform."""
    reg = _registration_method(shrink, sampling, iterations, seed, threads)
    reg.MetricUseMovingImageGradientFilterOff()
    reg.MetricUseFixedImageGradientFilterOff()
    reg.SetSmoothingSigmasPerLevel([0.0])
    reg.SetInitialTransform(tx, inPlace=True)
    reg.Execute(fixed, moving)
    return tx


def resample_to_mni(
    img: nib.Nifti1Image, native_from_mni: np.ndarray, order: int = 1, threads: int = 1
) -> nib.Nifti1Image:
    """Resample a native scan onto the MNI 2 mm grid.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        Native scan.
    native_from_mni : numpy.ndarray
        4x4 affine from :func:`estimate_transform`.
    order : {0, 1}
        Interpolation: 0 nearest neighbour, 1 trilinear.
    threads : int
        ITK threads (the result does not depend on them).

    Returns
    -------
    nibabel.Nifti1Image
        float32 image on the MNI grid (``anatomy.MNI_SHAPE``, ``anatomy.MNI_AFFINE``); voxels
        that map outside the scan are 0.
    """
    native_from_mni = np.asarray(native_from_mni, dtype=np.float64)
    if native_from_mni.shape != (4, 4) or not np.all(np.isfinite(native_from_mni)):
        raise ValueError("native_from_mni must be a finite 4x4 matrix")
    # Not nibabel's resample_from_to: it needs inv(native_from_mni) in the affine, other bits.
    vox2vox = np.linalg.inv(img.affine) @ native_from_mni @ anatomy.MNI_AFFINE
    out = affine_resample(volume_data(img), vox2vox, anatomy.MNI_SHAPE, order, threads)
    return nib.Nifti1Image(out, anatomy.MNI_AFFINE.copy())


def _check_mni(img: nib.Nifti1Image, what: str) -> np.ndarray:
    data = volume_data(img)
    if data.shape != anatomy.MNI_SHAPE or not np.allclose(img.affine, anatomy.MNI_AFFINE):
        raise ValueError(f"{what} must be on the MNI grid {anatomy.MNI_SHAPE}, not {data.shape}")
    return data


def normalization_qc(
    img_mni: nib.Nifti1Image,
    template: nib.Nifti1Image,
    *,
    min_correlation: float,
    native_from_mni: np.ndarray | None = None,
) -> dict:
    """Quality check of a normalized scan: Pearson correlation with the template in the brain
    outside the striata (:func:`datspect.space.anatomy.reference_mask`).

    Outside the striata, so that the verdict is about the registration, not the disease: over
    the whole brain a well-registered scan with little striatal uptake correlates as poorly
    with the template as a normal one 10 mm off (default cohort: 0.68 against 0.70; outside the
    striata 0.68 for both labels' worst well-registered scans against 0.66 at most 10 mm off).

    A transform that mirrors (negative determinant) is flagged ``reflected`` whatever the
    correlation: a header with a wrong orientation gives a well-correlated mirror image whose
    left and right, or top and bottom, are swapped.

    Returns
    -------
    dict
        ``correlation`` (float, NaN for a constant image) and ``flag``: ``"ok"``,
        ``"reflected"``, or ``"low_correlation"`` when the correlation is below
        ``min_correlation`` or undefined.
    """
    mask = anatomy.reference_mask("brain_without_striatum")
    a = _check_mni(img_mni, "normalized image")[mask].astype(np.float64)
    b = _check_mni(template, "template")[mask].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    r = float((a * b).sum() / denom) if denom > 0 else float("nan")
    flag = "ok" if r >= min_correlation else "low_correlation"
    if native_from_mni is not None and np.linalg.det(np.asarray(native_from_mni)[:3, :3]) <= 0:
        flag = "reflected"
    return {"correlation": r, "flag": flag}


@functools.lru_cache(maxsize=1)
def striatal_centroids() -> np.ndarray:
    """MNI world coordinates (RAS mm) of the left and right AAL striatum centroids, (2, 3)."""
    xyz = anatomy.mni_world_coords()
    sides = []
    for side in ("l", "r"):
        mask = anatomy.region(f"caudate_{side}") | anatomy.region(f"putamen_{side}")
        sides.append(xyz[mask].mean(axis=0))
    return np.array(sides)


def striatal_centroid_error(
    est_native_from_mni: np.ndarray, true_native_from_mni: np.ndarray
) -> float:
    """Mean distance (mm) between where two transforms put the left and right striatum centroid."""
    pts = np.c_[striatal_centroids(), np.ones(2)].T
    est = (np.asarray(est_native_from_mni) @ pts)[:3]
    true = (np.asarray(true_native_from_mni) @ pts)[:3]
    return float(np.linalg.norm(est - true, axis=0).mean())


def striatal_label_dice(est_native_from_mni: np.ndarray, true_native_from_mni: np.ndarray) -> float:
    """Dice of the AAL striatum with itself carried through the registration error.

    A voxel the estimated transform puts at MNI point p truly lies at
    ``inv(true) @ est @ p``; the labels found there form the registered striatum. This is the
    label overlap of registration studies (known labels, no image resolution involved), the
    counterpart of :func:`striatum_dice`, which is bounded by the SPECT resolution.
    """
    striatum = anatomy.region("striatum")
    error = np.linalg.inv(true_native_from_mni) @ np.asarray(est_native_from_mni)
    voxel = np.linalg.inv(anatomy.MNI_AFFINE) @ error @ anatomy.MNI_AFFINE
    # Only output voxels that sample within one voxel of the striatum's bounding box can be
    # labelled: resample that box alone (the same value, 6x faster than the whole grid).
    found = np.argwhere(striatum)
    support = np.stack([found.min(0) - 1, found.max(0) + 1])
    corners = np.array(
        [
            [support[i, 0], support[j, 1], support[k, 2], 1.0]
            for i in (0, 1)
            for j in (0, 1)
            for k in (0, 1)
        ]
    )
    reach = (np.linalg.inv(voxel) @ corners.T)[:3]
    start = np.clip(np.floor(reach.min(1)).astype(int) - 1, 0, striatum.shape)
    stop = np.clip(np.ceil(reach.max(1)).astype(int) + 2, 0, striatum.shape)
    if (stop <= start).any():
        return 0.0
    moved = (
        ndimage.affine_transform(
            striatum.astype(np.float32),
            voxel[:3, :3],
            offset=voxel[:3, :3] @ start + voxel[:3, 3],
            output_shape=tuple(stop - start),
            order=1,
        )
        >= 0.5
    )
    box = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
    return float(2.0 * (moved & striatum[box]).sum() / (moved.sum() + striatum.sum()))


@functools.lru_cache(maxsize=2)
def _striatal_voi(iterations: int) -> np.ndarray:
    """The AAL striatum grown by ``iterations`` voxels."""
    voi = ndimage.binary_dilation(anatomy.region("striatum"), iterations=iterations)
    voi.flags.writeable = False
    return voi


def striatum_dice(
    img_mni: nib.Nifti1Image, threshold_fraction: float = 0.5, voi_margin_mm: float = 8.0
) -> float:
    """Dice of the thresholded striatal uptake with the AAL striatum.

    The scan is divided by its mean in the reference region (brain without striata) and 1 is
    subtracted, which gives a specific-binding map.  Inside a VOI (the AAL striatum grown by
    ``voi_margin_mm``, so that extracerebral hot spots cannot set the scale) the voxels above
    ``threshold_fraction`` of the VOI's robust maximum (99th percentile, insensitive to single
    noisy voxels) form the segmentation.  Half maximum (0.5, the default) gives the best Dice of
    a perfectly aligned healthy scan at 13-16 mm resolution (0.45 at 12 mm, within 0.005).  Even
    then the Dice is only about 0.81 (12 mm) to 0.75 (16 mm), because the AAL striatum is
    sharper than any SPECT image: judge a registration by its Dice relative to the Dice at the
    true pose.  PD-like scans score low by design.
    """
    data = _check_mni(img_mni, "normalized image")
    striatum = anatomy.region("striatum")
    voi = _striatal_voi(max(1, round(voi_margin_mm / 2.0)))
    ref = float(data[anatomy.reference_mask()].mean())
    if not ref > 0:
        return 0.0
    specific = data / ref - 1.0
    top = float(np.percentile(specific[voi], 99))
    if not top > 0:
        return 0.0
    seg = voi & (specific >= threshold_fraction * top)
    return float(2.0 * (seg & striatum).sum() / (seg.sum() + striatum.sum()))
