"""The camera profiles of configs/cameras.yaml (issue 18 part 2): valid, different as real sites
are, and imaging the same subject when only the camera changes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO, SMALL, job_counts, snakemake
from scipy import ndimage
from snakemake.utils import update_config
from test_bad_input import validate_files

from datspect.cohorts import simulate
from datspect.cohorts.simulate import simulate_subject
from datspect.workflow.config_checks import load_yaml

FILES = [REPO / "config.yaml", REPO / "configs" / "cameras.yaml"]


@pytest.fixture(scope="module")
def config():
    merged = {}
    for file in FILES:
        update_config(merged, load_yaml(file))
    return merged


def camera_cohorts(config):
    return {
        name: spec["simulate"]
        for name, spec in config["cohorts"].items()
        if name.startswith("cam_")
    }


def test_profiles_validate_and_differ_as_sites_do(config):
    validate_files(FILES)
    cohorts = camera_cohorts(config)
    cameras = config["simulation"]["cameras"]
    profiles = [cameras[sim["camera"]] for sim in cohorts.values()]
    assert len(profiles) >= 4
    assert {"ppmi", "clinic"} <= set(cameras)  # the default cameras stay
    assert all(8.0 <= p["psf_fwhm_mm"] <= 16.0 for p in profiles)
    assert len({p["voxel_mm"][0] for p in profiles}) >= 3
    assert len({p["postfilter_fwhm_mm"] for p in profiles}) >= 3
    corrected = [p for p in profiles if p["scatter_fraction"] <= 0.15]
    uncorrected = [p for p in profiles if p["scatter_fraction"] >= 0.3]
    assert len(corrected) >= 2 and len(uncorrected) >= 2
    ppmi = config["cohorts"]["ppmi"]["simulate"]
    for sim in cohorts.values():  # only the camera differs from the development cohort
        assert {k: v for k, v in sim.items() if k not in ("camera", "n_normal", "n_reduced")} == {
            k: v for k, v in ppmi.items() if k not in ("camera", "n_normal", "n_reduced")
        }


def test_every_pose_of_the_population_fits_each_field_of_view(config):
    """The simulator stops at a brain outside the field of view: no profile may be so tight
    that a pose of the configured range (rotation, shift, head size) does that."""
    physics = config["simulation"]
    for sim in camera_cohorts(config).values():
        camera = physics["cameras"][sim["camera"]]
        geo = simulate._geometry(physics, camera, physics["pose"]["scale"][0])
        rng = np.random.default_rng(0)
        for _ in range(1000):
            pose = simulate.draw_pose(rng, physics["pose"], camera["head_offset_mm"])
            voxels = simulate.brain_corner_voxels(geo, camera, pose["native_from_mni"])
            inside = (voxels >= 0.5) & (voxels <= np.array(camera["shape"]) - 1.5)
            assert inside.all(), f"{sim['camera']}: a brain corner within a voxel of the edge"


def _at(img, native_from_mni, xyz) -> float:
    voxel = np.linalg.inv(img.affine) @ np.asarray(native_from_mni) @ np.r_[xyz, 1.0]
    data = np.asarray(img.dataobj, dtype=float)
    return float(ndimage.map_coordinates(data, voxel[:3, None], order=1)[0])


def test_same_subject_on_every_camera_differs_only_by_the_camera(config):
    physics = config["simulation"]
    contrast, biology = {}, []
    for name, sim in camera_cohorts(config).items():
        img, truth = simulate_subject("subject-001", 0, sim, physics, 7, noise=False)
        camera = physics["cameras"][sim["camera"]]
        assert img.shape == tuple(camera["shape"])
        assert np.allclose(img.header.get_zooms(), camera["voxel_mm"])
        biology.append((truth["age"], truth["sex"], truth["sbr_true"]))
        m = truth["native_from_mni"]
        putamen = np.mean([_at(img, m, (side * 25, 2, 2)) for side in (-1, 1)])
        occipital = np.mean([_at(img, m, (side * 20, -80, 5)) for side in (-1, 1)])
        contrast[name] = putamen / occipital - 1
    assert all(b == biology[0] for b in biology)
    # the sharp, scatter-corrected systems show the most striatal contrast of the same subject
    assert contrast["cam_fanbeam"] > contrast["cam_lehr_sc"] > contrast["cam_lehr_nosc"]
    assert contrast["cam_lehr_sc"] > contrast["cam_legp_lowcount"]
    assert max(contrast.values()) / min(contrast.values()) > 1.3


def test_cameras_config_plans_each_camera_cohort_as_an_unseen_one(tmp_path):
    """The opt-in config in the workflow: every camera cohort simulated (on its own camera) and
    made into CNN inputs, for the development cohort's robust models to score (the k = 1
    point)."""
    proc = snakemake("--dry-run", workdir=tmp_path, configfiles=[*SMALL, str(FILES[1])])
    counts = job_counts(proc.stdout)
    n_camera_scans = 5 * (50 + 50)
    assert counts["simulate_subject"] == 30 + 12 + n_camera_scans
    assert counts["cnn_input_bundle"] == 2 + 5
