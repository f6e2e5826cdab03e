"""The result figures of results/figures/ from the contract tables."""

from pathlib import Path

from datspect.figures import calibration, qc, results, sbr, style, training
from datspect.io.tsv import read_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
out = snakemake.output
p = snakemake.params
per_split = read_tsv(snakemake.input.per_split)
predictions = read_tsv(snakemake.input.predictions)
development = p.development

results.accuracy_bars(per_split, out.accuracy, study_cohort=development, dpi=p.dpi)
results.roc_curves(predictions, out.roc, development, dpi=p.dpi)
results.confusion_matrices(predictions, out.confusion, development, dpi=p.dpi)
calibration.reliability_diagrams(
    predictions, out.reliability, development, n_bins=p.ece_bins, dpi=p.dpi
)
sbr_table = read_tsv(snakemake.input.sbr)
for method, path in (("sbr_aal", out.sbr), ("sbr_hv", out.sbr_hv)):
    if method in set(predictions["method"]):
        sbr.sbr_distributions(
            sbr_table, predictions, path, cohort=development, method=method, dpi=p.dpi
        )
    else:
        style.placeholder(path, f"no {method} in this run (see config key methods)", dpi=p.dpi)
scored = set(per_split.loc[per_split["setting"] == "mixed", "cohort"])
independent = [c for c in p.independent if c in scored]
if independent:
    results.independent_results(
        per_split,
        predictions,
        out.independent,
        cohorts=independent,
        development=development,
        dpi=p.dpi,
    )
else:
    style.placeholder(
        out.independent, "no independent cohort scored (needs one and the mixed setting)", dpi=p.dpi
    )
if snakemake.input.qc:
    qc.normalization_qc_summary(
        read_tsv(snakemake.input.qc[0]),
        out.qc,
        min_correlation=p.min_correlation,
        max_centroid_error_mm=p.max_centroid_error_mm,
        dpi=p.dpi,
    )
else:  # slab cohorts only: nothing was normalized
    style.placeholder(out.qc, "no spatial normalization in this run (2D slab cohort)", dpi=p.dpi)
histories = {
    (Path(h).parent.parent.name, int(Path(h).parent.name.split("-")[1])): read_tsv(h)
    for h in snakemake.input.histories
}
if histories:
    training.training_curves(histories, out.training, dpi=p.dpi)
else:
    style.placeholder(out.training, "no CNN in this run (methods excludes cnn)", dpi=p.dpi)
log.info("figures written: %s", list(out))
