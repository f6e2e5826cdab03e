"""The `classify` command on simulated scans with the model exported by the small workflow.

The small run's CNNs are tiny and trained for 4 epochs on 36 images: they rank a severe PD scan
above a clear normal one but give both a P(reduced) near 0.5, so the CNN's calls are not
asserted here; that the exported CNNs are the trained ones is checked in test_export.py.  The
SBR part must be right: the calls on clear cases, and the values against the workflow's own
measurement of the same scan.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tomllib
from importlib import import_module
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from nibabel.affines import voxel_sizes
from PIL import Image
from scipy import ndimage
from test_dicom import write_nm

from datspect.cohorts import simulate
from datspect.deploy import classify
from datspect.deploy import cli as classify_cli
from datspect.io import imageio
from datspect.io.tsv import read_tsv
from datspect.workflow.config_checks import load_yaml

DEV_SUBJECT = "ppmi-0001"
_FLIP = np.diag([-1.0, -1.0, 1.0])


def write_dicom(img: nib.Nifti1Image, path: Path) -> Path:
    """``img`` as an NM multi-frame DICOM file with the same voxels in the same place."""
    data = np.asarray(img.dataobj, dtype=np.float64)
    a = img.affine
    spacing = voxel_sizes(a)
    col_dir, row_dir = _FLIP @ (a[:3, 0] / spacing[0]), _FLIP @ (a[:3, 1] / spacing[1])
    slice_step = float((_FLIP @ a[:3, 2]) @ np.cross(col_dir, row_dir))
    slope = float(f"{data.max() / 60000.0:.6g}")  # a DICOM DS holds 16 characters
    frames = np.rint(data / slope).astype(np.uint16).transpose(2, 1, 0)  # (slice, row, col)
    return write_nm(
        path,
        frames,
        ipp=_FLIP @ a[:3, 3],
        iop=[*col_dir, *row_dir],
        pixel_spacing=[spacing[1], spacing[0]],
        spacing=slice_step,
        slope=slope,
    )


def simulated_scans(folder: Path) -> dict[str, Path]:
    """A clear normal (young, no borderline), a severe PD (as NIfTI and DICOM) and noise."""
    cfg = load_yaml(REPO / "config.yaml")
    physics = copy.deepcopy(cfg["simulation"])
    physics["disease"]["severity_beta"] = [50.0, 1.0]  # severity ~ 0.98
    cohort = dict(cfg["cohorts"]["ppmi"]["simulate"], age_mean=45.0, age_sd=0.0)
    cohort["age_range"] = [45.0, 45.0]
    folder.mkdir()
    paths = {}
    for key, label in (("normal", 0), ("pd", 1)):
        img, _ = simulate.simulate_subject(f"clear-{key}", label, cohort, physics, 7)
        paths[key] = imageio.save_nifti(img, folder / f"clear {key}.nii.gz")
    paths["pd_dicom"] = write_dicom(imageio.load_scan(paths["pd"]), folder / "clear pd.dcm")
    noise = ndimage.gaussian_filter(np.random.default_rng(0).random((64, 64, 64)), 3) * 1000
    paths["noise"] = imageio.save_nifti(
        nib.Nifti1Image(noise.astype(np.float32), np.diag([4.0, 4.0, 4.0, 1.0])),
        folder / "not a scan.nii.gz",
    )
    return paths


def tree(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in sorted(folder.rglob("*"))}


def run_cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "datspect.deploy.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ | {"PYTHONPATH": str(REPO)},
        timeout=600,
    )


@pytest.fixture(scope="module")
def classified(small_run, tmp_path_factory):
    """One `classify` run over five scans (paths with spaces), from an empty working folder."""
    root = tmp_path_factory.mktemp("classify")
    scans = simulated_scans(root / "my scans")
    dev_scan = small_run / f"data/ppmi/simulated/{DEV_SUBJECT}.nii.gz"
    order = [scans["normal"], scans["pd"], scans["pd_dicom"], scans["noise"], dev_scan]
    model = small_run / "results/model"
    cwd = root / "cwd"
    cwd.mkdir()
    before = {folder: tree(folder) for folder in (scans["normal"].parent, model, cwd)}
    proc = run_cli(*order, "--model", model, "--out", root / "out dir", cwd=cwd)
    after = {folder: tree(folder) for folder in before}
    table = (
        pd.read_csv(root / "out dir" / classify.TABLE, sep="\t") if proc.returncode == 0 else None
    )
    return {
        "proc": proc,
        "table": table,
        "out": root / "out dir",
        "before": before,
        "after": after,
        "small_run": small_run,
    }


@pytest.mark.workflow
def test_classify_writes_one_row_and_one_page_per_scan_and_nothing_elsewhere(classified):
    proc, table, out = classified["proc"], classified["table"], classified["out"]
    assert proc.returncode == 0, proc.stderr
    assert list(table.columns) == classify.COLUMNS
    assert table["report"].tolist() == [
        "clear normal.png",
        "clear pd.png",
        "clear pd-2.png",
        "not a scan.png",
        f"{DEV_SUBJECT}.png",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted([classify.TABLE, *table["report"]])
    for page in table["report"]:
        with Image.open(out / page) as img:
            assert img.format == "PNG" and (img.width, img.height) == (827, 1169)
    assert classified["after"] == classified["before"]  # scans, model and cwd untouched
    assert proc.stdout.count("\n") == len(table) + 1


@pytest.mark.workflow
def test_clear_cases_get_the_right_sbr_calls_and_cnn_ranking(classified):
    table = classified["table"].set_index("report")
    normal, pd_nifti, pd_dicom = (
        table.loc[f"{n}.png"] for n in ("clear normal", "clear pd", "clear pd-2")
    )
    for row in (normal, pd_nifti, pd_dicom):
        assert row["status"] == "classified"
        assert row["sbr_aal_putamen"] == min(row["sbr_aal_putamen_l"], row["sbr_aal_putamen_r"])
    for method in ("sbr_aal", "sbr_hv"):
        assert normal[f"{method}_call"] == "normal" and normal[f"{method}_votes"] == "0/2"
        assert pd_nifti[f"{method}_call"] == pd_dicom[f"{method}_call"] == "reduced"
        # the DICOM copy of the same scan measures the same
        assert pd_dicom[f"{method}_putamen"] == pytest.approx(
            pd_nifti[f"{method}_putamen"], rel=0.03
        )
    assert pd_nifti["cnn_p_mean"] > normal["cnn_p_mean"]
    for row in (normal, pd_nifti):
        p = [row["cnn_p_min"], row["cnn_p_max"]]
        assert row["cnn_disagreement"] == (min(p) < 0.5 <= max(p))
        # the small run's brief trainings may leave even a clear scan in the inconclusive band
        definite = "reduced" if row["cnn_p_mean"] >= 0.5 else "normal"
        inside = "inside the band" in row["cnn_reason"]
        assert row["cnn_call"] == ("inconclusive" if inside else definite), row["cnn_reason"]


@pytest.mark.workflow
def test_sbr_matches_the_workflow_on_the_same_scan(classified):
    """Same registration settings, template, regions and reference: the same SBR up to the
    registration's random sampling (classify seeds it from the scan's content)."""
    row = classified["table"].set_index("report").loc[f"{DEV_SUBJECT}.png"]
    sbr = read_tsv(classified["small_run"] / "results/sbr/sbr.tsv")
    ref = sbr[(sbr["subject_id"] == DEV_SUBJECT) & (sbr["image_setting"] == "original")].iloc[0]
    for side in ("", "_l", "_r"):
        assert row[f"sbr_aal_putamen{side}"] == pytest.approx(ref[f"putamen{side}"], rel=0.03)
        assert row[f"sbr_hv_putamen{side}"] == pytest.approx(ref[f"hv_putamen{side}"], rel=0.03)


@pytest.mark.workflow
def test_a_scan_that_fails_normalization_qc_is_reported_not_classified(classified):
    row = classified["table"].set_index("report").loc["not a scan.png"]
    assert row["status"] == "qc_failed" and row["qc_correlation"] < 0.7
    assert "normalization QC failed" in row["note"]
    assert row[[c for c in classify.COLUMNS if c.startswith(("sbr_", "cnn_"))]].isna().all()


@pytest.fixture
def model_copy(small_run, tmp_path):
    copy_dir = tmp_path / "model copy"
    shutil.copytree(small_run / "results/model", copy_dir)
    return copy_dir


def _error(capsys, *argv) -> str:
    assert classify_cli.main([*map(str, argv)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("classify: error: ")
    return err


@pytest.mark.workflow
def test_model_folder_without_manifest_is_one_clear_error(model_copy, tmp_path, capsys):
    (model_copy / "manifest.json").unlink()
    scan = tmp_path / "scan.nii.gz"
    err = _error(capsys, scan, "--model", model_copy, "--out", tmp_path / "out")
    assert f"{model_copy / 'manifest.json'}: missing" in err
    assert "results/model" in err and "snakemake" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.workflow
def test_changed_checkpoint_is_one_clear_error(model_copy, small_run, tmp_path, capsys):
    weights = model_copy / "cnn" / "split-1.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    scan = small_run / f"data/ppmi/simulated/{DEV_SUBJECT}.nii.gz"
    err = _error(capsys, scan, "--model", model_copy, "--out", tmp_path / "out")
    assert f"{weights}: sha256" in err and "differs from" in err
    assert "re-run the export" in err and "copy the whole folder again" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.workflow
def test_unreadable_scan_is_one_clear_error_before_any_work(small_run, tmp_path, capsys):
    good = small_run / f"data/ppmi/simulated/{DEV_SUBJECT}.nii.gz"
    bad = tmp_path / "broken scan.nii.gz"
    bad.write_bytes(b"not a nifti file")
    model = small_run / "results/model"
    err = _error(capsys, good, bad, "--model", model, "--out", tmp_path / "out")
    assert f"{bad}: unreadable NIfTI file" in err
    assert not (tmp_path / "out").exists()


def test_console_script_is_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    module, func = project["scripts"]["classify"].split(":")
    assert getattr(import_module(module), func) is classify_cli.main
    assert any(d.startswith("safetensors==") for d in project["dependencies"])


def test_report_names_are_distinct_and_keep_spaces():
    names = classify.report_names(
        ["a/scan 1.nii.gz", "b/scan 1.nii.gz", "c/DICOM series", "d/x.NII", "e/y.dcm"]
    )
    assert names == ["scan 1", "scan 1-2", "DICOM series", "x", "y"]


def test_disagreement_means_models_on_both_sides_of_one_half():
    split = classify.cnn_fields(np.array([0.3, 0.45, 0.7]))
    assert split["cnn_disagreement"] and split["cnn_votes"] == "1/3"
    assert split["cnn_call"] == "normal" and split["cnn_p_mean"] == pytest.approx(0.4833333)
    assert split["cnn_p_sd"] == pytest.approx(np.std([0.3, 0.45, 0.7], ddof=1))
    same = classify.cnn_fields(np.array([0.5, 0.9]))
    assert not same["cnn_disagreement"] and same["cnn_call"] == "reduced"
