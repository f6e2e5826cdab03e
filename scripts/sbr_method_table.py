"""One SBR method's per-image values of all cohorts, with labels from the cohort sheets."""

from datspect.io.tsv import concat_tsv, write_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
values = concat_tsv(snakemake.input.tables)
labels = concat_tsv(snakemake.input.sheets)[["cohort", "subject_id", "label"]]
table = labels.merge(values, on=["cohort", "subject_id"], how="inner", validate="one_to_many")
if len(table) != len(values):
    raise RuntimeError("SBR rows without a cohort sheet entry; rerun the cohort_sheet rule")
write_tsv(table.sort_values(["cohort", "subject_id", "image_setting"]), snakemake.output[0])
log.info("%d images", len(table))
