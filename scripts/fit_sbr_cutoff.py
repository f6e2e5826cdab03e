"""Youden cutoff of one SBR method on the training part of one split and setting."""

import json

from datspect import runlog
from datspect.evaluation import fit_sbr_cutoff
from datspect.imageio import atomic_write_text
from datspect.tables import read_tsv, write_tsv

log = runlog.to_file(snakemake.log[0])
w = snakemake.wildcards
model, predictions = fit_sbr_cutoff(
    read_tsv(snakemake.input.sbr),
    read_tsv(snakemake.input.splits),
    method=w.method,
    setting=w.setting,
    split=int(w.split),
    development=snakemake.params.development,
    independent=snakemake.params.independent,
)
atomic_write_text(snakemake.output.cutoff, json.dumps(model, indent=1) + "\n")
write_tsv(predictions, snakemake.output.predictions)
log.info("%s", model)
