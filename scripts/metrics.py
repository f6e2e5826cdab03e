"""results/metrics/per_split.tsv from every model's predictions (with log loss, Brier score and
ECE of their calibrated P(reduced))."""

from datspect.evaluation.scoring import per_split_metrics
from datspect.io.tsv import concat_tsv, write_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
predictions = concat_tsv(snakemake.input)
write_tsv(predictions, snakemake.output.predictions)
per_split = per_split_metrics(predictions, ece_bins=snakemake.params.ece_bins)
write_tsv(per_split, snakemake.output.per_split)
log.info("%d rows", len(per_split))
