"""Partial reruns after config edits, and Snakemake's between-workflow output cache."""

from __future__ import annotations

import os

import pytest
from conftest import SMALL, job_counts, snakemake

from datspect.io.tsv import read_tsv

PER_IMAGE = ("simulate_subject", "smooth", "normalize", "sbr_aal", "sbr_hv", "cnn_input")
N_IMAGES = 30 + 12  # subjects of tests/config.small.yaml (ppmi + clinical)

# change -> (per-image rules that must rerun for every subject, rules that must not run)
CHANGES = {
    "sbr:\n  hv_volume_ml: 12.0\n": (
        ["sbr_hv"],
        ["simulate_subject", "smooth", "normalize", "sbr_aal", "cnn_input", "cnn_input_bundle"]
        + ["train_cnn"],
    ),
    "cnn:\n  train:\n    epochs: 5\n": (
        [],
        ["simulate_subject", "smooth", "normalize", "sbr_aal", "sbr_hv", "cnn_input"]
        + ["cnn_input_bundle", "fit_sbr_cutoff", "sbr_table"],
    ),
    "preprocess:\n  smooth_fwhm_mm: 12.0\n": (
        ["smooth", "normalize", "sbr_aal", "sbr_hv", "cnn_input"],
        ["simulate_subject", "template"],
    ),
    "evaluation:\n  calibration:\n    method: platt\n": (
        [],
        list(PER_IMAGE) + ["cnn_input_bundle", "train_cnn", "fit_sbr_cutoff", "sbr_table"],
    ),
}


@pytest.mark.workflow
@pytest.mark.parametrize(
    "change", list(CHANGES), ids=["hv_volume", "epochs", "smooth_fwhm", "calibration"]
)
def test_config_edit_plans_only_what_depends_on_it(small_run, tmp_path, change):
    edit = tmp_path / "edit.yaml"
    edit.write_text(change)
    proc = snakemake("--dry-run", workdir=small_run, configfiles=[*SMALL, edit])
    counts = job_counts(proc.stdout)
    rerun, untouched = CHANGES[change]
    for rule in rerun:
        assert counts.get(rule) == N_IMAGES, (rule, counts)
    for rule in untouched:
        assert rule not in counts, (rule, counts)
    assert counts.get("metrics") == 1 and counts.get("summarize") == 1, counts
    if "smooth_fwhm" in change:
        assert counts["cnn_input_bundle"] == 2  # one per cohort
    if "epochs" in change:
        assert counts["train_cnn"] == 4 * 2  # settings (with augmented) x splits
    if "epochs" in change or "calibration" in change:
        assert counts["calibrate_cnn"] == 4 * 2
    if "hv_volume" in change:
        assert counts["fit_sbr_cutoff"] == 3 * 2  # HV only: settings x splits
        assert counts["sbr_method_table"] == 1


@pytest.mark.workflow
def test_added_subject_reruns_only_its_own_images(small_run, tmp_path):
    """A user cohort sheet gains one scan: its per-image jobs and the pooled steps run again."""
    sheet = read_tsv(small_run / "data/ppmi/cohort.tsv").sort_values(["label", "subject_id"])
    rows = [f"{r.subject_id}\t{small_run / r.image}\t{r.label}\tmine" for r in sheet.itertuples()]
    rows = rows[1:] + rows[:1]  # the scan added last is a healthy control

    def write_sheet(n):
        lines = ["subject_id\timage\tlabel\tcohort", *rows[:n]]
        (tmp_path / "cohort.tsv").write_text("\n".join(lines) + "\n")

    config = tmp_path / "mine.yaml"
    config.write_text(
        f"cohorts:\n  mine:\n    role: development\n    source: sheet\n"
        f"    sheet: {tmp_path / 'cohort.tsv'}\n"
        "settings: [original, smoothed]\nmethods: [sbr_aal, sbr_hv]\n"
        "splits:\n  n_splits: 2\npreprocess:\n  registration:\n    iterations: 30\n"
    )
    write_sheet(len(rows) - 1)
    workdir = tmp_path / "run"
    snakemake("--cores", "2", "--quiet", workdir=workdir, configfiles=[config])
    write_sheet(len(rows))
    counts = job_counts(snakemake("--dry-run", workdir=workdir, configfiles=[config]).stdout)
    for rule in ("ingest_scan", "smooth", "normalize", "sbr_aal", "sbr_hv"):
        assert counts.get(rule) == 1, (rule, counts)
    for rule in ("cohort_sheet", "splits", "metrics", "summarize"):
        assert counts.get(rule) == 1, (rule, counts)
    assert counts["fit_sbr_cutoff"] == 2 * 2 * 2  # methods x settings x splits


def test_second_workdir_reuses_the_output_cache(tmp_path):
    """Cached rules (simulate, template, smooth, normalize) are fetched, not recomputed."""
    env = {"SNAKEMAKE_OUTPUT_CACHE": str(tmp_path / "cache")}
    (tmp_path / "cache").mkdir()
    target = "preprocessed/ppmi/ppmi-0001/original_mni.nii"
    logs = []
    for run in ("first", "second"):
        # the target before --cache: --cache takes rule names and would swallow it
        proc = snakemake("--cores", "2", target, "--cache", workdir=tmp_path / run, env=env)
        logs.append(proc.stdout + proc.stderr)
    assert "Moving output file preprocessed/ppmi/ppmi-0001/original_mni.nii to cache" in logs[0]
    assert "Moving output file" not in logs[1]
    for name in ("original_mni.nii", "smoothed_mni.nii", "qc.json"):
        assert f"ppmi-0001/{name} from cache" in logs[1]
        first, second = (
            tmp_path / run / "preprocessed/ppmi/ppmi-0001" / name for run in ("first", "second")
        )
        assert first.read_bytes() == second.read_bytes()
    assert os.path.islink(tmp_path / "second" / target)
