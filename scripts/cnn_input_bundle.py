"""features/{cohort}/cnn_inputs.npz: one cohort's per-subject CNN inputs in one file."""

from datspect import runlog
from datspect.cnn_inputs import bundle_inputs

log = runlog.to_file(snakemake.log[0])
log.info(bundle_inputs(snakemake.input, snakemake.output[0]))
