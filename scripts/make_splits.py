"""results/splits/splits.tsv: the grouped, stratified random splits every method shares, of the
development cohort's scans that QC did not exclude."""

from datspect.evaluation.splits import make_splits, split_subjects
from datspect.io.tsv import read_tsv, write_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
everyone = read_tsv(snakemake.input.sheet)
sheet = split_subjects(
    everyone,
    read_tsv(snakemake.input.excluded),
    snakemake.params.fractions,
    where=snakemake.input.excluded,
)
columns = ["subject_id", "label"] + (["group"] if "group" in sheet else [])
splits = make_splits(
    sheet[columns],
    n_splits=snakemake.params.n_splits,
    fractions=tuple(snakemake.params.fractions),
    seed=snakemake.params.seed,
)
write_tsv(splits, snakemake.output[0])
log.info("%s", splits.groupby(["split", "part"]).size().unstack().to_string())
if len(sheet) < len(everyone):
    log.info("%d scans left out by QC (results/qc/excluded.tsv)", len(everyone) - len(sheet))
