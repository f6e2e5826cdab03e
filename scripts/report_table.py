"""A result table as an HTML page for the report (the TSV stays the machine-readable copy)."""

from datspect.io.imageio import atomic_write_text
from datspect.io.tsv import read_tsv
from datspect.report.html_tables import table_html
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
table = read_tsv(snakemake.input[0])
page = table_html(table, snakemake.params.title, note=f"Full values: {snakemake.input[0]}")
atomic_write_text(snakemake.output[0], page)
log.info("%d rows", len(table))
