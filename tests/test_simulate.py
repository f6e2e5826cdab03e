"""Tests of the physics-based FP-CIT SPECT simulator (cohorts.simulate and cohorts.phantom)."""

from __future__ import annotations

import copy
import json
import re

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO
from nibabel.affines import voxel_sizes
from scipy import ndimage
from scipy.spatial.transform import Rotation

from datspect import schema
from datspect.cohorts import deform, phantom, simulate
from datspect.cohorts.synthetic_subjects import cohort_design, stable_hash
from datspect.errors import InputError
from datspect.space import anatomy

SEED = 12345
PHYSICS = schema.defaults("simulation")
# The default run's cohorts: config.yaml's choice (the schema has no default cohorts).
COHORTS = schema.load_yaml(REPO / "config.yaml")["cohorts"]
PPMI = COHORTS["ppmi"]["simulate"]
CLINICAL = COHORTS["clinical"]["simulate"]


@pytest.fixture(scope="module")
def subjects():
    """Six normal and six reduced ppmi subjects (noisy images and truth)."""
    out = []
    for i in range(12):
        label = i % 2
        img, truth = simulate.simulate_subject(f"ppmi-{i + 1:04d}", label, PPMI, PHYSICS, SEED)
        out.append((img, truth))
    return out


def _centroid_mm(*names: str) -> np.ndarray:
    """MNI mm centroid of the union of AAL regions."""
    mask = np.logical_or.reduce([anatomy.region(n) for n in names])
    return anatomy.mni_world_coords()[mask].mean(axis=0)


def _to_native_voxel(img: nib.Nifti1Image, truth: dict, mni_mm: np.ndarray) -> np.ndarray:
    m = np.asarray(truth["native_from_mni"])
    return (np.linalg.inv(img.affine) @ m @ np.r_[mni_mm, 1.0])[:3]


@pytest.mark.parametrize("cohort", [PPMI, CLINICAL])
def test_image_grid_matches_camera(cohort):
    img, truth = simulate.simulate_subject("x-0001", 1, cohort, PHYSICS, SEED)
    cam = PHYSICS["cameras"][cohort["camera"]]
    data = np.asarray(img.dataobj)
    assert data.dtype == np.float32
    assert img.shape == tuple(cam["shape"])
    assert abs(np.linalg.det(img.affine[:3, :3])) > 1e-3
    np.testing.assert_allclose(voxel_sizes(img.affine), cam["voxel_mm"])
    assert "".join(nib.aff2axcodes(img.affine)) == cam["orientation"]
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    assert np.all(np.isfinite(data)) and data.min() >= 0 and data.max() > 0
    assert truth["camera"] == cohort["camera"]
    json.dumps(truth)  # JSON-serialisable


def test_written_file_round_trips(tmp_path, subjects):
    img, _ = subjects[0]
    path = tmp_path / "scan.nii.gz"
    nib.save(img, path)
    back = nib.load(path)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-4)
    ref = np.asarray(img.dataobj)
    assert np.abs(back.get_fdata() - ref).max() <= 1e-4 * ref.max()


def test_deterministic_per_subject(subjects):
    img, truth = subjects[2]
    again, truth_again = simulate.simulate_subject(
        truth["subject_id"], truth["label"], PPMI, PHYSICS, SEED
    )
    assert np.array_equal(np.asarray(img.dataobj), np.asarray(again.dataobj))
    assert truth == truth_again
    other_id = np.asarray(subjects[4][0].dataobj)  # same label, another id
    assert not np.array_equal(np.asarray(img.dataobj), other_id)
    other_seed, _ = simulate.simulate_subject(
        truth["subject_id"], truth["label"], PPMI, PHYSICS, SEED + 1
    )
    assert not np.array_equal(np.asarray(img.dataobj), np.asarray(other_seed.dataobj))


def test_stable_hash_is_not_python_hash():
    assert stable_hash("ppmi-0001") == stable_hash("ppmi-0001")
    assert stable_hash("ppmi-0001") != stable_hash("ppmi-0002")
    assert 0 <= stable_hash("ppmi-0001") < 2**64


def test_truth_ranges(subjects):
    pose_cfg = PHYSICS["pose"]
    put = {0: [], 1: []}
    for _, t in subjects:
        assert t["pattern"] in simulate.PATTERNS
        assert set(t["sbr_true"]) == {"putamen_l", "putamen_r", "caudate_l", "caudate_r"}
        assert all(v > 0 for v in t["sbr_true"].values())
        rot, shift = np.abs(t["pose"]["rotation_deg"]), np.abs(t["pose"]["translation_mm"])
        assert np.all(rot <= pose_cfg["rotation_deg"]) and np.all(
            shift <= pose_cfg["translation_mm"]
        )
        assert pose_cfg["scale"][0] <= t["pose"]["scale"] <= pose_cfg["scale"][1]
        lo, hi = PPMI["age_range"]
        assert lo <= t["age"] <= hi and t["sex"] in ("M", "F")
        if t["label"] == 0:
            assert t["pattern"] == "normal" and t["severity"] == 0 and t["affected_side"] is None
        else:
            assert t["pattern"] == "typical" and 0 < t["severity"] < 1
            assert t["affected_side"] in ("l", "r")
            side = t["affected_side"]
            other = "r" if side == "l" else "l"
            # Asymmetric loss: the more affected putamen binds less (healthy side noise aside).
            assert t["sbr_true"][f"putamen_{side}"] < 1.1 * t["sbr_true"][f"putamen_{other}"]
        put[t["label"]].append(min(t["sbr_true"]["putamen_l"], t["sbr_true"]["putamen_r"]))
    assert np.mean(put[1]) < 0.7 * np.mean(put[0])


def test_rotation_matrix_is_extrinsic_xyz():
    """The pose rotation is scipy's extrinsic x-y-z Euler rotation, up to rounding."""
    for angles in np.random.default_rng(0).uniform(-30.0, 30.0, (50, 3)):
        expected = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
        np.testing.assert_allclose(simulate.rotation_matrix(angles), expected, rtol=0, atol=1e-15)


def test_native_from_mni_lands_on_striatal_blob():
    """The AAL striatum centroid, mapped by the truth affine, is the centre of the hot blob
    (the subject's own anatomy off: it moves the striata by millimetres on purpose)."""
    rigid = {**PHYSICS, "anatomy": {**PHYSICS["anatomy"], **dict.fromkeys(deform.SIZE_KEYS, 0)}}
    for cohort, subject in ((PPMI, "ppmi-0007"), (CLINICAL, "clinical-0003")):
        img, truth = simulate.simulate_subject(subject, 0, cohort, rigid, SEED, noise=False)
        data = np.asarray(img.dataobj)
        ijk = np.indices(data.shape).reshape(3, -1).T
        world = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
        for side in ("l", "r"):
            target = _to_native_voxel(
                img, truth, _centroid_mm(f"caudate_{side}", f"putamen_{side}")
            )
            target_mm = img.affine[:3, :3] @ target + img.affine[:3, 3]
            # Hot voxels within 25 mm: their intensity-weighted centre is the blob's centre.
            near = np.linalg.norm(world - target_mm, axis=1) < 25.0
            values = data.reshape(-1)[near]
            hot = values > 0.6 * values.max()
            blob = (world[near][hot] * values[hot, None]).sum(axis=0) / values[hot].sum()
            # Binding is highest anteriorly (caudate head, putamen gradient), which moves the
            # blob ~3 mm from the AAL centroid; a pose error moves it by centimetres.
            assert np.linalg.norm(blob - target_mm) < 5.0, (subject, side)
            # ... and it is a striatal peak, far above the average of the head.
            assert data[tuple(np.rint(target).astype(int))] > 5.0 * data[data > 0].mean()


def test_left_right_survive_the_native_affine():
    """A one-sided loss shows on the correct side of the scanner's RAS world (both cameras)."""
    physics = copy.deepcopy(PHYSICS)
    physics["disease"]["severity_beta"] = [50.0, 1.0]  # severe
    physics["disease"]["patterns"]["typical"]["asymmetry"] = [0.0, 0.0]  # other side spared
    for cohort in (PPMI, CLINICAL):
        cohort = dict(cohort, atypical_fraction=0.0)
        img, truth = simulate.simulate_subject("lr-0001", 1, cohort, physics, SEED, noise=False)
        data = np.asarray(img.dataobj)
        side = truth["affected_side"]
        other = "r" if side == "l" else "l"
        value = {}
        for s in (side, other):
            ijk = np.rint(_to_native_voxel(img, truth, _centroid_mm(f"putamen_{s}"))).astype(int)
            value[s] = data[tuple(ijk)]
        assert value[side] < 0.75 * value[other]


def test_posterior_first_putamen_loss():
    geo = phantom.geometry(6.0, 8.0, 16.0)
    t = geo.ap_position["putamen_l"]
    healthy = phantom.putamen_profile(t, 5.0, 0.3, 0.0, 0.0, 0.95)
    assert abs(healthy.mean() - 5.0) < 1e-3
    assert healthy[t < 0.2].mean() > healthy[t > 0.8].mean()  # anterior > posterior
    pd = phantom.putamen_profile(t, 5.0, 0.3, 0.3, 1.2, 0.95)
    remaining = pd / healthy
    assert remaining[t > 0.8].mean() < remaining[t < 0.2].mean()
    assert remaining.min() >= 0.05 - 1e-6


def test_cohort_design_counts_ids_and_shuffle():
    design = cohort_design("ppmi", 207, 438, SEED)
    ids = [s for s, _ in design]
    labels = np.array([lab for _, lab in design])
    assert len(design) == 645 and len(set(ids)) == 645
    assert (labels == 0).sum() == 207 and (labels == 1).sum() == 438
    assert all(re.fullmatch(r"ppmi-\d{4}", s) for s in ids)
    assert ids == sorted(ids)  # ids run in order ...
    assert not np.all(labels[:207] == 0)  # ... while labels are shuffled over them
    assert design == cohort_design("ppmi", 207, 438, SEED)
    assert design != cohort_design("ppmi", 207, 438, SEED + 1)
    assert cohort_design("clinical", 0, 2, SEED) == [
        ("clinical-0001", 1),
        ("clinical-0002", 1),
    ]
    with pytest.raises(InputError, match="n_normal"):
        cohort_design("ppmi", -1, 3, SEED)


def test_atypical_and_borderline_patterns_appear():
    cohort = dict(CLINICAL, atypical_fraction=1.0, borderline_fraction=1.0)
    geo = simulate._geometry(PHYSICS, PHYSICS["cameras"]["clinic"], 0.92)
    patterns = set()
    for i in range(12):
        rng = np.random.default_rng(i)
        _, truth = simulate.draw_biology(rng, i % 2, cohort, PHYSICS, geo)
        patterns.add(truth["pattern"])
    assert patterns == {"borderline", "symmetric", "caudate_dominant"}


def test_bad_parameters_raise_input_error():
    """What the config schema cannot know (tests/test_config.py has the schema's cases)."""
    physics = copy.deepcopy(PHYSICS)
    physics["cameras"]["ppmi"]["shape"] = [128, 128, 20]
    with pytest.raises(InputError, match="simulation.cameras.ppmi: .*field of view"):
        simulate.simulate_subject("x-1", 0, PPMI, physics, SEED)
    with pytest.raises(InputError, match="label"):
        simulate.simulate_subject("x-1", 2, PPMI, PHYSICS, SEED)
    with pytest.raises(InputError, match="seed"):
        simulate.simulate_subject("x-1", 0, PPMI, PHYSICS, -3)


def test_broad_blur_matches_gaussian_filter():
    rng = np.random.default_rng(0)
    x = np.zeros((41, 46, 39), np.float32)
    x[10:30, 12:34, 9:30] = rng.random((20, 22, 21))
    ref = ndimage.gaussian_filter(x, 6.0, mode="constant", truncate=3.0)
    out = simulate.broad_blur(x, 6.0)
    assert out.shape == x.shape
    assert np.abs(out - ref).max() < 0.02 * ref.max()
