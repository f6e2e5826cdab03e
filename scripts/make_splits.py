"""results/splits/splits.tsv: the grouped, stratified random splits every method shares."""

from datspect.evaluation.splits import make_splits
from datspect.io.tsv import read_tsv, write_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
sheet = read_tsv(snakemake.input.sheet)
columns = ["subject_id", "label"] + (["group"] if "group" in sheet else [])
splits = make_splits(
    sheet[columns],
    n_splits=snakemake.params.n_splits,
    fractions=tuple(snakemake.params.fractions),
    seed=snakemake.params.seed,
)
write_tsv(splits, snakemake.output[0])
log.info("%s", splits.groupby(["split", "part"]).size().unstack().to_string())
