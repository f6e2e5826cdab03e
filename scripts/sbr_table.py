"""results/sbr/sbr.tsv: one row per image with every regional SBR (AAL and HV)."""

from datspect.io.tsv import read_tsv, write_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
keys = ["cohort", "subject_id", "image_setting", "label"]
aal = read_tsv(snakemake.input.aal)
hv = read_tsv(snakemake.input.hv).drop(columns=["reference_mean"], errors="ignore")
table = aal.merge(hv, on=keys, how="outer", validate="one_to_one")
write_tsv(table, snakemake.output[0])
log.info("%d images", len(table))
