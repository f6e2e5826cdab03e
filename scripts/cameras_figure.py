"""Accuracy on unseen and seen cameras against the number of training cameras
(results/metrics/cameras.tsv)."""

from datspect.figures.results import camera_curve
from datspect.io.tsv import read_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
camera_curve(read_tsv(snakemake.input[0]), snakemake.output[0], dpi=snakemake.params.dpi)
log.info("written %s", snakemake.output[0])
