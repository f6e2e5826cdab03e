"""Slab and striatal box: shape, orientation and normalization."""

import numpy as np
import pytest

from datspect.errors import InputError
from datspect.features import slab
from datspect.space import anatomy, slab_grid


def test_putamen_slices_centred_on_putamen():
    z = slab_grid.putamen_slices()
    np.testing.assert_array_equal(z, np.arange(35, 40))
    centroid = np.argwhere(anatomy.region("putamen"))[:, 2].mean()
    assert abs(z.mean() - centroid) <= 0.5
    assert len(slab_grid.putamen_slices(4)) == 4
    assert np.all(np.diff(slab_grid.putamen_slices(4)) == 1)
    with pytest.raises(InputError, match="n_slices"):
        slab_grid.putamen_slices(0)


def test_slab_orientation_hot_voxel():
    vol = np.ones(anatomy.MNI_SHAPE)
    x, y = 30, 70
    vol[x, y, 37] = 6.0  # inside the slab: adds (6 - 1) / 5 to the mean
    vol[60, 20, 10] = 100.0  # outside the 5 slices: invisible
    out = slab.make_slab(vol)
    assert out.shape == (109, 91) and out.dtype == np.float32
    assert np.unravel_index(np.argmax(out), out.shape) == (y, x)
    assert out[y, x] == pytest.approx(2.0, rel=1e-5)
    assert out[20, 60] == pytest.approx(1.0, rel=1e-3)


def test_slab_striatum_sits_where_the_ppmi_slabs_have_it():
    vol = np.ones(anatomy.MNI_SHAPE)
    vol[anatomy.region("striatum")] = 4.0
    out = slab.make_slab(vol)
    rows = np.nonzero(out > 2.0)[0]
    # the published PPMI slabs have the striatum around row 66, posterior at row 0
    assert 60 <= rows.mean() <= 72


def test_slab_divided_by_in_slab_reference_mean():
    vol = np.full(anatomy.MNI_SHAPE, 2.0)
    np.testing.assert_allclose(slab.make_slab(vol), 1.0)
    rng = np.random.default_rng(0)
    noisy = rng.gamma(5.0, 1.0, anatomy.MNI_SHAPE)
    projected = slab.project_to_slab(noisy)
    for reference in ("brain_without_striatum", "occipital"):
        out = slab.make_slab(noisy, reference=reference)
        in_slab = projected[slab.slab_reference_mask(5, reference)].mean()
        np.testing.assert_allclose(out, projected / in_slab, rtol=1e-5)
        assert out[slab.slab_reference_mask(5, reference)].mean() == pytest.approx(1.0, rel=1e-5)
    # not the 3D reference mean: the slab's own reference pixels set the scale
    assert projected[slab.slab_reference_mask()].mean() != pytest.approx(
        slab.reference_mean(noisy), rel=1e-4
    )


def test_make_slab_is_scale_slab_of_the_projection_and_scale_free():
    """One definition of the 2D CNN input: a 3D volume's slab is scaled as a published PNG."""
    rng = np.random.default_rng(1)
    vol = rng.gamma(5.0, 1.0, anatomy.MNI_SHAPE)
    vol[anatomy.region("striatum")] *= 3.0
    for n_slices, reference in ((5, "brain_without_striatum"), (3, "occipital")):
        expected = slab.scale_slab(
            slab.project_to_slab(vol, n_slices), n_slices=n_slices, reference=reference
        )
        out = slab.make_slab(vol, n_slices, reference)
        assert out.dtype == np.float32 and out.shape == slab_grid.SLAB_SHAPE
        np.testing.assert_array_equal(out, expected)
        for scale in (1e-3, 255.0 / vol.max(), 7.5e4):
            np.testing.assert_allclose(
                slab.make_slab(scale * vol, n_slices, reference), out, rtol=1e-5
            )
    png_like = np.round(slab.project_to_slab(vol) * 255.0 / slab.project_to_slab(vol).max())
    np.testing.assert_allclose(
        slab.scale_slab(png_like / 255.0), slab.scale_slab(png_like), rtol=1e-6
    )


def test_scale_slab_errors():
    with pytest.raises(InputError, match=r"expected \(109, 91\)"):
        slab.scale_slab(np.ones((91, 109)))
    with pytest.raises(InputError, match="must be > 0"):
        slab.scale_slab(np.zeros(slab_grid.SLAB_SHAPE))
    with pytest.raises(InputError, match="reference"):
        slab.scale_slab(np.ones(slab_grid.SLAB_SHAPE), reference="cerebellum")


def test_slab_input_errors():
    with pytest.raises(InputError, match="MNI 2 mm grid"):
        slab.make_slab(np.ones((91, 91, 109)))
    with pytest.raises(InputError, match="must be > 0"):
        slab.make_slab(-np.ones(anatomy.MNI_SHAPE))
    vol = np.ones(anatomy.MNI_SHAPE)
    vol[45, 60, 37] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        slab.make_slab(vol)


def test_striatal_box_contains_the_striata():
    vol = np.ones(anatomy.MNI_SHAPE)
    striatum = anatomy.region("striatum")
    vol[striatum] = 5.0
    box = slab.striatal_box(vol)
    assert box.dtype == np.float32
    assert np.sum(box > 4.0) == striatum.sum()
    tight = slab.striatal_box(vol, margin_mm=0.0)
    assert np.sum(tight > 4.0) == striatum.sum()
    assert tuple(b - t for b, t in zip(box.shape, tight.shape, strict=True)) == (8, 8, 8)
    with pytest.raises(InputError, match="margin_mm"):
        slab.striatal_box(vol, margin_mm=-1.0)
