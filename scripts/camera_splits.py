"""results/cameras/splits.tsv: each camera cohort's own grouped, stratified splits, of the scans
that QC did not exclude (leave-one-camera-out)."""

from datspect.evaluation.cameras import camera_splits
from datspect.evaluation.splits import split_subjects
from datspect.io.tsv import read_tsv, write_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
excluded = read_tsv(snakemake.input.excluded)
sheets = {}
for path in snakemake.input.sheets:
    sheet = split_subjects(
        read_tsv(path), excluded, snakemake.params.fractions, where=snakemake.input.excluded
    )
    sheets[str(sheet["cohort"].iloc[0])] = sheet
splits = camera_splits(
    sheets,
    n_splits=snakemake.params.n_splits,
    fractions=snakemake.params.fractions,
    seed=snakemake.params.seed,
)
write_tsv(splits, snakemake.output[0])
log.info("%s", splits.groupby(["cohort", "split", "part"]).size().unstack().to_string())
