"""SBRs and CNN inputs of every development scan smoothed with one extra FWHM (MNI space)."""

from datspect.evaluation import robustness
from datspect.io.tsv import read_tsv, write_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
p = snakemake.params
sheet = read_tsv(snakemake.input.sheet)
images = dict(zip(p.subjects, snakemake.input.images, strict=True))
table, inputs = robustness.level_features(
    images,
    dict(zip(sheet["subject_id"], sheet["label"], strict=True)),
    cohort=p.cohort,
    fwhm_mm=p.fwhm_mm,
    sbr_params=p.sbr,
    cnn_params=p.cnn,
    log=log.info,
)
write_tsv(table, snakemake.output.sbr)
robustness.save_inputs(inputs, snakemake.output.cnn_inputs)
log.info("%d subjects at %g mm extra FWHM", len(table), p.fwhm_mm)
