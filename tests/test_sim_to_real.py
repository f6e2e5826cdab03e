"""Sim-to-real (configs/sim-to-real.yaml): the simulated 3D development cohort's models on an
independent cohort of real 2D slabs; CNN scored, SBR cutoffs not (another measurement)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, SMALL, snakemake
from test_slabs import write_slab_folder

from datspect import schema
from datspect.io.tsv import read_tsv
from datspect.report import summary as report
from datspect.workflow import config_checks as checks

SIM_TO_REAL = REPO / "configs" / "sim-to-real.yaml"


def _summary_rows(rows) -> pd.DataFrame:
    columns = ["cohort", "method", "setting", "n_splits"]
    for metric in ("accuracy", "sensitivity", "specificity", "auc"):
        columns += [f"{metric}_mean", f"{metric}_sd"]
    return pd.DataFrame(rows, columns=columns)


def _merged(*files) -> dict:
    """The config files merged as Snakemake merges --configfile (later keys win, deeply)."""

    def update(base, new):
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                update(base[key], value)
            else:
                base[key] = value
        return base

    config = {}
    for file in files:
        update(config, schema.load_yaml(file))
    return config


def test_sim_to_real_config_on_top_of_the_default():
    """The header's command: config.yaml then configs/sim-to-real.yaml; one slab folder for the
    independent cohort and the realism report, next to the repository."""
    files = [REPO / "config.yaml", SIM_TO_REAL]
    config = _merged(*files)
    checks.check_schema(config, files=files)
    checks.resolve_paths(config, files=files)
    checks.check_semantics(config, files=files)
    cohorts = config["cohorts"]
    assert checks.development_cohort(config) == "ppmi"
    assert cohorts["ppmi_slabs"]["role"] == "independent"
    assert cohorts["ppmi_slabs"]["source"] == "slabs"
    folder = str(REPO.parent / "shared" / "data" / "ppmi-slabs")
    assert cohorts["ppmi_slabs"]["slabs"]["folder"] == folder
    assert config["realism"]["reference_slabs"] == folder


def test_sim_to_real_sentence_and_sbr_line():
    summary = _summary_rows(
        [
            ["sim", "cnn", "mixed", 3, 0.9, 0.01, 0.9, 0.02, 0.9, 0.03, 0.95, 0.01],
            ["sim", "sbr_aal", "mixed", 3, 0.8, 0.01, 0.8, 0.02, 0.8, 0.03, 0.9, 0.01],
            ["real", "cnn", "mixed", 3, 0.71, 0.04, 0.62, 0.05, 0.83, 0.06, 0.88, 0.02],
        ]
    )
    sources = {"sim": "simulate", "real": "slabs"}
    line = report.sim_to_real_line(summary, "sim", "real", sources)
    assert line.startswith("Sim-to-real: the mixed-setting CNNs trained on the simulated `sim`")
    for figure in ("0.710 ± 0.040", "0.620 ± 0.050", "0.830 ± 0.060", "0.880 ± 0.020"):
        assert figure in line
    acc, sd = report.REAL_SLAB_CNN["accuracy"]
    assert f"{acc:.3f} ± {sd:.3f}" in line and "configs/ppmi-slabs.yaml" in line
    assert report.sim_to_real_line(summary, "sim", "sim", sources) is None  # not a slab cohort
    assert report.sim_to_real_line(summary, "real", "sim", sources) is None  # slab -> 3D
    note = report.sbr_not_reported_line("sim", sources, ["real"])
    assert "not reported for `real`" in note and "3D SBRs of `sim`" in note
    assert report.sbr_not_reported_line("sim", sources, []) is None
    paired = pd.DataFrame(
        columns=["cohort", "method_a", "setting_a", "method_b", "setting_b", "metric"]
    )
    page = report.summary_markdown(summary, paired, "sim", sources=sources, sbr_not_scored=["real"])
    assert line in page and note in page
    # no verdict compares the CNN with SBR cutoffs that did not score the cohort
    assert "`real`: mixed-trained CNN beats" not in page


@pytest.mark.workflow
def test_sim_to_real_workflow(tmp_path):
    """The small config plus configs/sim-to-real.yaml, the real slabs replaced by synthetic
    ones; the targets the slab cohort reaches (robustness, QC mosaics and saliency concern the
    development cohort or the 3D cohorts only)."""
    folder = write_slab_folder(tmp_path / "slabs")
    override = tmp_path / "slab-folder.yaml"
    override.write_text(
        f'cohorts:\n  ppmi_slabs:\n    slabs: {{folder: "{folder}"}}\n'
        f'realism:\n  reference_slabs: "{folder}"\n'
        "evaluation:\n  robustness_fwhm_mm: []\n"
    )
    workdir = tmp_path / "run"
    targets = [
        "results/summary.md",
        "results/figures/independent.png",  # the figures, with a slab cohort among them
        "results/qc/realism.tsv",
        "results/model/manifest.json",
    ]
    proc = snakemake(
        "--cores",
        str(min(os.cpu_count() or 2, 2)),
        *targets,
        workdir=workdir,
        configfiles=[*SMALL, SIM_TO_REAL, override],
    )
    assert "do not score ppmi_slabs (a different measurement)" in proc.stderr + proc.stdout
    per_split = read_tsv(workdir / "results/metrics/per_split.tsv")
    slab_rows = per_split[per_split["cohort"] == "ppmi_slabs"]
    assert set(slab_rows["method"]) == {"cnn"}  # no sbr rows for the slab cohort
    assert set(slab_rows["setting"]) == {"mixed", "augmented"}  # the independent settings
    assert len(slab_rows) == 2 * 2  # one per split and setting
    assert (slab_rows["n"] == 47).all()  # 49 PNGs, the image under both labels left out
    assert {"sbr_aal", "sbr_hv"} <= set(per_split.loc[per_split["cohort"] == "clinical", "method"])
    summary = read_tsv(workdir / "results/metrics/summary.tsv")
    assert set(summary.loc[summary["cohort"] == "ppmi_slabs", "method"]) == {"cnn"}
    markdown = (workdir / "results/summary.md").read_text(encoding="utf-8")
    slab_summary = summary[summary["cohort"] == "ppmi_slabs"]
    row = slab_summary[slab_summary["setting"] == "mixed"].iloc[0]
    assert (
        "Sim-to-real: the mixed-setting CNNs trained on the simulated `ppmi` cohort score the "
        f"real slabs of `ppmi_slabs` with accuracy {row.accuracy_mean:.3f} ± "
        f"{row.accuracy_sd:.3f}"
    ) in markdown
    acc, sd = report.REAL_SLAB_CNN["accuracy"]
    assert f"a CNN trained on real slabs reaches accuracy {acc:.3f} ± {sd:.3f}" in markdown
    assert "SBR (sbr_aal, sbr_hv) not reported for `ppmi_slabs`" in markdown
    log = (workdir / "logs/summarize/summarize.log").read_text(encoding="utf-8")
    assert "not reported for `ppmi_slabs`" in log
    predictions = read_tsv(workdir / "results/metrics/predictions.tsv")
    scored = predictions[predictions["cohort"] == "ppmi_slabs"]
    assert set(scored["image_setting"]) == {"original"} and np.isfinite(scored["score"]).all()
    sbr = read_tsv(workdir / "results/sbr/sbr.tsv")
    assert (sbr["cohort"] == "ppmi_slabs").any()  # measured, just not scored with 3D cutoffs
    for path in targets:
        assert (workdir / path).is_file(), path
