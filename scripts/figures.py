"""The result figures of results/figures/ from the contract tables."""

from pathlib import Path

from datspect import figures, runlog
from datspect.tables import read_tsv

log = runlog.to_file(snakemake.log[0])
out = snakemake.output
p = snakemake.params
per_split = read_tsv(snakemake.input.per_split)
predictions = read_tsv(snakemake.input.predictions)
development = snakemake.params.development

figures.accuracy_bars(per_split, out.accuracy, study_cohort=development, dpi=p.dpi)
figures.roc_curves(predictions, out.roc, development, dpi=p.dpi)
figures.confusion_matrices(predictions, out.confusion, development, dpi=p.dpi)
figures.sbr_distributions(
    read_tsv(snakemake.input.sbr), predictions, out.sbr, cohort=development, dpi=p.dpi
)
figures.normalization_qc_summary(
    read_tsv(snakemake.input.qc),
    out.qc,
    min_correlation=p.min_correlation,
    max_centroid_error_mm=p.max_centroid_error_mm,
    dpi=p.dpi,
)
histories = {
    (Path(h).parent.parent.name, int(Path(h).parent.name.split("-")[1])): read_tsv(h)
    for h in snakemake.input.histories
}
if histories:
    figures.training_curves(histories, out.training, dpi=p.dpi)
else:
    figures.placeholder(out.training, "no CNN in this run (methods excludes cnn)", dpi=p.dpi)
log.info("figures written: %s", list(out))
