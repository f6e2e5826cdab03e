"""A result table as an HTML page for the report (the TSV stays the machine-readable copy)."""

from datspect import runlog
from datspect.imageio import atomic_write_text
from datspect.report_tables import table_html
from datspect.tables import read_tsv

log = runlog.to_file(snakemake.log[0])
table = read_tsv(snakemake.input[0])
page = table_html(table, snakemake.params.title, note=f"Full values: {snakemake.input[0]}")
atomic_write_text(snakemake.output[0], page)
log.info("%d rows", len(table))
