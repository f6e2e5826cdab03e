"""results/qc/normalization_{cohort}.tsv: registration quality per image."""

from datspect.io.tsv import write_tsv
from datspect.preprocess.qc import normalization_table
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
table = normalization_table(
    snakemake.wildcards.cohort,
    snakemake.input.qc,
    snakemake.input.transforms,
    snakemake.input.truth,
    max_centroid_error_mm=snakemake.params.max_centroid_error_mm,
)
write_tsv(table, snakemake.output[0])
log.info("flags: %s", table["flag"].value_counts().to_dict())
log.info("centroid error mm: %s", table["centroid_error_mm"].describe().to_dict())
