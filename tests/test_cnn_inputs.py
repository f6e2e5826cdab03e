"""Per-cohort bundles of the per-subject CNN inputs."""

from __future__ import annotations

import numpy as np
import pytest

from datspect.errors import InputError
from datspect.features.cnn_bundle import bundle_inputs, load_inputs


def _subject(root, subject, **arrays):
    path = root / "ppmi" / subject / "cnn_input.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, **arrays)
    return path


def test_bundle_round_trip_keeps_every_subject_and_setting(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        s: {k: rng.random((4, 3), dtype=np.float32) for k in ("original", "smoothed")}
        for s in ("ppmi-0002", "ppmi-0001")
    }
    paths = [_subject(tmp_path, s, **a) for s, a in arrays.items()]
    out = tmp_path / "ppmi" / "cnn_inputs.npz"
    assert "2 subjects" in bundle_inputs(paths, out)
    loaded = load_inputs(out)
    assert set(loaded) == {("ppmi", s) for s in arrays}
    for s, a in arrays.items():
        for k, v in a.items():
            np.testing.assert_array_equal(loaded[("ppmi", s)][k], v)


def test_bundle_refuses_subjects_with_different_image_settings(tmp_path):
    a = _subject(tmp_path, "ppmi-0001", original=np.zeros((2, 2)), smoothed=np.zeros((2, 2)))
    b = _subject(tmp_path, "ppmi-0002", original=np.zeros((2, 2)))
    out = tmp_path / "ppmi" / "cnn_inputs.npz"
    with pytest.raises(InputError, match="ppmi-0002/cnn_input.npz: holds image settings"):
        bundle_inputs([a, b], out)
    assert not out.exists()


def test_a_stored_slab_and_its_volume_give_the_same_cnn_input(tmp_path):
    """One 2D CNN input for both kinds of cohort (datspect.features.slab.scale_slab): a 3D
    volume's slab and the same slab stored as a slab cohort's image, at another intensity scale
    (a PNG's 8-bit unit), reach the CNN as the same array."""
    import nibabel as nib

    from datspect.features import slab
    from datspect.io import imageio
    from datspect.space import anatomy, slab_grid
    from datspect.workflow import steps

    rng = np.random.default_rng(2)
    volume = rng.gamma(20.0, 50.0, anatomy.MNI_SHAPE).astype(np.float32)
    volume[anatomy.region("putamen_l")] *= 4.0
    volume[anatomy.region("putamen_r")] *= 2.5
    imageio.save_nifti(nib.Nifti1Image(volume, anatomy.MNI_AFFINE), tmp_path / "vol.nii.gz")
    stored = slab_grid.slab_to_nifti(slab.project_to_slab(volume) * 0.004, 5)
    imageio.save_nifti(stored, tmp_path / "slab.nii.gz")
    arrays = {}
    for kind in ("vol", "slab"):
        image = str(tmp_path / f"{kind}.nii.gz")
        steps.cnn_input(
            original=image,
            smoothed=image,
            arrays=tmp_path / f"{kind}.npz",
            kind="slab",
            n_slices=5,
            box_margin_mm=8.0,
            reference="brain_without_striatum",
            cohort="toy",
            subject=kind,
        )
        with np.load(tmp_path / f"{kind}.npz") as npz:
            arrays[kind] = npz["original"]
    assert arrays["vol"].shape == arrays["slab"].shape == slab_grid.SLAB_SHAPE
    np.testing.assert_allclose(arrays["slab"], arrays["vol"], rtol=1e-5)
    np.testing.assert_allclose(arrays["vol"], slab.make_slab(volume), rtol=1e-6)
    reference = slab.slab_reference_mask(5, "brain_without_striatum")
    assert arrays["slab"][reference].mean() == pytest.approx(1.0, rel=1e-5)
