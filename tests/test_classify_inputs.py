"""The three input kinds of `classify` (datspect/deploy/inputs.py) and the export of a slab run.

Detection and its errors need no model; the rest uses the model the small slab run exports
(conftest.py ``slab_run``) and, for a slab under 3D SBR cutoffs, the small 3D run's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO
from PIL import Image
from test_classify import run_cli

from datspect.cohorts import simulate
from datspect.deploy import classify, export, inputs
from datspect.deploy import cli as classify_cli
from datspect.errors import InputError
from datspect.features import slab
from datspect.figures.slab import classification_page
from datspect.io import imageio
from datspect.io.tsv import read_tsv
from datspect.preprocess import register
from datspect.space import anatomy, slab_grid
from datspect.workflow.config_checks import load_yaml


def _volume(affine=anatomy.MNI_AFFINE, shape=anatomy.MNI_SHAPE) -> nib.Nifti1Image:
    data = np.random.default_rng(0).gamma(2.0, 10.0, shape).astype(np.float32)
    return nib.Nifti1Image(data, np.asarray(affine, dtype=float))


def _pixels(seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 255, slab_grid.SLAB_SHAPE).astype(np.uint8)


def test_a_volume_is_on_the_mni_grid_only_with_its_shape_and_affine(tmp_path):
    near = anatomy.MNI_AFFINE + 0.004  # within GRID_TOLERANCE_MM in every entry
    near[3] = [0, 0, 0, 1]
    shifted = anatomy.MNI_AFFINE.copy()
    shifted[0, 3] += 1.0  # one mm off: another grid
    ras = anatomy.MNI_AFFINE @ np.diag([-1.0, 1, 1, 1])  # the same box, x reversed
    ras[0, 3] = -90.0
    cases = {
        "mni": (anatomy.MNI_AFFINE, anatomy.MNI_SHAPE, "mni"),
        "near": (near, anatomy.MNI_SHAPE, "mni"),
        "shifted": (shifted, anatomy.MNI_SHAPE, "native"),
        "ras": (ras, anatomy.MNI_SHAPE, "native"),
        "cropped": (anatomy.MNI_AFFINE, (91, 109, 90), "native"),
        "scanner": (np.diag([4.0, 4.0, 4.0, 1.0]), (64, 64, 64), "native"),
    }
    for name, (affine, shape, kind) in cases.items():
        path = imageio.save_nifti(_volume(affine, shape), tmp_path / f"{name}.nii.gz")
        scan = inputs.read_input(path, n_slices=5)
        assert scan.kind == kind, name
        assert scan.slab is None and scan.image.ndim == 3
    # a scan on the grid is handed on with exactly the grid's affine (the pipeline checks it)
    scan = inputs.read_input(tmp_path / "near.nii.gz", n_slices=5)
    np.testing.assert_array_equal(scan.image.affine, anatomy.MNI_AFFINE)


def test_a_png_and_a_one_slice_nifti_are_the_same_slab(tmp_path):
    pixels = _pixels()
    Image.fromarray(pixels).save(tmp_path / "slab.PNG")
    imageio.save_nifti(slab_grid.slab_to_nifti(pixels, 5), tmp_path / "slab.nii.gz")
    png = inputs.read_input(tmp_path / "slab.PNG", n_slices=5)
    nifti = inputs.read_input(tmp_path / "slab.nii.gz", n_slices=5)
    assert (png.kind, png.source, nifti.kind, nifti.source) == ("slab", "png", "slab", "nifti")
    np.testing.assert_array_equal(png.slab, pixels)
    np.testing.assert_array_equal(nifti.slab, pixels)
    # a 2D NIfTI (no third axis) on the same grid is the same slab
    flat = nib.Nifti1Image(pixels.T.astype(np.float32), slab_grid.slab_affine(5))
    nib.save(flat, tmp_path / "flat.nii")
    np.testing.assert_array_equal(inputs.read_input(tmp_path / "flat.nii", n_slices=5).slab, pixels)


def test_each_input_error_names_the_file_and_what_is_needed(tmp_path):
    pixels = _pixels()
    turned = nib.Nifti1Image(pixels[:, :, None].astype(np.float32), np.eye(4))
    nib.save(turned, tmp_path / "turned.nii.gz")
    turned_error = (
        r"turned\.nii\.gz: a one-slice image of shape \(109, 91, 1\) is not a slab; a slab "
        r"NIfTI has shape \(91, 109, 1\)"
    )
    with pytest.raises(InputError, match=turned_error):
        inputs.read_input(tmp_path / "turned.nii.gz", n_slices=5)
    imageio.save_nifti(slab_grid.slab_to_nifti(pixels, 3), tmp_path / "thin.nii.gz")
    thin_error = (
        r"thin\.nii\.gz: a one-slice NIfTI with affine .* is not a slab of this model: its slabs "
        r"average the 5 putamen slices"
    )
    with pytest.raises(InputError, match=thin_error):
        inputs.read_input(tmp_path / "thin.nii.gz", n_slices=5)
    Image.fromarray(pixels.T.copy()).save(tmp_path / "wide.png")
    with pytest.raises(InputError, match=r"wide\.png: slab of 91 rows x 109 columns"):
        inputs.read_input(tmp_path / "wide.png", n_slices=5)
    with pytest.raises(InputError, match=r"missing\.png: image not found"):
        inputs.read_input(tmp_path / "missing.png", n_slices=5)
    Image.fromarray(pixels).save(tmp_path / "ok.png")
    scan = inputs.read_input(tmp_path / "ok.png", n_slices=5)
    inputs.check_fits(scan, "slab")
    box_error = (
        r"ok\.png: a 2D slab, but this model's CNN takes the 3D striatal box \(cnn\.input: box\)"
        r".*give the 3D scan"
    )
    with pytest.raises(InputError, match=box_error):
        inputs.check_fits(scan, "box")
    volume = inputs.read_input(imageio.save_nifti(_volume(), tmp_path / "v.nii.gz"), n_slices=5)
    inputs.check_fits(volume, "box")  # a 3D scan fits either CNN input
    with pytest.raises(InputError, match=r"input\.kind 'box' is not one of volume, slab"):
        inputs.model_input({"input": {"kind": "box"}})
    assert inputs.model_input({}) == "volume"  # exports from before slab runs exported


def test_what_each_model_kind_does_with_each_scan_kind():
    plans = {
        (scan, model, forced): inputs.plan(scan, model, register=forced)
        for scan in inputs.KINDS
        for model in inputs.MODEL_KINDS
        for forced in (False, True)
    }
    for (scan, model, forced), plan in plans.items():
        assert plan.register == (scan == "native" or (scan == "mni" and forced))
        expected = "slab" if model == "slab" else (None if scan == "slab" else "3D")
        assert plan.sbr == expected, (scan, model)
    assert set(inputs.HANDLING) == set(inputs.MODEL_KINDS)
    assert all(set(h) == set(inputs.KINDS) for h in inputs.HANDLING.values())


# --- with the model exported by the small slab run ------------------------------------------


@pytest.fixture(scope="module")
def slab_model(slab_run):
    return export.load_model(slab_run / "results" / "model")


@pytest.fixture(scope="module")
def scans_3d(tmp_path_factory):
    """A simulated scan, native and resampled onto the MNI grid with its true pose."""
    folder = tmp_path_factory.mktemp("3d scans")
    cfg = load_yaml(REPO / "config.yaml")
    img, truth = simulate.simulate_subject(
        "x-pd", 1, cfg["cohorts"]["ppmi"]["simulate"], cfg["simulation"], 7
    )
    mni = register.resample_to_mni(img, np.array(truth["native_from_mni"]))
    return {
        "native": imageio.save_nifti(img, folder / "native scan.nii.gz"),
        "mni": imageio.save_nifti(mni, folder / "normalized scan.nii.gz"),
    }


@pytest.mark.workflow
def test_a_slab_run_exports_its_models_with_slab_sbr_cutoffs(slab_run, slab_model):
    manifest = slab_model.manifest
    assert manifest["input"]["kind"] == slab_model.input_kind == "slab"
    assert set(manifest["input"]["handling"]) == set(inputs.KINDS)
    assert manifest["sbr"]["measurement"] == "slab"
    assert manifest["development_cohort"] == "toy"
    for row in manifest["sbr"]["cutoffs"]:
        fit = slab_run / f"results/models/{row['method']}/mixed/split-{row['split']}/cutoff.json"
        assert row["cutoff"] == json.loads(fit.read_text())["cutoff"]
    assert len(slab_model.cnns) == 2 and manifest["cnn"]["input"]["type"] == "slab"
    dev = read_tsv(slab_run / "results/model/sbr_development.tsv")
    assert len(dev) == 2 * 47  # both image types of every image after quarantine


@pytest.mark.workflow
def test_a_slab_is_classified_as_the_workflow_scores_it(slab_run, slab_model, tmp_path):
    """PNG and stored NIfTI of one image: the workflow's slab SBRs and each model's P(reduced)."""
    split, _, _ = slab_model.cnns[0]
    pred = read_tsv(slab_run / f"results/models/cnn/mixed/split-{split}/predictions.tsv")
    pred = pred[(pred["image_setting"] == "original") & (pred["label"] == 1)].iloc[0]
    image = pred["subject_id"]  # a test image of that split: <class>-<file stem>
    png = slab_run.parent / "slabs" / Path(image.replace("-", "/", 1) + ".png")
    nifti = slab_run / f"preprocessed/toy/{image}/original_slab.nii"
    results = [classify.classify_scan(path, slab_model) for path in (png, nifti)]
    for result in results:
        row = result.row
        assert row["status"] == "classified" and row["input_kind"] == "slab"
        assert row["registered"] is False and np.isnan(row["qc_correlation"])
        assert row["sbr_measurement"] == "slab"
    np.testing.assert_array_equal(results[0].probabilities, results[1].probabilities)
    sbr = read_tsv(slab_run / "results/sbr/sbr.tsv")
    ref = sbr[(sbr["subject_id"] == image) & (sbr["image_setting"] == "original")].iloc[0]
    for side in ("", "_l", "_r"):  # the table holds 6 significant digits
        for method, column in (("sbr_aal", "putamen"), ("sbr_hv", "hv_putamen")):
            value = results[0].row[f"{method}_putamen{side}"]
            assert value == pytest.approx(ref[f"{column}{side}"], rel=1e-5)
    # calibrated as the workflow calibrates it (p_reduced, 6 significant digits in the table)
    assert results[0].probabilities[0] == pytest.approx(pred["p_reduced"], abs=1e-5)


@pytest.mark.workflow
def test_a_scan_on_the_mni_grid_skips_registration_unless_forced(slab_model, scans_3d, monkeypatch):
    calls = []
    estimate = register.estimate_from_config
    monkeypatch.setattr(
        register, "estimate_from_config", lambda *a, **k: calls.append(1) or estimate(*a, **k)
    )
    skipped = classify.classify_scan(scans_3d["mni"], slab_model)
    assert not calls
    forced = classify.classify_scan(scans_3d["mni"], slab_model, register_mni=True)
    native = classify.classify_scan(scans_3d["native"], slab_model)
    assert len(calls) == 2
    for result, kind, registered in (
        (skipped, "mni", False),
        (forced, "mni", True),
        (native, "native", True),
    ):
        row = result.row
        assert (row["input_kind"], row["registered"]) == (kind, registered)
        assert row["status"] == "classified"
        assert row["qc_correlation"] > 0.7 and row["sbr_measurement"] == "slab"
    volume = np.asarray(nib.load(scans_3d["mni"]).dataobj)
    np.testing.assert_allclose(skipped.slab, slab.make_slab(volume, 5), rtol=1e-5)
    for result in (forced, native):  # registration finds about the true pose
        assert result.row["sbr_aal_putamen"] == pytest.approx(
            skipped.row["sbr_aal_putamen"], rel=0.05
        )


@pytest.mark.workflow
def test_a_scan_on_the_mni_grid_still_gets_the_qc(slab_model, tmp_path):
    noise = imageio.save_nifti(_volume(), tmp_path / "noise on the grid.nii.gz")
    row = classify.classify_scan(noise, slab_model).row
    assert (row["status"], row["input_kind"], row["registered"]) == ("qc_failed", "mni", False)
    assert "taken as normalized" in row["note"] and "--register" in row["note"]


@pytest.mark.workflow
def test_cli_states_the_input_kind_and_registration(slab_run, scans_3d, tmp_path):
    png = slab_run.parent / "slabs" / "HC" / "case3.png"
    model = slab_run / "results/model"
    runs = {}
    for flag in ([], ["--register"]):
        out = tmp_path / f"out{len(flag)}"
        proc = run_cli(png, scans_3d["mni"], *flag, "--model", model, "--out", out, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        runs[bool(flag)] = read_tsv(out / classify.TABLE)
        assert "slab input, not registered" in proc.stdout
    for forced, table in runs.items():
        assert list(table.columns) == classify.COLUMNS
        assert table["input_kind"].tolist() == ["slab", "mni"]
        assert table["registered"].tolist() == [False, forced]  # --register: 3D scans only
        assert table["sbr_measurement"].tolist() == ["slab", "slab"]


@pytest.mark.workflow
def test_a_slab_for_a_box_model_is_one_clear_error(slab_run, tmp_path, capsys):
    folder = tmp_path / "box model"
    shutil.copytree(slab_run / "results/model", folder)
    manifest = json.loads((folder / "manifest.json").read_text())  # not among the hashed files
    manifest["cnn"]["input"]["type"] = "box"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    png = slab_run.parent / "slabs" / "HC" / "case3.png"
    assert classify_cli.main([str(png), "--model", str(folder), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith(f"classify: error: {png}: a 2D slab, but this model's CNN takes the 3D")
    assert not (tmp_path / "o").exists()


# --- with the model exported by the small 3D run ----------------------------------------------


@pytest.mark.workflow
def test_a_slab_under_3d_sbr_cutoffs_gets_the_cnn_only(small_run, tmp_path):
    model = export.load_model(small_run / "results/model")
    assert model.input_kind == "volume" and model.manifest["sbr"]["measurement"] == "3D"
    stored = small_run / "preprocessed/ppmi/ppmi-0001/original_mni.nii"
    pixels = slab.project_to_slab(np.asarray(nib.load(stored).dataobj, dtype=np.float64), 5)
    Image.fromarray(np.round(pixels / pixels.max() * 255).astype(np.uint8)).save(
        tmp_path / "slab.png"
    )
    result = classify.classify_scan(tmp_path / "slab.png", model)
    row = result.row
    assert row["status"] == "classified" and row["input_kind"] == "slab"
    assert "sbr_measurement" not in row and "sbr_aal_putamen" not in row
    assert row["note"].startswith("SBR not measured: this model's cutoffs are 3D SBRs")
    assert 0 <= row["cnn_p_mean"] <= 1 and result.saliency.shape == slab_grid.SLAB_SHAPE
    classification_page(result, model, tmp_path / "page.png", title="slab")  # no SBR panels
    # the 3D scan itself, on the grid: 3D SBRs, no registration
    scan = classify.classify_scan(stored, model).row
    assert (scan["input_kind"], scan["registered"], scan["sbr_measurement"]) == ("mni", False, "3D")
    assert "no SBR" in classify.summary_line(row | {"seconds": 0.1})
