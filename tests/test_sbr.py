"""SBR and hottest-voxels analysis on phantoms with known ratios."""

import numpy as np
import pytest

from datspect.errors import InputError
from datspect.features import sbr
from datspect.features.slab import make_slab
from datspect.space import anatomy
from datspect.space.slab_grid import SLAB_SHAPE


def _phantom(putamen_l=4.0, putamen_r=4.0, caudate=1.0, background=1.0):
    vol = np.full(anatomy.MNI_SHAPE, background)
    vol[anatomy.region("putamen_l")] = putamen_l
    vol[anatomy.region("putamen_r")] = putamen_r
    vol[anatomy.region("caudate")] = caudate
    return vol


def test_aal_sbr_known_ratio():
    res = sbr.aal_sbr(_phantom(caudate=2.5))
    assert res["reference_mean"] == pytest.approx(1.0)
    for key in ("putamen_l", "putamen_r", "putamen"):
        assert res[key] == pytest.approx(3.0, rel=0.01)
    assert res["caudate"] == pytest.approx(1.5, rel=0.01)
    # striatum is the voxel-weighted mean over caudate + putamen, not the mean of two SBRs
    n_put, n_cau = anatomy.region("putamen_l").sum(), anatomy.region("caudate_l").sum()
    expected = (4.0 * n_put + 2.5 * n_cau) / (n_put + n_cau) - 1.0
    assert res["striatum_l"] == pytest.approx(expected)


def test_aal_sbr_left_right_combination():
    vol = _phantom(putamen_l=4.0, putamen_r=3.0)
    by_min = sbr.aal_sbr(vol)
    by_mean = sbr.aal_sbr(vol, combine="mean")
    assert by_min["putamen_l"] == pytest.approx(3.0)
    assert by_min["putamen_r"] == pytest.approx(2.0)
    assert by_min["putamen"] == pytest.approx(2.0)
    assert by_mean["putamen"] == pytest.approx(2.5)
    with pytest.raises(InputError, match="combine"):
        sbr.aal_sbr(vol, combine="max")


def test_aal_sbr_occipital_reference_and_scale_invariance():
    vol = _phantom()
    vol[anatomy.region("occipital")] = 2.0
    res = sbr.aal_sbr(vol, reference="occipital")
    assert res["reference_mean"] == pytest.approx(2.0)
    assert res["putamen"] == pytest.approx(1.0)
    assert sbr.aal_sbr(7.0 * vol, reference="occipital")["putamen"] == pytest.approx(1.0)


def test_aal_sbr_input_errors():
    with pytest.raises(InputError, match="MNI 2 mm grid"):
        sbr.aal_sbr(np.ones((64, 64, 64)), name="scan.nii")
    with pytest.raises(InputError, match="must be > 0"):
        sbr.aal_sbr(np.zeros(anatomy.MNI_SHAPE))
    vol = _phantom()
    vol[anatomy.region("putamen_r")] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        sbr.aal_sbr(vol)
    with pytest.raises(InputError, match="reference"):
        sbr.aal_sbr(_phantom(), reference="cerebellum")


def _hot_spot(side: str, n_voxels: int) -> np.ndarray:
    """The n voxels of the AAL putamen of one side nearest to its centroid."""
    putamen = anatomy.region(f"putamen_{side}")
    idx = np.argwhere(putamen)
    dist = np.linalg.norm(idx - idx.mean(axis=0), axis=1)
    chosen = idx[np.argsort(dist, kind="stable")[:n_voxels]]
    mask = np.zeros(anatomy.MNI_SHAPE, bool)
    mask[tuple(chosen.T)] = True
    return mask


def test_hv_recovers_hot_spot_ratio_and_counts_voxels():
    vol = np.ones(anatomy.MNI_SHAPE)
    vol[_hot_spot("l", 125)] = 5.0  # 125 voxels of 8 mm^3 = 1 ml
    vol[_hot_spot("r", 250)] = 3.0  # 2 ml
    res = sbr.hv_sbr(vol, volume_ml=1.0)
    assert res["hv_putamen_l"] == pytest.approx(4.0)
    assert res["hv_putamen_r"] == pytest.approx(2.0)
    assert res["hv_putamen"] == pytest.approx(2.0)
    assert sbr.hv_sbr(vol, volume_ml=1.0, combine="mean")["hv_putamen"] == pytest.approx(3.0)
    # 2 ml on the left = 125 hot voxels (5) + 125 background voxels (1)
    assert sbr.hv_sbr(vol, volume_ml=2.0)["hv_putamen_l"] == pytest.approx(2.0)


def test_hv_ignores_hot_spots_outside_the_voi():
    vol = np.ones(anatomy.MNI_SHAPE)
    vol[_hot_spot("l", 125)] = 5.0
    vol[_hot_spot("r", 125)] = 5.0
    base = sbr.hv_sbr(vol, volume_ml=1.0)
    # hotter than the putamen, but in the caudate (outside VOI and reference) and outside the
    # brain (a grid corner): the hottest-voxels search must not see them
    vol[anatomy.region("caudate")] = 50.0
    vol[:3, :3, :3] = 50.0
    assert not sbr.hv_voi("l")[:3, :3, :3].any()
    res = sbr.hv_sbr(vol, volume_ml=1.0)
    assert res["hv_putamen_l"] == pytest.approx(base["hv_putamen_l"])
    assert res["hv_putamen_r"] == pytest.approx(base["hv_putamen_r"])
    # without the caudate exclusion the grown VOI reaches into the hot caudate
    assert sbr.hv_sbr(vol, volume_ml=1.0, exclude_caudate=False)["hv_putamen_l"] > 5.0


def test_hv_voi_geometry():
    for side, other in (("l", "r"), ("r", "l")):
        voi = sbr.hv_voi(side)
        assert voi[anatomy.region(f"putamen_{side}")].all()
        assert not (voi & anatomy.region(f"caudate_{side}")).any()
        assert not (voi & anatomy.region(f"putamen_{other}")).any()
        assert voi.sum() > 2 * anatomy.region(f"putamen_{side}").sum()
    assert sbr.hv_voi("l", 2.0).sum() < sbr.hv_voi("l", 6.0).sum()


def test_hv_robust_to_shift_where_aal_is_not():
    vol = np.ones(anatomy.MNI_SHAPE)
    # both putamina moved 4 mm laterally (x index grows to the subject's left on the LAS grid)
    vol[np.roll(anatomy.region("putamen_l"), 2, axis=0)] = 4.0
    vol[np.roll(anatomy.region("putamen_r"), -2, axis=0)] = 4.0
    assert sbr.hv_sbr(vol, volume_ml=2.0)["hv_putamen"] == pytest.approx(3.0)
    assert sbr.aal_sbr(vol)["putamen"] < 2.7


def test_hv_input_errors():
    vol = _phantom()
    with pytest.raises(InputError, match="volume_ml"):
        sbr.hv_sbr(vol, volume_ml=0.001)
    with pytest.raises(InputError, match="VOI has only"):
        sbr.hv_sbr(vol, volume_ml=1000.0)


def test_slab_masks_follow_projection_rule():
    masks = sbr.slab_masks()
    assert set(masks) >= {"putamen_l", "putamen_r", "reference", "hv_voi_l", "hv_voi_r"}
    for mask in masks.values():
        assert mask.shape == SLAB_SHAPE
    fraction = make_slab(_phantom(putamen_l=2.0, putamen_r=1.0, background=1.0)) - 1.0
    # make_slab divides by the reference mean (1) so `fraction` is the share of putamen_l voxels
    np.testing.assert_array_equal(masks["putamen_l"], fraction >= 0.5 - 1e-6)
    assert not (masks["putamen_l"] & masks["reference"]).any()


def test_slab_sbr_known_ratio():
    masks = sbr.slab_masks()
    slab = np.ones(SLAB_SHAPE)
    slab[masks["putamen_l"]] = 4.0
    slab[masks["putamen_r"]] = 3.0
    res = sbr.aal_sbr_slab(slab)
    assert res["putamen_l"] == pytest.approx(3.0)
    assert res["putamen"] == pytest.approx(2.0)
    assert sbr.aal_sbr_slab(10 * slab, combine="mean")["putamen"] == pytest.approx(2.5)
    hot = np.ones(SLAB_SHAPE)
    rows, cols = np.nonzero(masks["putamen_l"])
    hot[rows[:25], cols[:25]] = 6.0  # 25 pixels = 100 mm^2
    hot[0, 0] = 100.0  # outside every VOI and the reference
    assert sbr.hv_sbr_slab(hot, area_mm2=100.0)["hv_putamen_l"] == pytest.approx(5.0)
    with pytest.raises(InputError, match="slab has shape"):
        sbr.aal_sbr_slab(slab.T)


def test_slab_sbr_close_to_3d_sbr():
    vol = _phantom()
    slab_res = sbr.aal_sbr_slab(make_slab(vol))
    assert slab_res["putamen"] == pytest.approx(sbr.aal_sbr(vol)["putamen"], rel=0.1)
