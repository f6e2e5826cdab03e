"""The camera profiles of configs/cameras.yaml (issue 18 part 2): valid, different as real sites
are, and imaging the same subject when only the camera changes; the leave-one-camera-out split
logic: no subject and no image of a held-out camera in training."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, SMALL, job_counts, snakemake
from scipy import ndimage
from snakemake.utils import update_config
from test_bad_input import validate_files

from datspect.cohorts import simulate
from datspect.cohorts.simulate import simulate_subject
from datspect.errors import InputError
from datspect.evaluation import cameras
from datspect.evaluation.splits import drop_excluded
from datspect.io.tsv import read_tsv
from datspect.workflow.config_checks import load_yaml

FILES = [REPO / "config.yaml", REPO / "configs" / "cameras.yaml"]
#: The camera experiment at test scale: three of configs/cameras.yaml's cameras (the cheapest to
#: simulate and normalize), 4 + 4 scans each (the fewest that put a subject of each label in
#: every part), k = 1 and 2, one split, two settings.
TEST_CAMERAS = ["cam_ppmi", "cam_lehr_nosc", "cam_legp_lowcount"]


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


def test_cameras_config_plans_the_leave_one_camera_out_experiment(tmp_path):
    """The opt-in config in the workflow: every camera cohort simulated (on its own camera) and
    made into CNN inputs; 4 k x 5 cyclic training sets x 3 settings x 3 splits CNNs."""
    proc = snakemake("--dry-run", workdir=tmp_path, configfiles=[*SMALL, str(FILES[1])])
    counts = job_counts(proc.stdout)
    n_camera_scans = 5 * (50 + 50)
    assert counts["simulate_subject"] == 30 + 12 + n_camera_scans
    assert counts["cnn_input_bundle"] == 2 + 5
    assert counts["train_camera_cnn"] == 4 * 5 * 3 * 3
    assert counts["camera_splits"] == counts["cameras_table"] == counts["cameras_figure"] == 1


# ------------------------------------------------------------- leave-one-camera-out split logic


CAMS = ["a", "b", "c", "d", "e"]


def _sheets(n=10):
    """Per camera a sheet of n normal and n reduced subjects, ids unique across cameras."""
    return {
        c: pd.DataFrame(
            {
                "cohort": c,
                "subject_id": [f"{c}-{i:03d}" for i in range(2 * n)],
                "label": [0] * n + [1] * n,
                "image": [f"{c}/{i}.nii.gz" for i in range(2 * n)],
            }
        )
        for c in CAMS
    }


def test_training_sets_leave_every_camera_out_equally_often():
    sets = cameras.training_sets(CAMS, [])
    assert sorted({s["k"] for s in sets}) == [1, 2, 3, 4]
    assert len({tuple(s["cameras"]) for s in sets}) == len(sets) == 4 * 5
    for k in range(1, 5):
        windows = [s["cameras"] for s in sets if s["k"] == k]
        assert all(len(w) == len(set(w)) == k for w in windows)
        for camera in CAMS:
            assert sum(camera not in w for w in windows) == 5 - k
    with pytest.raises(InputError, match=r"1 \.\. 4"):
        cameras.training_sets(CAMS, [5])


def test_camera_splits_are_grouped_per_camera_and_independent_of_the_others():
    sheets = _sheets()
    splits = cameras.camera_splits(sheets, n_splits=3, fractions=(0.6, 0.2, 0.2), seed=7)
    assert not splits.duplicated(["split", "subject_id"]).any()
    for (camera, _), rows in splits.groupby(["cohort", "split"]):
        assert set(rows["subject_id"]) == set(sheets[camera]["subject_id"])
        assert rows["part"].value_counts().to_dict() == {"train": 12, "val": 4, "test": 4}
    fewer = cameras.camera_splits(
        {c: sheets[c] for c in CAMS[:3]}, n_splits=3, fractions=(0.6, 0.2, 0.2), seed=7
    )
    same = splits[splits["cohort"].isin(CAMS[:3])].reset_index(drop=True)
    pd.testing.assert_frame_equal(fewer, same)


def test_a_training_set_trains_on_no_image_of_a_held_out_camera():
    """The view a CNN of the set trains on (split_parts of datspect.cnn.experiment) holds the
    training cameras' subjects only; the held-out cameras are scored, never trained on."""
    from datspect.cnn.experiment import split_parts

    sheets = _sheets()
    splits = cameras.camera_splits(sheets, n_splits=2, fractions=(0.6, 0.2, 0.2), seed=7)
    for spec in cameras.training_sets(CAMS, []):
        training = pd.concat([sheets[c] for c in spec["cameras"]], ignore_index=True)
        view = cameras.training_view(splits, spec["cameras"])
        for split in (0, 1):
            parts = split_parts(view, split, training)
            used = parts["train"] | parts["val"]
            assert {s.split("-")[0] for s in used} == set(spec["cameras"])
            assert not used & parts["test"]


def test_a_training_budget_keeps_equal_labelled_shares_of_the_training_parts_only():
    splits = cameras.camera_splits(_sheets(), n_splits=2, fractions=(0.6, 0.2, 0.2), seed=7)
    assert cameras.limit_training(splits, ["a", "b", "c"], None, 1) is splits
    limited = cameras.limit_training(splits, ["a", "b", "c"], 12, seed=1)
    assert limited.equals(cameras.limit_training(splits, ["a", "b", "c"], 12, seed=1))
    assert not limited.equals(cameras.limit_training(splits, ["a", "b", "c"], 12, seed=2))
    for (camera, _), rows in limited.groupby(["cohort", "split"]):
        train = rows[rows["part"] == "train"]
        if camera in ("a", "b", "c"):  # 12 in all: 4 per camera, 2 normal and 2 reduced
            assert train["label"].value_counts().to_dict() == {0: 2, 1: 2}
        else:
            assert len(train) == 12  # cameras outside the set keep their parts
        assert (rows["part"] != "train").sum() == 8  # validation and test parts kept whole
    whole = cameras.limit_training(splits, ["a"], 100, seed=1)
    assert whole.equals(splits.reset_index(drop=True))


@pytest.mark.parametrize("budget", [None, 12])
def test_each_split_of_a_limited_training_set_is_a_valid_experiment(budget):
    """The sheet and splits one CNN gets (datspect.cnn.experiment checks them): every subject in
    one part, the budget's subjects in the training part, no held-out camera."""
    from datspect.cnn.experiment import split_parts

    sheets = _sheets()
    splits = cameras.camera_splits(sheets, n_splits=3, fractions=(0.6, 0.2, 0.2), seed=7)
    for split in range(3):
        sheet, view = cameras.training_data(sheets, splits, ["b", "c", "d"], split, budget, 5)
        parts = split_parts(view, split, sheet)
        assert len(parts["train"]) == (36 if budget is None else 12)
        assert len(parts["val"]) == len(parts["test"]) == 12
        assert set(sheet["cohort"]) == {"b", "c", "d"}


def _sbr_table(sheets, held_out_shift=0.0, held_out=()):
    """SBRs: normal 3.0, reduced 1.5 (+ 0.1 per subject index), both images; the cameras
    ``held_out`` shifted by ``held_out_shift``."""
    rows = []
    for camera, sheet in sheets.items():
        for i, (sid, label) in enumerate(zip(sheet["subject_id"], sheet["label"], strict=True)):
            value = (
                (1.5 if label else 3.0) + 0.01 * i + (held_out_shift if camera in held_out else 0)
            )
            for image, blur in (("original", 0.0), ("smoothed", 0.8)):
                sbr = value - blur
                rows.append((camera, sid, label, image, sbr, sbr))
    return pd.DataFrame(
        rows, columns=["cohort", "subject_id", "label", "image_setting", "putamen", "hv_putamen"]
    )


def test_sbr_cutoffs_are_fitted_on_the_training_cameras_alone():
    sheets = _sheets()
    splits = cameras.camera_splits(sheets, n_splits=1, fractions=(0.6, 0.2, 0.2), seed=7)
    kwargs = dict(method="sbr_aal", setting="original", split=0, training_cameras=["a", "b"])
    cutoff, calls = cameras.fit_sbr_cutoff(_sbr_table(sheets), splits, **kwargs)
    # the held-out cameras' values can change at will: the cutoff does not move
    shifted, calls_shifted = cameras.fit_sbr_cutoff(
        _sbr_table(sheets, -1.0, ("c", "d", "e")), splits, **kwargs
    )
    assert cutoff == shifted
    assert 1.6 < cutoff < 3.0
    # ...but a training camera's values move it
    moved, _ = cameras.fit_sbr_cutoff(_sbr_table(sheets, 0.5, ("a",)), splits, **kwargs)
    assert moved != cutoff
    assert set(calls["image_setting"]) == {"original"}
    seen = calls[calls["cohort"].isin(["a", "b"])]
    test_part = set(splits.loc[splits["part"] == "test", "subject_id"])
    assert set(seen["subject_id"]) <= test_part and set(seen["part"]) == {"test"}
    unseen = calls[~calls["cohort"].isin(["a", "b"])]
    assert len(unseen) == 3 * 20 and set(unseen["part"]) == {"independent"}
    # shifted down by 1.0, the held-out cameras' normal scans fall below the cutoff
    table = cameras.camera_metrics(
        calls_shifted.assign(training_set="k2-0"),
        [{"training_set": "k2-0", "k": 2, "cameras": ["a", "b"]}],
    )
    assert set(table.loc[table["seen"], "camera"]) == {"a", "b"}
    assert (table.loc[table["seen"], "accuracy"] == 1.0).all()
    assert (table.loc[~table["seen"], "specificity"] < 0.5).all()


def test_mixed_sbr_cutoffs_pool_both_images_of_the_training_part():
    sheets = _sheets()
    splits = cameras.camera_splits(sheets, n_splits=1, fractions=(0.6, 0.2, 0.2), seed=7)
    kwargs = dict(method="sbr_hv", split=0, training_cameras=["c", "d", "e"])
    original, _ = cameras.fit_sbr_cutoff(_sbr_table(sheets), splits, setting="original", **kwargs)
    mixed, _ = cameras.fit_sbr_cutoff(_sbr_table(sheets), splits, setting="mixed", **kwargs)
    assert mixed != original


# ------------------------------------------------------------- the experiment in the workflow


@pytest.fixture(scope="module")
def camera_run(small_run, tmp_path_factory):
    """The finished small run, then the camera experiment at test scale on top of it."""
    folder = tmp_path_factory.mktemp("cameras")
    source = load_yaml(FILES[1])
    cohorts = {c: source["cohorts"][c] for c in TEST_CAMERAS}
    for spec in cohorts.values():
        spec["simulate"] |= {"n_normal": 4, "n_reduced": 4}
    profiles = source["simulation"]["cameras"]
    used = {s["simulate"]["camera"] for s in cohorts.values()} & set(profiles)
    small = {
        "simulation": {"cameras": {name: profiles[name] for name in used}},
        "cohorts": cohorts,
        "cameras": {
            "cohorts": TEST_CAMERAS,
            "k": [1, 2],
            "n_splits": 1,
            "settings": ["original", "mixed"],
        },
    }
    config = folder / "cameras-small.yaml"
    config.write_text(yaml.safe_dump(small, sort_keys=False))
    workdir = Path(shutil.copytree(small_run, folder / "run"))
    snakemake("--cores", "2", "--quiet", workdir=workdir, configfiles=[*SMALL, str(config)])
    return workdir


def test_each_camera_model_trains_on_its_cameras_and_scores_the_others(camera_run):
    """From the run's own files: a model's validation and test rows are its cameras' parts, its
    training images as many as their training parts hold, and every scan of the other cameras
    is scored as unseen."""
    cams = TEST_CAMERAS
    excluded = read_tsv(camera_run / "results/qc/excluded.tsv")
    sheets = {
        c: drop_excluded(read_tsv(camera_run / f"data/{c}/cohort.tsv"), excluded) for c in cams
    }
    splits = read_tsv(camera_run / "results/cameras/splits.tsv")
    sets = cameras.training_sets(cams, [1, 2])
    for spec, setting in itertools.product(sets, ("original", "mixed")):
        name = spec["training_set"]
        scores = read_tsv(camera_run / f"results/cameras/cnn/{setting}/{name}/split-0/scores.tsv")
        mine = splits[splits["cohort"].isin(spec["cameras"]) & (splits["split"] == 0)]
        for part in ("val", "test"):
            scored = set(scores.loc[scores["part"] == part, "subject_id"])
            assert scored == set(mine.loc[mine["part"] == part, "subject_id"])
        unseen = [s for c, s in sheets.items() if c not in spec["cameras"]]
        assert sorted(scores.loc[scores["part"] == "independent", "subject_id"]) == sorted(
            pd.concat(unseen)["subject_id"]
        )
        log = (camera_run / f"logs/train_camera_cnn/{setting}_{name}_0.log").read_text()
        n_train = (mine["part"] == "train").sum() * (2 if setting == "mixed" else 1)
        assert f"split 0: train {n_train} images" in log


def test_cameras_table_figure_report_and_summary_line(camera_run):
    cams = TEST_CAMERAS
    table = read_tsv(camera_run / "results/metrics/cameras.tsv")
    models = table.groupby(["method", "setting", "training_set", "split"])
    assert models.ngroups == 3 * 2 * 6 * 1  # methods x settings x training sets x splits
    for (_, _, name, _), rows in models:
        k = int(name[1])
        assert (rows["k"] == k).all() and sorted(rows["camera"]) == sorted(cams)
        assert rows["seen"].sum() == k
        seen = set(rows.loc[rows["seen"], "camera"])
        assert set(rows["training_cameras"].iloc[0].split("+")) == seen
    excluded = read_tsv(camera_run / "results/qc/excluded.tsv")
    scans = {
        c: len(drop_excluded(read_tsv(camera_run / f"data/{c}/cohort.tsv"), excluded)) for c in cams
    }
    unseen = table[~table["seen"]]
    assert (unseen["n"] == unseen["camera"].map(scans)).all()  # every scan of the camera
    assert (table["accuracy"].between(0, 1)).all()
    assert (camera_run / "results/figures/cameras.png").stat().st_size > 10_000
    assert "Leave-one-camera-out" in (camera_run / "results/report/cameras.html").read_text()
    summary = (camera_run / "results/summary.md").read_text()
    assert "cameras never seen in training (leave-one-camera-out over 3 cameras" in summary


def test_the_camera_experiment_leaves_the_study_results_as_they_were(small_run, camera_run):
    """The development cohort's rows of summary.tsv, byte for byte: the same models, now also
    scoring the camera cohorts."""

    def development(run):
        table = read_tsv(run / "results/metrics/summary.tsv")
        return table[table["cohort"] == "ppmi"].reset_index(drop=True)

    pd.testing.assert_frame_equal(development(small_run), development(camera_run))
