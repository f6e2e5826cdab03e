"""results/metrics/cameras.tsv: every camera-experiment model (CNNs and SBR cutoffs of k training
cameras) on every camera, seen in training or not."""

from pathlib import Path

import pandas as pd

from datspect.evaluation import cameras
from datspect.io.tsv import read_tsv, write_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
splits = read_tsv(snakemake.input.splits)
cnn = [
    read_tsv(path).assign(training_set=name)
    for path, name in zip(snakemake.input.scores, snakemake.params.score_sets, strict=True)
]
sbr = cameras.sbr_predictions(
    {Path(path).stem: read_tsv(path) for path in snakemake.input.sbr},  # results/sbr/<method>.tsv
    splits,
    snakemake.params.sets,
    snakemake.params.sbr,
    snakemake.params.n_splits,
    training_subjects=snakemake.params.training_subjects,
    seed=snakemake.params.seed,
)
table = cameras.camera_metrics(pd.concat([*cnn, sbr], ignore_index=True), snakemake.params.sets)
write_tsv(table, snakemake.output[0])
log.info("%s", cameras.accuracy_by_k(table).to_string(index=False))
