"""results/metrics/uncertainty.tsv (flags per cohort, method, setting, split and the split
ensemble on independent cohorts), the flags per truth pattern of simulated cohorts and the
accuracy-vs-coverage figure."""

import pandas as pd

from datspect.evaluation import uncertainty
from datspect.figures.calibration import coverage_figure
from datspect.io.tsv import read_tsv, write_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
p = snakemake.params
predictions = read_tsv(snakemake.input.predictions)
table = uncertainty.uncertainty_table(
    predictions, p.independent, uncertainty.BAND_PROBABILITY[p.source]
)
write_tsv(table, snakemake.output.table)
simulated = [s for s in map(read_tsv, snakemake.input.sheets) if "pattern" in s]
patterns = uncertainty.pattern_flags(
    predictions,
    pd.concat(simulated, ignore_index=True)
    if simulated
    else pd.DataFrame(columns=["cohort", "subject_id", "pattern"]),
)
write_tsv(patterns, snakemake.output.patterns)
coverage_figure(predictions, snakemake.output.figure, p.development, dpi=p.dpi)
log.info("%d uncertainty rows, %d pattern rows", len(table), len(patterns))
