"""results/metrics/per_split.tsv from every model's predictions."""

from datspect import runlog
from datspect.evaluation import per_split_metrics
from datspect.tables import concat_tsv, write_tsv

log = runlog.to_file(snakemake.log[0])
predictions = concat_tsv(snakemake.input)
write_tsv(predictions, snakemake.output.predictions)
per_split = per_split_metrics(predictions)
write_tsv(per_split, snakemake.output.per_split)
log.info("%d rows", len(per_split))
