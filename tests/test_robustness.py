"""Robustness to extra smoothing: features per FWHM level and per-split scoring."""

from __future__ import annotations

import json
from functools import partial

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SMALL

from datspect.cnn.train import predict
from datspect.errors import InputError
from datspect.evaluation import robustness
from datspect.features import sbr
from datspect.features.slab import make_slab
from datspect.space import anatomy
from datspect.space.slab_grid import SLAB_SHAPE

SBR_PARAMS = {
    "reference": "brain_without_striatum",
    "combine": "min",
    "hv_volume_ml": 10.0,
    "hv_margin_mm": 6.0,
    "hv_exclude_caudate": True,
}
CNN_PARAMS = {"input": "slab", "n_slices": 5, "box_margin_mm": 8.0}


def _scan(tmp_path, name, putamen):
    """A phantom on the MNI grid: grey background 1, caudate 4, putamen ``putamen``."""
    vol = np.ones(anatomy.MNI_SHAPE, np.float32)
    vol[anatomy.region("caudate")] = 4.0
    vol[anatomy.region("putamen")] = putamen
    path = tmp_path / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(vol, anatomy.MNI_AFFINE), path)
    return path


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scans")
    images = {"hc": _scan(tmp, "hc", 4.0), "pd": _scan(tmp, "pd", 1.8)}
    return images, {"hc": 0, "pd": 1}


def _features(scans, fwhm):
    images, labels = scans
    return robustness.level_features(
        images,
        labels,
        cohort="dev",
        fwhm_mm=fwhm,
        sbr_params=SBR_PARAMS,
        cnn_params=CNN_PARAMS,
    )


def test_level_zero_is_the_workflows_features(scans):
    table, inputs = _features(scans, 0)
    volume = np.asarray(nib.load(scans[0]["hc"]).dataobj, dtype=np.float32)
    row = table.set_index("subject_id").loc["hc"]
    assert row["putamen"] == pytest.approx(sbr.aal_sbr(volume)["putamen"], rel=1e-12)
    assert row["hv_putamen"] == pytest.approx(sbr.hv_sbr(volume)["hv_putamen"], rel=1e-12)
    assert row["label"] == 0 and row["cohort"] == "dev" and row["fwhm"] == 0.0
    np.testing.assert_array_equal(inputs["hc"], make_slab(volume))


def test_smoothing_lowers_the_sbr_monotonically(scans):
    by_level = {f: _features(scans, f)[0].set_index("subject_id") for f in (0, 6, 12, 24)}
    for subject in ("hc", "pd"):
        aal = [by_level[f].loc[subject, "putamen"] for f in (0, 6, 12, 24)]
        hv = [by_level[f].loc[subject, "hv_putamen"] for f in (0, 6, 12, 24)]
        assert np.all(np.diff(aal) < 0), aal
        assert np.all(np.diff(hv) < 0), hv
    # the hottest voxels follow the blurred activity: they keep more of the SBR than the ROI
    assert by_level[24].loc["hc", "hv_putamen"] > by_level[24].loc["hc", "putamen"]
    _, inputs = _features(scans, 12)
    assert inputs["pd"].shape == SLAB_SHAPE


def test_missing_label_is_one_clear_error(scans):
    images, _ = scans
    with pytest.raises(InputError, match=r"\['pd'\] have an image but no label"):
        robustness.level_features(
            images,
            {"hc": 0},
            cohort="dev",
            fwhm_mm=0,
            sbr_params=SBR_PARAMS,
            cnn_params=CNN_PARAMS,
        )


class PutamenBrightness(torch.nn.Module):
    """A fixed classifier: reduced when the slab's putamen rows are dim (logit difference)."""

    def forward(self, x):
        level = x[:, 0, 55:75, 20:70].mean(dim=(1, 2))
        return torch.stack([level - 2.0, 2.0 - level], dim=1)


def _levels(tmp_path, n=12, seed=0):
    """Two levels of a synthetic cohort: SBR table + slabs whose brightness tracks the label."""
    rng = np.random.default_rng(seed)
    subjects = [f"s{i:02d}" for i in range(n)]
    labels = np.arange(n) % 2
    levels = {}
    for fwhm, shrink in ((0.0, 1.0), (12.0, 0.6)):
        sbr_aal = (3.0 - 1.8 * labels + rng.normal(0, 0.1, n)) * shrink
        table = pd.DataFrame(
            {"subject_id": subjects, "label": labels, "putamen": sbr_aal, "hv_putamen": sbr_aal}
        )
        slabs = {
            s: np.full(SLAB_SHAPE, 3.0 - 2.0 * y, np.float32)
            for s, y in zip(subjects, labels, strict=True)
        }
        path = tmp_path / f"fwhm-{fwhm:g}.npz"
        robustness.save_inputs(slabs, path)
        levels[fwhm] = (table, path)
    return levels, subjects, labels


def test_score_split_scores_every_model_at_every_level(tmp_path):
    levels, subjects, labels = _levels(tmp_path)
    test = subjects[::2] + subjects[1::4]  # 6 normal, 3 reduced
    table = robustness.score_split(
        levels,
        test,
        split=3,
        cutoffs={("sbr_aal", "original"): 2.1, ("sbr_hv", "mixed"): 1.0},
        cnn_scorers={"mixed": partial(predict, PutamenBrightness(), device="cpu")},
    )
    assert list(table.columns) == robustness.COLUMNS
    assert len(table) == 2 * 3 and set(table["split"]) == {3} and set(table["n"]) == {9}
    acc = table.set_index(["fwhm", "method", "trained_setting"])["accuracy"]
    # the original cutoff 2.1 separates unsmoothed SBRs (about 3.0 vs 1.2) ...
    assert acc[(0.0, "sbr_aal", "original")] == 1.0
    # ... but calls every smoothed normal scan (about 1.8) reduced: only the 3 reduced are right
    assert acc[(12.0, "sbr_aal", "original")] == pytest.approx(3 / 9)
    # a cutoff between the smoothed classes keeps them apart
    assert acc[(12.0, "sbr_hv", "mixed")] == 1.0
    # the CNN sees its subject's slab with its subject's label (order kept)
    assert acc[(0.0, "cnn", "mixed")] == 1.0 and acc[(12.0, "cnn", "mixed")] == 1.0


def test_score_split_names_missing_subjects(tmp_path):
    levels, subjects, _ = _levels(tmp_path)
    with pytest.raises(InputError, match=r"lack test subjects \['zz'\] of split 0"):
        robustness.score_split(levels, ["zz"], split=0, cutoffs={}, cnn_scorers={})
    with pytest.raises(InputError, match="test part is empty"):
        robustness.score_split(levels, [], split=0, cutoffs={}, cnn_scorers={})


def test_read_cutoff_checks_the_method(tmp_path):
    path = tmp_path / "cutoff.json"
    path.write_text(json.dumps({"method": "sbr_hv", "reduced_if": "sbr < cutoff", "cutoff": 1.5}))
    assert robustness.read_cutoff(path, "sbr_hv") == 1.5
    with pytest.raises(InputError, match="expected a sbr_aal cutoff"):
        robustness.read_cutoff(path, "sbr_aal")


@pytest.mark.workflow
def test_small_run_robustness_matches_the_workflow(small_run):
    from datspect.evaluation.metrics import binary_metrics
    from datspect.workflow.config_checks import load_yaml

    levels = load_yaml(SMALL[-1])["evaluation"]["robustness_fwhm_mm"]
    table = pd.read_csv(small_run / "results/metrics/robustness.tsv", sep="\t")
    assert list(table.columns) == robustness.COLUMNS
    assert sorted(table["fwhm"].unique()) == sorted(levels)
    # (2 SBR methods x original, mixed + the CNN of original, mixed, augmented) x 2 splits
    assert len(table) == len(levels) * (2 * 2 + 3) * 2
    per_split = pd.read_csv(small_run / "results/metrics/per_split.tsv", sep="\t")
    predictions = pd.read_csv(small_run / "results/metrics/predictions.tsv", sep="\t")
    columns = ["accuracy", "sensitivity", "specificity", "auc"]
    # no extra smoothing: the workflow's own test-part numbers, from the same images and models
    for row in table[table["fwhm"] == 0].itertuples():
        if row.trained_setting == "original":
            ref = per_split[
                (per_split["cohort"] == "ppmi")
                & (per_split["method"] == row.method)
                & (per_split["setting"] == "original")
                & (per_split["split"] == row.split)
            ].iloc[0]
        else:  # the mixed- or augmented-trained models on the original images of their test part
            part = predictions[
                (predictions["cohort"] == "ppmi")
                & (predictions["method"] == row.method)
                & (predictions["setting"] == row.trained_setting)
                & (predictions["split"] == row.split)
                & (predictions["image_setting"] == "original")
            ]
            ref = binary_metrics(part["label"], part["prediction"], part["score_reduced"])
        for col in columns:
            assert getattr(row, col) == pytest.approx(ref[col], abs=1e-5), (row, col)
    # smoothing in MNI space instead of native space: close to the workflow's smoothed images
    assert 18 in levels, "the small config must include the smoothed setting's 18 mm"
    mni = pd.read_csv(small_run / "results/robustness/fwhm-18/sbr.tsv", sep="\t")
    sbr_table = pd.read_csv(small_run / "results/sbr/sbr.tsv", sep="\t")
    native = sbr_table[(sbr_table["cohort"] == "ppmi") & (sbr_table["image_setting"] == "smoothed")]
    both = mni.merge(native, on="subject_id", suffixes=("_mni", "_native"))
    assert len(both) == 30
    for col in ("putamen", "hv_putamen"):
        rel = both[f"{col}_mni"] / both[f"{col}_native"] - 1
        assert abs(rel.median()) < 0.02 and rel.abs().max() < 0.1, rel.describe()
