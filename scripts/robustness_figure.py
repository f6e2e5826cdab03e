"""Accuracy against extra smoothing of the test scans (results/metrics/robustness.tsv)."""

from datspect import figures, runlog
from datspect.tables import read_tsv

log = runlog.to_file(snakemake.log[0])
figures.robustness_curve(
    read_tsv(snakemake.input[0]),
    snakemake.output[0],
    setting_fwhm_mm=snakemake.params.setting_fwhm_mm,
    dpi=snakemake.params.dpi,
)
log.info("written %s", snakemake.output[0])
