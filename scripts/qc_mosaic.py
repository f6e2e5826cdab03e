"""Normalization QC mosaic: striatal slabs of every Nth normalized image with the AAL putamen."""

import nibabel as nib
import numpy as np

from datspect.features import slab
from datspect.figures.qc import qc_mosaic
from datspect.io.tsv import read_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
qc = read_tsv(snakemake.input.qc)
flags = dict(
    zip(
        qc.loc[qc["setting"] == "original", "subject_id"],
        qc.loc[qc["setting"] == "original", "flag"],
        strict=True,
    )
)
slabs = []
for path, subject in zip(snakemake.input.images, snakemake.params.subjects, strict=True):
    volume = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    flag = flags.get(subject, "?")
    title = subject if flag == "ok" else f"{subject} [{flag}]"
    slabs.append((title, slab.make_slab(volume, snakemake.params.n_slices)))
qc_mosaic(slabs, snakemake.output[0], n_slices=snakemake.params.n_slices)
log.info("%d slabs", len(slabs))
