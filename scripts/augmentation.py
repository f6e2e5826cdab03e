"""results/metrics/augmentation.tsv: the augmented CNNs against the mixed and original ones,
image kind by image kind, paired over splits."""

from datspect.evaluation.augmentation import compare
from datspect.io.tsv import read_tsv, write_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
robustness = list(snakemake.input.robustness)  # the curve, when the run has one
table = compare(
    read_tsv(snakemake.input.predictions),
    read_tsv(snakemake.input.splits),
    snakemake.params.development,
    robustness=read_tsv(robustness[0]) if robustness else None,
)
write_tsv(table, snakemake.output[0])
log.info("%d comparisons", len(table))
