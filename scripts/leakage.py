"""results/qc/leakage.tsv: test accuracy of pixel classifiers with and without grouped splits."""

from datspect.evaluation import leakage
from datspect.features.cnn_bundle import load_inputs
from datspect.io.tsv import read_tsv, write_tsv
from datspect.workflow import runlog

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
