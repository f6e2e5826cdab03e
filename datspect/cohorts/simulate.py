"""Physics-based simulation of [123I]FP-CIT SPECT scans for the embedded synthetic cohorts.

One subject is simulated in five steps:

1. *Biology* (:func:`draw_biology`): age, sex, the healthy dopamine-transporter binding of each
   striatal region (age decline, between-subject, region and side variability, an
   antero-posterior putamen gradient) and, for reduced scans, a disease pattern and severity that
   remove binding (typical PD: asymmetric, posterior-first putamen loss, the caudate later).
   Normal scans of a cohort may be *borderline* (globally lower binding), reduced scans *atypical*
   (symmetric or caudate-dominant loss).
2. *Activity* on the MNI 2 mm grid from anatomy (:mod:`datspect.cohorts.phantom`), warped by the
   subject's own anatomy (:mod:`datspect.cohorts.deform`: shape, striatal size, ventricles).
3. *Pose* (:func:`draw_pose`): a random head rotation, shift and size, giving the affine
   ``native_from_mni`` (MNI mm -> scanner mm).
4. *Camera* (:func:`acquire`): the camera PSF (applied on the MNI grid, which is equivalent for a
   rotation-invariant Gaussian), sampling through the pose onto the camera's voxel grid, scatter
   and the septal-penetration halo (broad blurred copies), Poisson noise with the spatial
   correlation of a reconstruction (:func:`correlate_noise`), a reconstruction post-filter and
   the camera's intensity scale.
5. A NIfTI image with the camera's voxel size and orientation in RAS world mm.

Every subject is deterministic: its random streams come from
``numpy.random.SeedSequence([seed, stable_hash(subject_id)])``.  All parameters are explicit:
``physics`` (the config's ``simulation`` section, shared) and ``cohort`` (a cohort's
``simulate`` section).  Both arrive validated and complete: the config schema
(:mod:`datspect.schema`) holds their bounds and defaults, so nothing here checks them again.
"""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
from nibabel.processing import fwhm2sigma
from scipy import ndimage

from datspect.cohorts import deform, phantom
from datspect.cohorts.synthetic_subjects import check_seed, stable_hash
from datspect.errors import InputError
from datspect.space.resample import affine_resample

_TRUNCATE = 3.0  # Gaussian kernels are cut at 3 sigma (0.3 % of the mass; numerics only)
_MNI_VOXEL_MM = 2.0
PATTERNS_ATYPICAL = ("symmetric", "caudate_dominant")
#: Patterns of the truth: normal scans are ``normal`` or ``borderline``, reduced scans
#: ``typical`` or atypical.
PATTERNS = ("normal", "borderline", "typical", *PATTERNS_ATYPICAL)
TRUTH_REGIONS = ("putamen_l", "putamen_r", "caudate_l", "caudate_r")

# --------------------------------------------------------------------------- seeds and design


STREAMS = ("biology", "pose", "noise", "anatomy")


def subject_streams(seed: int, subject_id: str) -> dict:
    """Independent random generators of one subject: ``biology``, ``pose``, ``noise``,
    ``anatomy``.

    Separate streams keep e.g. the pose of a subject unchanged when a camera parameter changes.
    """
    ss = np.random.SeedSequence([check_seed(seed), stable_hash(str(subject_id))])
    return dict(
        zip(STREAMS, (np.random.default_rng(s) for s in ss.spawn(len(STREAMS))), strict=True)
    )


# --------------------------------------------------------------------------- biology


def _lognormal(rng: np.random.Generator, cv: float) -> float:
    """A median-1 multiplicative factor with log-SD ``cv``."""
    return float(math.exp(cv * rng.standard_normal()))


def _pattern(rng: np.random.Generator, label: int, cohort: dict, disease: dict) -> str:
    if label == 0:
        return "borderline" if rng.random() < cohort["borderline_fraction"] else "normal"
    if rng.random() >= cohort["atypical_fraction"]:
        return "typical"
    weights = disease["atypical_weights"]
    w = np.array([weights[k] for k in PATTERNS_ATYPICAL], dtype=float)
    return str(PATTERNS_ATYPICAL[int(rng.choice(len(w), p=w / w.sum()))])


def draw_biology(rng: np.random.Generator, label: int, cohort: dict, physics: dict, geo) -> tuple:
    """Draw one subject's demographics and voxelwise striatal binding.

    Parameters
    ----------
    rng : numpy.random.Generator
    label : int
        0 normal, 1 reduced.
    cohort, physics : dict
        Cohort settings and shared physics.
    geo : datspect.cohorts.phantom.Geometry

    Returns
    -------
    region_sbr : dict
        Voxelwise SBR per region of :data:`datspect.cohorts.phantom.STRIATAL_REGIONS`.
    truth : dict
        ``age``, ``sex``, ``pattern``, ``severity``, ``affected_side`` and the true regional
        SBRs ``sbr_true`` (mean over each AAL region).
    """
    if label not in (0, 1):
        raise InputError(f"label must be 0 (normal) or 1 (reduced), not {label!r}")
    b, d = physics["binding"], physics["disease"]
    pattern = _pattern(rng, label, cohort, d)

    age_lo, age_hi = cohort["age_range"]
    age = rng.normal(cohort["age_mean"], cohort["age_sd"])
    age = float(np.clip(age, age_lo, age_hi))
    sex = "M" if rng.random() < cohort["male_fraction"] else "F"

    decline = b["age_decline_per_decade"]
    global_factor = (1.0 - decline) ** ((age - b["age_ref"]) / 10.0)
    if sex == "F":
        global_factor *= b["female_factor"]
    global_factor *= _lognormal(rng, b["subject_cv"])
    caudate_factor = _lognormal(rng, b["region_cv"])
    side = {f"{r}_{s}": _lognormal(rng, b["side_cv"]) for r in ("putamen", "caudate") for s in "lr"}

    if pattern == "borderline":
        global_factor *= rng.uniform(*d["borderline_factor"])

    max_loss = d["max_loss"]
    severity, affected = 0.0, None
    loss = {s: (0.0, 0.0, 0.0) for s in "lr"}  # (putamen anterior, posterior, caudate)
    if label == 1:
        severity = float(rng.beta(*d["severity_beta"]))
        p = d["patterns"][pattern]
        ratio = rng.uniform(*p["asymmetry"])
        affected = "l" if rng.random() < 0.5 else "r"  # the more affected side: a fair coin
        onset = p["caudate_onset"]
        for s in "lr":
            sev = severity if s == affected else severity * ratio
            loss[s] = (
                sev * p["putamen_anterior"],
                sev * p["putamen_posterior"],
                p["caudate"] * max(0.0, sev - onset) / (1.0 - onset),
            )

    gradient = b["ap_gradient"]
    region_sbr, sbr_true = {}, {}
    for s in "lr":
        put_ant, put_post, caud = loss[s]
        region_sbr[f"putamen_{s}"] = phantom.putamen_profile(
            geo.ap_position[f"putamen_{s}"],
            b["putamen"] * global_factor * side[f"putamen_{s}"],
            gradient,
            put_ant,
            put_post,
            max_loss,
        )
        region_sbr[f"caudate_{s}"] = (
            b["caudate"]
            * global_factor
            * caudate_factor
            * side[f"caudate_{s}"]
            * (1.0 - min(caud, max_loss))
        )
        # The pallidum (nigro-pallidal terminals) follows the mean putamen loss of its side.
        region_sbr[f"pallidum_{s}"] = (
            b["pallidum"] * global_factor * (1.0 - min(0.5 * (put_ant + put_post), max_loss))
        )
    for name in TRUTH_REGIONS:
        sbr_true[name] = round(float(np.mean(region_sbr[name])), 6)
    truth = {
        "age": round(age, 2),
        "sex": sex,
        "pattern": pattern,
        "severity": round(severity, 6),
        "affected_side": affected,
        "sbr_true": sbr_true,
    }
    return region_sbr, truth


# --------------------------------------------------------------------------- pose and grid


def rotation_matrix(rotation_deg) -> np.ndarray:
    """Rotation about the x, then y, then z axis (degrees, right-handed, RAS axes)."""
    # scipy's Rotation.from_euler("xyz") differs in the last bit and would change the cohorts.
    ax, ay, az = np.deg2rad(np.asarray(rotation_deg, dtype=float))
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def draw_pose(rng: np.random.Generator, pose: dict, head_offset_mm) -> dict:
    """Draw a head pose; returns rotation, translation, scale and ``native_from_mni`` (4x4).

    ``native_from_mni`` maps MNI mm to scanner mm: ``x_native = scale * R @ x_mni + offset``
    with ``offset = head_offset_mm + translation``.
    """
    rot = rng.uniform(-1.0, 1.0, 3) * np.asarray(pose["rotation_deg"], dtype=float)
    shift = rng.uniform(-1.0, 1.0, 3) * np.asarray(pose["translation_mm"], dtype=float)
    scale = float(rng.uniform(*pose["scale"]))
    m = np.eye(4)
    m[:3, :3] = scale * rotation_matrix(rot)
    m[:3, 3] = np.asarray(head_offset_mm, dtype=float) + shift
    return {
        "rotation_deg": [round(float(v), 6) for v in rot],
        "translation_mm": [round(float(v), 6) for v in shift],
        "scale": round(scale, 6),
        "native_from_mni": m,
    }


def native_affine(shape, voxel_mm, orientation: str) -> np.ndarray:
    """Voxel -> scanner mm (RAS) of a camera grid centred on the scanner origin.

    ``orientation`` gives the direction of increasing x, y, z voxel index (e.g. ``LAS``: x runs
    right-to-left as in SPM/PPMI images).
    """
    sign = np.array([1.0 if c in "RAS" else -1.0 for c in orientation])
    aff = np.eye(4)
    aff[:3, :3] = np.diag(sign * np.asarray(voxel_mm, dtype=float))
    aff[:3, 3] = -aff[:3, :3] @ ((np.asarray(shape, dtype=float) - 1.0) / 2.0)
    return aff


def _sigma(fwhm_mm: float, voxel_mm) -> np.ndarray:
    return np.asarray(fwhm2sigma(fwhm_mm) / np.asarray(voxel_mm, dtype=float))


# --------------------------------------------------------------------------- camera


def _upsample2(a: np.ndarray) -> np.ndarray:
    """Linear 2x upsampling of block means (block centres at +0.5), edges held constant.

    Equal to ``ndimage.zoom(a, 2, order=1, mode="nearest", grid_mode=True)``, 3x faster.
    """
    for axis in range(a.ndim):
        a = np.moveaxis(a, axis, 0)
        padded = np.concatenate([a[:1], a, a[-1:]])
        out = np.empty((2 * a.shape[0], *a.shape[1:]), dtype=a.dtype)
        out[0::2] = 0.75 * a + 0.25 * padded[:-2]
        out[1::2] = 0.75 * a + 0.25 * padded[2:]
        a = np.moveaxis(out, 0, axis)
    return a


def broad_blur(x: np.ndarray, sigma_vox) -> np.ndarray:
    """Gaussian blur (constant 0 outside) of a 3D array; wide kernels run on a 2x coarser grid.

    A kernel of 4 or more voxels sigma hardly changes over 2 voxels, so blurring the 2x2x2 block
    means and interpolating back is accurate (< 1 % of the maximum) and several times cheaper.
    """
    sigma_vox = np.broadcast_to(np.asarray(sigma_vox, dtype=float), (3,))
    if np.any(sigma_vox < 4.0):
        return ndimage.gaussian_filter(x, sigma_vox, mode="constant", truncate=_TRUNCATE)
    padded = np.pad(x, [(0, n % 2) for n in x.shape])
    m = [n // 2 for n in padded.shape]
    coarse = padded.reshape(m[0], 2, m[1], 2, m[2], 2).mean(axis=(1, 3, 5))
    coarse = ndimage.gaussian_filter(coarse, sigma_vox / 2.0, mode="constant", truncate=_TRUNCATE)
    return _upsample2(coarse)[: x.shape[0], : x.shape[1], : x.shape[2]]


def correlate_noise(noise: np.ndarray, sigma_vox) -> np.ndarray:
    """Give white noise the spatial correlation of reconstructed SPECT, keeping its variance.

    Iterative reconstruction correlates the noise of neighbouring voxels over about the
    recovered resolution; a Gaussian of ``sigma_vox`` (0: none) stands in for that, scaled by
    ``1 / sqrt(sum of squared kernel weights)`` so each voxel keeps its Poisson variance.
    """
    sigma_vox = np.broadcast_to(np.asarray(sigma_vox, dtype=float), (3,))
    if not np.any(sigma_vox > 0):
        return noise
    impulse = np.zeros([2 * int(_TRUNCATE * s + 1) + 1 for s in sigma_vox])
    impulse[tuple(n // 2 for n in impulse.shape)] = 1.0
    kernel = ndimage.gaussian_filter(impulse, sigma_vox, mode="constant", truncate=_TRUNCATE)
    gain = np.float32(1.0 / math.sqrt(float(np.sum(kernel**2))))
    return ndimage.gaussian_filter(noise, sigma_vox, mode="constant", truncate=_TRUNCATE) * gain


def acquire(
    act: np.ndarray,
    act_affine: np.ndarray,
    native_from_mni: np.ndarray,
    scale: float,
    cam: dict,
    rng: np.random.Generator | None,
    camera_name: str = "camera",
) -> tuple:
    """Image ``act`` (MNI grid) with a camera; returns the native array and its affine.

    Parameters
    ----------
    act : ndarray
        Activity concentration on a grid with voxel -> MNI mm affine ``act_affine``.
    native_from_mni : ndarray (4, 4)
        Pose: MNI mm -> scanner mm.
    scale : float
        Isotropic scale of the pose (the PSF is applied on the MNI grid, where the camera's
        mm are ``1 / scale`` MNI mm).
    cam : dict
        The camera's settings (``simulation.cameras.<name>``).
    rng : numpy.random.Generator or None
        Poisson noise stream; ``None`` gives the noise-free expectation (same scaling).

    Returns
    -------
    data : ndarray, float32, shape ``cam["shape"]``
    affine : ndarray (4, 4)
    counts : float
        Expected total counts of the scan.
    """
    shape, vox = cam["shape"], cam["voxel_mm"]
    aff_n = native_affine(shape, vox, cam["orientation"])

    # Camera resolution: a rotation-invariant Gaussian commutes with the rigid pose, so it is
    # applied on the finer MNI grid before sampling (no aliasing of the small striata).
    blurred = act
    if cam["psf_fwhm_mm"] > 0:
        sigma = fwhm2sigma(cam["psf_fwhm_mm"] / scale) / _MNI_VOXEL_MM
        blurred = ndimage.gaussian_filter(act, sigma, mode="constant", truncate=_TRUNCATE)

    # Native box: the activity grid's footprint (it holds the PSF tails) plus the post-filter
    # tails and one scatter sigma; scatter beyond that is faint and left out.
    n_from_vox = np.linalg.inv(aff_n) @ native_from_mni @ act_affine
    corners = np.array(
        [
            [a, b, c, 1.0]
            for a in (0, act.shape[0] - 1)
            for b in (0, act.shape[1] - 1)
            for c in (0, act.shape[2] - 1)
        ]
    )
    ijk = (n_from_vox @ corners.T)[:3].T
    tail = _TRUNCATE * _sigma(cam["postfilter_fwhm_mm"], vox) + _sigma(
        max(cam["scatter_fwhm_mm"], cam["penetration_fwhm_mm"]), vox
    )
    lo = np.maximum(np.floor(ijk.min(axis=0) - tail), 0).astype(int)
    hi = np.minimum(np.ceil(ijk.max(axis=0) + tail), np.array(shape) - 1).astype(int)
    box = tuple(int(v) for v in hi - lo + 1)

    shift = np.eye(4)
    shift[:3, 3] = lo
    vox2vox = np.linalg.inv(n_from_vox) @ shift
    primary = affine_resample(blurred, vox2vox, box)
    primary = np.maximum(primary, 0.0, out=primary)

    # Broad components of the detected counts: Compton scatter and the septal-penetration halo
    # of 123I's 529 keV photons (LEHR collimators), each a blurred copy of the primary image.
    expected = primary
    broad = {"scatter": cam["scatter_fraction"], "penetration": cam["penetration_fraction"]}
    if sum(broad.values()) > 0:
        expected = (1.0 - sum(broad.values())) * primary
        for name, fraction in broad.items():
            if fraction > 0:
                expected += fraction * broad_blur(primary, _sigma(cam[f"{name}_fwhm_mm"], vox))

    total = float(expected.sum())
    if total <= 0:
        raise InputError(
            f"simulation.cameras.{camera_name}: the head lies outside the field of view; enlarge "
            "shape/voxel_mm or reduce head_offset_mm / pose.translation_mm"
        )
    counts = cam["counts"] * _lognormal(rng, cam["counts_cv"]) if rng is not None else cam["counts"]
    expected *= np.float32(counts / total)
    image = expected
    if rng is not None:
        noise = rng.poisson(expected).astype(np.float32) - expected
        image = expected + correlate_noise(noise, _sigma(cam["noise_fwhm_mm"], vox))
        image = np.maximum(image, 0.0, out=image)  # reconstructions are non-negative (OSEM)
    if cam["postfilter_fwhm_mm"] > 0:
        image = ndimage.gaussian_filter(
            image, _sigma(cam["postfilter_fwhm_mm"], vox), mode="constant", truncate=_TRUNCATE
        )

    data = np.zeros(shape, dtype=np.float32)
    data[tuple(slice(a, a + n) for a, n in zip(lo, box, strict=True))] = image * np.float32(
        cam["intensity_scale"]
    )
    return data, aff_n, float(counts)


# --------------------------------------------------------------------------- one subject


def max_resolution_mm(cam: dict) -> float:
    """The widest system resolution :func:`draw_resolution` can give (nominal + 3 SD)."""
    return cam["psf_fwhm_mm"] + _TRUNCATE * cam["psf_fwhm_sd_mm"]


def draw_resolution(rng: np.random.Generator, cam: dict) -> float:
    """This scan's system resolution (FWHM mm): the camera's nominal value plus a normal
    between-scan spread (radius of rotation, collimator and camera model of a multi-site
    cohort), kept within 3 SD and above half the nominal value."""
    sd = cam["psf_fwhm_sd_mm"]
    if sd <= 0:
        return float(cam["psf_fwhm_mm"])
    offset = float(np.clip(rng.standard_normal(), -_TRUNCATE, _TRUNCATE)) * sd
    return round(max(cam["psf_fwhm_mm"] + offset, 0.5 * cam["psf_fwhm_mm"]), 6)


def brain_corner_voxels(geo, cam: dict, native_from_mni) -> np.ndarray:
    """The corners of the brain's box (MNI mm) in the camera's voxel indices, shape (8, 3), for
    the pose ``native_from_mni``: the field-of-view check of a simulated scan."""
    native = native_affine(cam["shape"], cam["voxel_mm"], cam["orientation"])
    corners = np.c_[geo.brain_corners_mm, np.ones(8)].T
    return (np.linalg.inv(native) @ np.asarray(native_from_mni) @ corners)[:3].T


def _geometry(physics: dict, cam: dict, scale_min: float):
    t = physics["tissue"]
    # Keep a blur margin of 3 PSF sigmas (MNI mm) around the head on the MNI grid (whole voxels).
    margin = fwhm2sigma(_TRUNCATE * max_resolution_mm(cam) / scale_min)
    return phantom.geometry(
        float(t["shell_gap_mm"]),
        float(t["shell_thickness_mm"]),
        float(_MNI_VOXEL_MM * math.ceil(margin / _MNI_VOXEL_MM)),
    )


def simulate_subject(
    subject_id: str, label: int, cohort: dict, physics: dict, seed: int, *, noise: bool = True
) -> tuple:
    """Simulate the native SPECT image of one subject.

    Parameters
    ----------
    subject_id : str
        Subject id; with ``seed`` it determines every random draw.
    label : int
        0 normal, 1 reduced.
    cohort : dict
        Cohort settings (``cohorts.<name>.simulate``): ``camera``, ``age_mean``, ``age_sd``,
        ``age_range``, ``male_fraction``, ``atypical_fraction``, ``borderline_fraction``.
    physics : dict
        Shared physics (the config's ``simulation``: ``tissue``, ``binding``, ``disease``,
        ``anatomy``, ``pose``, ``cameras``).
    seed : int
        Global seed.
    noise : bool, optional
        ``False`` returns the noise-free expectation (for tests and calibration).

    Returns
    -------
    image : nibabel.Nifti1Image
        Float32 data in the camera's stored units, affine in scanner RAS mm.  The header's
        on-disk type is int16 with an automatic ``scl_slope`` (quantisation < 1e-4 of the
        maximum), which keeps ``.nii.gz`` writing fast.
    truth : dict
        JSON-serialisable ground truth: ``subject_id``, ``label``, ``age``, ``sex``,
        ``camera``, ``pattern``, ``severity``, ``affected_side``, ``sbr_true`` (putamen_l/_r,
        caudate_l/_r), ``pose`` (rotation_deg, translation_mm, scale), ``deformation``
        (:func:`datspect.cohorts.deform.draw_deformation`'s summary; null when off),
        ``native_from_mni``
        (4x4 list, MNI mm -> scanner mm) and ``counts`` (expected total counts).
    """
    streams = subject_streams(seed, subject_id)
    camera_name = cohort["camera"]
    cam = physics["cameras"][camera_name]
    geo = _geometry(physics, cam, physics["pose"]["scale"][0])

    region_sbr, bio = draw_biology(streams["biology"], label, cohort, physics, geo)
    t = physics["tissue"]
    act = phantom.activity(
        geo,
        region_sbr,
        grey=t["grey"],
        white=t["white"],
        csf=t["csf"],
        extracerebral=t["extracerebral"] * _lognormal(streams["biology"], t["extracerebral_cv"]),
    )

    anatomy = physics["anatomy"]
    deformation = None
    if any(anatomy[k] > 0 for k in deform.SIZE_KEYS):
        field, deformation = deform.draw_deformation(
            streams["anatomy"], geo, anatomy, bio["age"], physics["binding"]["age_ref"]
        )
        act = deform.warp(act, field, geo.affine)

    pose = draw_pose(streams["pose"], physics["pose"], cam["head_offset_mm"])
    m = pose.pop("native_from_mni")
    resolution = draw_resolution(streams["pose"], cam)  # drawn after the pose: it stays
    brain_vox = brain_corner_voxels(geo, cam, m)
    if np.any(brain_vox < -0.5) or np.any(brain_vox > np.array(cam["shape"]) - 0.5):
        raise InputError(
            f"simulation.cameras.{camera_name}: the brain of {subject_id} leaves the field of "
            f"view {cam['shape']} x {cam['voxel_mm']} mm; enlarge shape, or reduce "
            "head_offset_mm / simulation.pose.translation_mm / simulation.pose.scale"
        )
    data, aff_n, counts = acquire(
        act,
        geo.affine,
        m,
        pose["scale"],
        {**cam, "psf_fwhm_mm": resolution},
        streams["noise"] if noise else None,
        camera_name,
    )

    img = nib.Nifti1Image(data, aff_n)
    img.header.set_xyzt_units("mm")
    img.set_qform(aff_n, code=1)  # scanner-based coordinates
    img.set_sform(aff_n, code=1)
    img.set_data_dtype(np.int16)
    img.header["descrip"] = f"datspect synthetic FP-CIT, camera {camera_name}"[:80].encode()

    truth = {
        "subject_id": str(subject_id),
        "label": int(label),
        "camera": camera_name,
        **bio,
        "pose": pose,
        "deformation": deformation,
        "psf_fwhm_mm": resolution,
        "native_from_mni": [[round(float(v), 9) for v in row] for row in m],
        "counts": round(counts, 1),
    }
    return img, truth
