"""Concatenate TSV tables with the same columns."""

from datspect.io.tsv import concat_tsv, write_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
table = concat_tsv(snakemake.input)
write_tsv(table, snakemake.output[0])
log.info("%d rows from %d tables", len(table), len(snakemake.input))
