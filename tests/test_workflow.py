"""The workflow as users run it: lint, formatting, planning at study scale, a small run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, job_counts, snakemake
from scipy.special import expit

BIN = Path(sys.executable).parent

CONTRACT = {
    "results/metrics/per_split.tsv": [
        "cohort", "method", "setting", "split", "n", "accuracy", "sensitivity",
        "specificity", "balanced_accuracy", "auc", "cutoff",
    ],
    "results/metrics/summary.tsv": [
        "cohort", "method", "setting", "n_splits", "accuracy_mean", "accuracy_sd",
        "sensitivity_mean", "sensitivity_sd", "specificity_mean", "specificity_sd",
        "auc_mean", "auc_sd",
    ],
    "results/metrics/paired_tests.tsv": [
        "method_a", "setting_a", "method_b", "setting_b", "metric", "mean_diff", "p_ttest",
        "p_wilcoxon",
    ],
}  # fmt: skip


def test_lint_is_clean(tmp_path):
    proc = snakemake("--lint", workdir=tmp_path, configfiles=[REPO / "config.yaml"])
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_snakefmt_and_ruff_are_clean():
    for cmd in (
        [BIN / "snakefmt", "--check", "Snakefile", "rules"],
        [BIN / "ruff", "check", "datspect", "scripts", "tests", "bench"],
        [BIN / "ruff", "format", "--check", "datspect", "scripts", "tests", "bench"],
    ):
        proc = subprocess.run(list(map(str, cmd)), cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_dry_run_plans_every_subject(tmp_path):
    proc = snakemake("--dry-run", workdir=tmp_path, configfiles=[REPO / "config.yaml"])
    counts = job_counts(proc.stdout)
    for rule in ("simulate_subject", "smooth", "normalize", "sbr_aal", "sbr_hv"):
        assert counts[rule] == 943, (rule, counts)
    assert counts["fit_sbr_cutoff"] == 2 * 3 * 10


def test_bad_config_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("splits:\n  val: 0.3\n")
    proc = snakemake(
        "--cores", "1", workdir=tmp_path / "run", configfiles=[REPO / "config.yaml", bad],
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "splits.train + splits.val + splits.test = 1.1, must be 1" in proc.stderr
    assert not (tmp_path / "run" / "data").exists()


@pytest.mark.workflow
def test_small_run_writes_the_contract_tables(small_run):
    for path, columns in CONTRACT.items():
        table = pd.read_csv(small_run / path, sep="\t")
        assert list(table.columns[: len(columns)]) == columns or set(columns) <= set(
            table.columns
        ), (path, list(table.columns))
        assert len(table) > 0
    per_split = pd.read_csv(small_run / "results/metrics/per_split.tsv", sep="\t")
    assert set(per_split["setting"]) == {"original", "smoothed", "mixed", "augmented"}
    assert set(per_split["cohort"]) == {"ppmi", "clinical"}
    assert per_split["accuracy"].between(0, 1).all()
    sbr = pd.read_csv(small_run / "results/sbr/sbr.tsv", sep="\t")
    assert len(sbr) == 2 * (30 + 12)  # two images per subject
    assert {"putamen", "caudate", "hv_putamen", "label"} <= set(sbr.columns)
    qc = pd.read_csv(small_run / "results/qc/normalization.tsv", sep="\t")
    assert qc["centroid_error_mm"].notna().all()
    assert (small_run / "results/summary.md").read_text().startswith("# Results")


@pytest.mark.workflow
def test_small_run_calibrates_on_validation_and_scores_probabilities(small_run):
    per_split = pd.read_csv(small_run / "results/metrics/per_split.tsv", sep="\t")
    for column in ("log_loss", "brier", "ece"):
        assert per_split[column].notna().all(), column
    assert per_split["ece"].between(0, 1).all() and per_split["brier"].between(0, 1).all()
    summary = pd.read_csv(small_run / "results/metrics/summary.tsv", sep="\t")
    assert {"log_loss_mean", "log_loss_sd", "brier_mean", "ece_mean", "ece_sd"} <= set(summary)
    model = small_run / "results/models/cnn/mixed/split-0"
    fit = json.loads((model / "calibration.json").read_text())
    assert fit["calibration"]["method"] == "temperature" and fit["calibration"]["temperature"] > 0
    scores = pd.read_csv(model / "scores.tsv", sep="\t")
    val = scores[scores["part"] == "val"]
    assert fit["calibration"]["n_fit"] == len(val) > 0
    pred = pd.read_csv(model / "predictions.tsv", sep="\t")
    assert len(pred) == (scores["part"] != "val").sum()
    assert set(pred["subject_id"]).isdisjoint(val["subject_id"])
    t = fit["calibration"]["temperature"]
    np.testing.assert_allclose(pred["p_reduced"], expit(pred["logit"] / t), atol=1e-5)
    sbr_model = small_run / "results/models/sbr_aal/mixed/split-0"
    cutoff = json.loads((sbr_model / "cutoff.json").read_text())
    assert cutoff["calibration"]["method"] == "platt" and cutoff["calibration"]["slope"] < 0


@pytest.mark.workflow
def test_training_log_has_every_epoch_before_the_outcome(small_run):
    lines = (small_run / "logs/train_cnn/mixed_0.log").read_text().splitlines()
    assert "setting mixed, split 0" in lines[0]
    epochs = [i for i, line in enumerate(lines) if " epoch " in line]
    done = next(i for i, line in enumerate(lines) if line.startswith("step train_cnn done"))
    assert epochs and max(epochs) < done and lines[done + 1].startswith("selected: ")


@pytest.mark.workflow
def test_small_run_trains_augmented_on_original_images_and_compares_it(small_run):
    splits = pd.read_csv(small_run / "results/splits/splits.tsv", sep="\t")
    first = splits[splits["split"] == 0]
    n = {p: int((first["part"] == p).sum()) for p in ("train", "val", "test")}
    line = (small_run / "logs/train_cnn/augmented_0.log").read_text().splitlines()[0]
    # one (original) image per training and validation subject, both images of a test subject
    assert f"train {n['train']} images, val {n['val']} images, test {2 * n['test']}" in line
    sidecar = json.loads(
        (small_run / "results/models/cnn/augmented/split-0/model.json").read_text()
    )
    assert sidecar["degrade"]["blur_fwhm_mm"] == [0.0, 24.0]
    assert "degrade" not in json.loads(
        (small_run / "results/models/cnn/mixed/split-0/model.json").read_text()
    )
    scores = pd.read_csv(small_run / "results/models/cnn/augmented/split-0/scores.tsv", sep="\t")
    assert set(scores.loc[scores["part"] == "val", "image_setting"]) == {"original"}
    assert set(scores.loc[scores["part"] == "independent", "cohort"]) == {"clinical"}
    assert not (small_run / "results/models/sbr_aal/augmented").exists()
    table = pd.read_csv(small_run / "results/metrics/augmentation.tsv", sep="\t")
    rows = set(zip(table["cohort"], table["images"], table["setting_b"], strict=True))
    assert {("ppmi", "smoothed", "mixed"), ("ppmi", "fwhm-18", "original")} <= rows
    assert ("clinical", "all", "mixed") in rows and ("ppmi", "smoothed", "original") not in rows
    paired = pd.read_csv(small_run / "results/metrics/paired_tests.tsv", sep="\t")
    assert ((paired["setting_a"] == "augmented") & (paired["setting_b"] == "mixed")).any()
    assert "beyond the study: the augmented CNN" in (small_run / "results/summary.md").read_text()
    assert (small_run / "results/report/augmentation.html").exists()


def test_finished_run_plans_nothing(small_run):
    proc = snakemake("--dry-run", workdir=small_run)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_user_sheet_cohort_goes_through_the_same_rules(tmp_path):
    """A cohort of the user's own NIfTI files is ingested, then handled like simulated scans."""
    import nibabel as nib
    import numpy as np

    rows = ["subject_id\timage\tlabel\tcohort"]
    for i in range(12):
        name = f"scan {i}.nii.gz"  # spaces in file names must work
        nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), tmp_path / name)
        rows.append(f"s{i:02d}\t{name}\t{'HC' if i % 2 else 'PD'}\tmysite")
    (tmp_path / "cohort.tsv").write_text("\n".join(rows) + "\n")
    config = tmp_path / "mine.yaml"
    config.write_text(
        f"cohorts:\n  mysite:\n    role: development\n    source: sheet\n"
        f"    sheet: {tmp_path / 'cohort.tsv'}\n"
        "settings: [original, smoothed]\nmethods: [sbr_aal, cnn]\nsplits:\n  n_splits: 2\n"
    )
    proc = snakemake("--dry-run", workdir=tmp_path / "run", configfiles=[config])
    counts = job_counts(proc.stdout)
    for rule in ("ingest_scan", "smooth", "normalize", "sbr_aal", "cnn_input"):
        assert counts[rule] == 12, (rule, counts)
    assert "simulate_subject" not in counts
    assert counts["fit_sbr_cutoff"] == 2 * 2 and counts["train_cnn"] == 2 * 2
