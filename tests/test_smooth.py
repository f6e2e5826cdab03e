"""Gaussian smoothing in mm: recovered FWHM per axis, preserved counts, boundary and errors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel.processing import fwhm2sigma, sigma2fwhm
from scipy.optimize import curve_fit
from scipy.spatial.transform import Rotation
from scipy.stats import norm

from datspect.errors import InputError
from datspect.preprocess.smooth import smooth_fwhm, smooth_fwhm_2d


def _rotated_affine(voxel_mm, angle_deg: float) -> np.ndarray:
    """Voxel sizes ``voxel_mm`` with the voxel axes rotated about z (oblique acquisition)."""
    rot = Rotation.from_euler("z", angle_deg, degrees=True).as_matrix()
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(voxel_mm)
    affine[:3, 3] = [-40.0, 12.0, 7.0]
    return affine


def _moment_fwhm(profile: np.ndarray, step_mm: float) -> float:
    x = np.arange(profile.size) * step_mm
    w = profile / profile.sum()
    mean = (w * x).sum()
    return sigma2fwhm(np.sqrt((w * (x - mean) ** 2).sum()))


def _gauss(x, amp, mu, sigma):
    return amp * np.exp(-0.5 * ((x - mu) / sigma) ** 2)


@pytest.mark.parametrize(("fwhm", "angle"), [(18.0, 0.0), (10.0, 30.0), (8.0, 0.0)])
def test_point_source_gives_back_fwhm_on_anisotropic_grid(fwhm, angle):
    voxel = (2.0, 2.0, 3.0)
    shape = (61, 61, 41)
    data = np.zeros(shape, np.float32)
    centre = tuple(s // 2 for s in shape)
    data[centre] = 1000.0
    img = nib.Nifti1Image(data, _rotated_affine(voxel, angle))
    out = smooth_fwhm(img, fwhm)
    assert out.get_data_dtype() == np.float32
    np.testing.assert_allclose(out.affine, img.affine)
    result = out.get_fdata()
    # Counts are preserved: the kernel lies well inside the volume.
    assert result.sum() == pytest.approx(1000.0, rel=1e-4)
    for axis in range(3):
        # Marginal along one axis = 1D Gaussian of the same sigma.
        profile = result.sum(axis=tuple(a for a in range(3) if a != axis))
        assert _moment_fwhm(profile, voxel[axis]) == pytest.approx(fwhm, rel=0.05)
        x = np.arange(profile.size) * voxel[axis]
        p0 = (profile.max(), x[centre[axis]], fwhm2sigma(fwhm))
        (_, _, sigma), _ = curve_fit(_gauss, x, profile, p0=p0)
        assert sigma2fwhm(abs(sigma)) == pytest.approx(fwhm, rel=0.05)


def test_sequential_smoothing_adds_in_quadrature():
    """Gaussians compose: 6 mm then 8 mm equals 10 mm (a check of the mm->voxel conversion)."""
    rng = np.random.default_rng(0)
    data = np.zeros((40, 40, 30), np.float32)
    data[15:25, 12:28, 10:20] = rng.uniform(50, 100, (10, 16, 10))
    img = nib.Nifti1Image(data, _rotated_affine((2.5, 2.0, 3.0), 15))
    twice = smooth_fwhm(smooth_fwhm(img, 6.0), 8.0).get_fdata()
    once = smooth_fwhm(img, 10.0).get_fdata()
    assert np.abs(twice - once).max() < 0.02 * once.max()


def test_constant_mode_treats_outside_as_empty():
    img = nib.Nifti1Image(np.ones((30, 30, 30), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    out = smooth_fwhm(img, 12.0).get_fdata()
    assert out[15, 15, 15] == pytest.approx(1.0, abs=1e-6)  # interior unchanged
    # At the edge voxel the kernel reaches half a voxel plus one side into activity, the rest
    # into empty space ("nearest" would keep 1.0 here).
    sigma_vox = fwhm2sigma(12.0) / 2.0
    assert out[0, 15, 15] == pytest.approx(norm.cdf(0.5 / sigma_vox), abs=0.01)


def test_smooth_2d_anisotropic_pixels():
    arr = np.zeros((81, 61))
    arr[40, 30] = 1.0
    out = smooth_fwhm_2d(arr, 12.0, (1.5, 2.0))
    assert out.dtype == np.float32 and out.shape == arr.shape
    assert out.sum() == pytest.approx(1.0, rel=1e-4)
    assert _moment_fwhm(out.sum(axis=1), 1.5) == pytest.approx(12.0, rel=0.05)
    assert _moment_fwhm(out.sum(axis=0), 2.0) == pytest.approx(12.0, rel=0.05)
    iso = smooth_fwhm_2d(arr, 12.0, 2.0)
    assert _moment_fwhm(iso.sum(axis=1), 2.0) == pytest.approx(12.0, rel=0.05)


@pytest.mark.parametrize("bad", [0.0, -5.0, float("nan")])
def test_non_positive_fwhm_names_the_config_key(bad):
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    with pytest.raises(InputError, match=r"preprocess\.smooth_fwhm_mm"):
        smooth_fwhm(img, bad)
    with pytest.raises(InputError, match=r"preprocess\.smooth_fwhm_mm"):
        smooth_fwhm_2d(np.ones((4, 4)), bad, 2.0)
