"""Summary over splits, paired tests across settings and methods, and results/summary.md."""

from datspect.evaluation.metrics import summarize
from datspect.io.imageio import atomic_write_text
from datspect.io.tsv import read_tsv, write_tsv
from datspect.report.summary import paired_table, sbr_not_reported_line, summary_markdown
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
per_split = read_tsv(snakemake.input.per_split)
predictions = read_tsv(snakemake.input.predictions)
splits = read_tsv(snakemake.input.splits)

summary = summarize(per_split)
paired = paired_table(per_split, predictions, splits, snakemake.params.development)
write_tsv(summary, snakemake.output.summary)
write_tsv(paired, snakemake.output.paired)
p = snakemake.params
augmentation = list(snakemake.input.augmentation)  # empty unless the run has augmented CNNs
camera_table = list(snakemake.input.cameras)  # empty unless the run holds cameras out
atomic_write_text(
    snakemake.output.markdown,
    summary_markdown(
        summary,
        paired,
        p.development,
        sources=p.sources,
        sbr_not_scored=p.sbr_not_scored,
        uncertainty=read_tsv(snakemake.input.uncertainty),
        excluded=read_tsv(snakemake.input.excluded),
        augmentation=read_tsv(augmentation[0]) if augmentation else None,
        smooth_fwhm_mm=p.smooth_fwhm_mm,
        camera_table=read_tsv(camera_table[0]) if camera_table else None,
    ),
)
note = sbr_not_reported_line(p.development, p.sources, p.sbr_not_scored)
if note:
    log.info("%s", note)
log.info("%d summary rows, %d comparisons", len(summary), len(paired))
