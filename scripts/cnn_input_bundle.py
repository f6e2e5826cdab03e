"""features/{cohort}/cnn_inputs.npz: one cohort's per-subject CNN inputs in one file."""

from datspect.features.cnn_bundle import bundle_inputs
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
log.info(bundle_inputs(snakemake.input, snakemake.output[0]))
