"""results/qc/realism.tsv and results/figures/realism.png: simulated vs real slabs."""

import pandas as pd
import torch

from datspect.cnn.discriminator import cnn_discriminator_rows
from datspect.evaluation import realism
from datspect.figures.realism import realism_figure
from datspect.io.tsv import read_tsv, write_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
p = snakemake.params
reference = p.sbr["reference"]
labels = read_tsv(snakemake.input.sheet).set_index("subject_id")["label"]
sim_labels = labels.loc[list(p.subjects)].to_numpy(dtype=int)
sim = realism.simulated_slabs(snakemake.input.images, n_slices=p.n_slices, reference=reference)
real, real_labels, n_quarantined = realism.real_slabs(
    p.reference_slabs, n_slices=p.n_slices, reference=reference
)
log.info(
    "%d simulated slabs, %d real slabs from %s (%d under both labels left out)",
    len(sim),
    len(real),
    p.reference_slabs,
    n_quarantined,
)
table = realism.realism_table(
    sim, sim_labels, real, real_labels, sbr=p.sbr, n_slices=p.n_slices, seed=p.seed
)
torch.set_num_threads(snakemake.threads)
cnn_rows = cnn_discriminator_rows(sim, sim_labels, real, real_labels, seed=p.seed)
table = pd.concat([table, pd.DataFrame(cnn_rows, columns=realism.COLUMNS)], ignore_index=True)
write_tsv(table, snakemake.output.table)
log.info("realism:\n%s", table.round(4).to_string(index=False))
realism_figure(
    sim,
    sim_labels,
    real,
    real_labels,
    snakemake.output.figure,
    sbr=p.sbr,
    n_slices=p.n_slices,
    dpi=p.dpi,
)
