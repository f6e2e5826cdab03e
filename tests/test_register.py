"""Spatial normalization: orientation handling, resampling, QC and the template."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from datspect.errors import InputError
from datspect.preprocess import register
from datspect.preprocess.smooth import smooth_fwhm
from datspect.space import anatomy, template


@pytest.fixture(scope="module")
def tmpl() -> nib.Nifti1Image:
    return template.anatomical_template(6.0, 12.0)


def _native(mni: nib.Nifti1Image, pose: np.ndarray, affine: np.ndarray, shape) -> nib.Nifti1Image:
    """An MNI-grid activity seen by a camera: moved by ``pose`` (native_from_mni) onto a native
    grid (``affine``, ``shape``) with Poisson noise (peak 300 counts)."""
    vox2vox = np.linalg.inv(anatomy.MNI_AFFINE) @ np.linalg.inv(pose) @ affine
    data = ndimage.affine_transform(
        mni.get_fdata(dtype=np.float32),
        vox2vox[:3, :3],
        vox2vox[:3, 3],
        output_shape=shape,
        order=1,
    )
    counts = np.random.default_rng(0).poisson(data * 300.0 / data.max()).astype(np.float32)
    return nib.Nifti1Image(counts, affine)


def test_to_sitk_places_voxels_where_nifti_does():
    # Oblique, axis-permuted grid: voxel axes (j, k, i) of the image run along world (z, x, y).
    affine = np.array(
        [[0.0, -3.9, 0.0, 120.0], [0.0, 0.0, 4.2, -90.0], [3.5, 0.0, 0.0, -60.0], [0, 0, 0, 1]]
    )
    rot = Rotation.from_euler("xyz", [5, -3, 7], degrees=True).as_matrix()
    affine[:3, :3] = rot @ affine[:3, :3]
    img = nib.Nifti1Image(np.zeros((5, 6, 7), np.float32), affine)
    itk = register.to_sitk(img)
    for idx in [(0, 0, 0), (4, 1, 6), (2, 5, 3)]:
        ras = affine @ np.r_[idx, 1.0]
        lps = np.array(itk.TransformIndexToPhysicalPoint([int(i) for i in idx]))
        np.testing.assert_allclose(lps, [-ras[0], -ras[1], ras[2]], atol=1e-6)
    assert itk.GetSize() == (5, 6, 7)


def test_known_pose_is_recovered(tmpl):
    true = np.eye(4)
    true[:3, :3] = Rotation.from_euler("xyz", [8.0, -6.0, 5.0], degrees=True).as_matrix()
    true[:3, 3] = [12.0, -15.0, 9.0]
    # Radiological (LPS-like) native grid of 4 mm voxels, not the template's orientation.
    shape = (64, 64, 50)
    affine = np.diag([-4.0, -4.0, 4.0, 1.0])
    affine[:3, 3] = [126.0, 110.0, -80.0]
    est = register.estimate_transform(
        _native(tmpl, true, affine, shape), tmpl, stages=("rigid",), shrink=(4,), seed=1
    )
    assert register.striatal_centroid_error(est, true) < 1.0
    delta = est[:3, :3] @ true[:3, :3].T
    angle = np.degrees(np.arccos(np.clip((np.trace(delta) - 1) / 2, -1, 1)))
    assert angle < 1.0


def test_pd_like_scan_registers_reproducibly(tmpl):
    # Putamen nearly absent, one side lower, scalp uptake at its own distance, a smaller head.
    act = template.activity_map(
        5.0, putamen_factor=0.05, scalp_uptake=0.6, scalp_gap_mm=4.0, scalp_thickness_mm=10.0
    )
    act[anatomy.region("caudate_l")] *= 0.6
    scan = smooth_fwhm(nib.Nifti1Image(act, anatomy.MNI_AFFINE), 13.0)
    true = np.eye(4)
    rot = Rotation.from_euler("xyz", [-4.0, 3.0, 9.0], degrees=True).as_matrix()
    true[:3, :3] = rot @ np.diag([0.95, 0.95, 0.95])
    true[:3, 3] = [-10.0, 6.0, 18.0]
    affine = np.diag([3.5, 3.5, 3.5, 1.0])
    affine[:3, 3] = [-110.0, -130.0, -70.0]
    img = _native(scan, true, affine, (64, 72, 64))
    # seed 0 would mean "wall clock" to ITK; it must be reproducible here.
    a = register.estimate_transform(img, tmpl, seed=0)
    assert np.array_equal(a, register.estimate_transform(img, tmpl, seed=0))
    assert register.striatal_centroid_error(a, true) < 2.0


def test_identity_resample_reproduces_input(tmpl):
    out = register.resample_to_mni(tmpl, np.eye(4))
    assert out.shape == anatomy.MNI_SHAPE and out.get_data_dtype() == np.float32
    np.testing.assert_allclose(out.get_fdata(), tmpl.get_fdata(), atol=1e-5)
    # 2 mm to the right in RAS is one voxel towards i - 1 on the LAS MNI grid.
    shift = np.eye(4)
    shift[0, 3] = 2.0
    moved = register.resample_to_mni(tmpl, shift).get_fdata()
    np.testing.assert_allclose(moved[1:], tmpl.get_fdata()[:-1], atol=1e-5)
    assert np.all(moved[0] == 0)  # outside the scan


def test_qc_flags_scrambled_image(tmpl):
    good = register.normalization_qc(tmpl, tmpl, min_correlation=0.7)
    assert good["flag"] == "ok" and good["correlation"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    scrambled = rng.permutation(tmpl.get_fdata().ravel()).reshape(anatomy.MNI_SHAPE)
    qc = register.normalization_qc(
        nib.Nifti1Image(scrambled, anatomy.MNI_AFFINE), tmpl, min_correlation=0.7
    )
    assert qc["flag"] == "low_correlation" and abs(qc["correlation"]) < 0.1


def test_qc_judges_the_registration_not_the_striatal_uptake(tmpl):
    """A scan without striatal uptake, well registered, passes; the same scan 10 mm off fails."""
    data = tmpl.get_fdata()
    striata = anatomy.region("striatum")
    no_uptake = np.where(striata, np.median(data[anatomy.brain_mask()]), data)
    qc = register.normalization_qc(
        nib.Nifti1Image(no_uptake, anatomy.MNI_AFFINE), tmpl, min_correlation=0.7
    )
    assert qc["flag"] == "ok" and qc["correlation"] > 0.95
    off = np.eye(4)
    off[0, 3] = 10.0
    moved = register.resample_to_mni(nib.Nifti1Image(no_uptake, anatomy.MNI_AFFINE), off)
    assert register.normalization_qc(moved, tmpl, min_correlation=0.7)["flag"] == "low_correlation"


def test_qc_flags_a_mirroring_transform(tmpl):
    mirror = np.diag([1.0, 1.0, -1.0, 1.0])  # e.g. a header whose slice order is reversed
    qc = register.normalization_qc(tmpl, tmpl, min_correlation=0.7, native_from_mni=mirror)
    assert qc["flag"] == "reflected" and qc["correlation"] == pytest.approx(1.0)
    proper = register.normalization_qc(tmpl, tmpl, min_correlation=0.7, native_from_mni=np.eye(4))
    assert proper["flag"] == "ok"


def test_centroid_error_and_dice(tmpl):
    shift = np.eye(4)
    shift[:3, 3] = [3.0, 0.0, 4.0]
    assert register.striatal_centroid_error(shift, np.eye(4)) == pytest.approx(5.0)
    healthy = register.striatum_dice(tmpl)
    pd_like = nib.Nifti1Image(template.activity_map(6.0, putamen_factor=0.05), anatomy.MNI_AFFINE)
    pd_like = template.scale_to_reference(smooth_fwhm(pd_like, 12.0).get_fdata(dtype=np.float32))
    reduced = register.striatum_dice(nib.Nifti1Image(pd_like, anatomy.MNI_AFFINE))
    assert healthy > 0.78 and reduced < 0.65


def test_template_grid_and_contrast(tmpl):
    data = tmpl.get_fdata()
    assert tmpl.shape == (91, 109, 91)
    np.testing.assert_array_equal(tmpl.affine, anatomy.MNI_AFFINE)
    assert np.all(np.isfinite(data))
    assert data[anatomy.reference_mask()].mean() == pytest.approx(1.0, rel=1e-4)
    assert data[anatomy.region("striatum")].mean() > 3.0 * data[~anatomy.brain_mask()].mean()
    assert data[anatomy.region("putamen")].mean() > 3.0


def test_user_template_wrong_shape_rejected(tmp_path, tmpl):
    four_d = tmp_path / "four_d.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((91, 109, 91, 2), np.float32), anatomy.MNI_AFFINE), four_d)
    with pytest.raises(InputError, match="four_d.nii.gz"):
        template.load_template(four_d)
    small = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((40, 40, 40), np.float32), anatomy.MNI_AFFINE), small)
    with pytest.raises(InputError, match="small.nii.gz.*MNI"):
        template.load_template(small)
    with pytest.raises(InputError, match="missing.nii"):
        template.load_template(tmp_path / "missing.nii")


def test_user_template_on_other_grid_is_resampled(tmp_path, tmpl):
    # The same template on a 1.5 mm RAS grid comes back on the 2 mm MNI grid.
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = [-91.0, -127.0, -73.0]
    data = anatomy.resample_to_grid(tmpl, (122, 146, 122), affine)
    path = tmp_path / "fine.nii.gz"
    nib.save(nib.Nifti1Image(data * 7.0, affine), path)
    loaded = template.load_template(path)
    assert loaded.shape == anatomy.MNI_SHAPE
    np.testing.assert_array_equal(loaded.affine, anatomy.MNI_AFFINE)
    assert register.normalization_qc(loaded, tmpl, min_correlation=0.99)["flag"] == "ok"


def test_striatal_label_dice_measures_registration_error_only():
    assert register.striatal_label_dice(np.eye(4), np.eye(4)) == pytest.approx(1.0)
    shifted = np.eye(4)
    shifted[0, 3] = 1.0  # 1 mm off along x
    assert 0.85 < register.striatal_label_dice(shifted, np.eye(4)) < 0.95
    shifted[0, 3] = 4.0
    assert register.striatal_label_dice(shifted, np.eye(4)) < 0.7


def test_striatal_label_dice_box_equals_whole_grid_resampling():
    """The bounding-box shortcut gives the Dice of resampling the whole MNI grid."""
    striatum = anatomy.region("striatum")
    rng = np.random.default_rng(3)
    for _ in range(10):
        est = np.eye(4)
        est[:3, :3] = Rotation.from_euler("z", rng.normal(0, 0.1)).as_matrix()
        est[:3, :3] *= rng.uniform(0.85, 1.15)
        est[:3, 3] = rng.normal(0, 6, 3)
        voxel = np.linalg.inv(anatomy.MNI_AFFINE) @ est @ anatomy.MNI_AFFINE
        moved = ndimage.affine_transform(striatum.astype(np.float32), voxel, order=1) >= 0.5
        whole = 2.0 * (moved & striatum).sum() / (moved.sum() + striatum.sum())
        assert register.striatal_label_dice(est, np.eye(4)) == pytest.approx(whole, abs=1e-12)
