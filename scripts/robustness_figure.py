"""Accuracy against extra smoothing of the test scans (results/metrics/robustness.tsv)."""

from datspect.figures.results import robustness_curve
from datspect.io.tsv import read_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
robustness_curve(
    read_tsv(snakemake.input[0]),
    snakemake.output[0],
    setting_fwhm_mm=snakemake.params.setting_fwhm_mm,
    dpi=snakemake.params.dpi,
)
log.info("written %s", snakemake.output[0])
