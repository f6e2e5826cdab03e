"""results/qc/leakage.tsv: test accuracy of pixel classifiers with and without grouped splits."""

from datspect import leakage, runlog
from datspect.cnn_inputs import load_inputs
from datspect.tables import read_tsv, write_tsv

log = runlog.to_file(snakemake.log[0])
p = snakemake.params
report = leakage.leakage_report(
    read_tsv(snakemake.input.sheet),
    load_inputs(snakemake.input.inputs),
    read_tsv(snakemake.input.splits),
    settings=p.settings,
    fractions=p.fractions,
    seed=p.seed,
)
write_tsv(report, snakemake.output[0])
log.info("mean test accuracy:\n%s", leakage.inflation(report).round(4).to_string(index=False))
