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
p_band = {"mc_dropout": "p_reduced_mc", "single_pass": "p_reduced"}[p.source]
table = uncertainty.uncertainty_table(predictions, p.independent, p_band)
write_tsv(table, snakemake.output.table)
sheets = [read_tsv(s) for s in snakemake.input.sheets]
truth = pd.concat([s for s in sheets if "pattern" in s], ignore_index=True)
patterns = (
    uncertainty.pattern_flags(predictions, truth)
    if len(truth)
    else pd.DataFrame(columns=["cohort", "method", "setting", "pattern", "n"])
)
write_tsv(patterns, snakemake.output.patterns)
coverage_figure(predictions, snakemake.output.figure, p.development, dpi=p.dpi)
log.info("%d uncertainty rows, %d pattern rows", len(table), len(patterns))
