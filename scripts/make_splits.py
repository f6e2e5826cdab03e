"""results/splits/splits.tsv: the grouped, stratified random splits every method shares."""

from datspect import runlog
from datspect.splits import make_splits
from datspect.tables import read_tsv, write_tsv

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
