"""Class-average saliency of the mixed-setting CNNs over their test images, and its figure."""

import nibabel as nib
import numpy as np
import torch

from datspect.cnn import saliency
from datspect.cnn.checkpoint import load_checkpoint
from datspect.features import slab
from datspect.features.cnn_bundle import load_inputs
from datspect.figures.slab import saliency_figure
from datspect.io.imageio import atomic_output
from datspect.io.tsv import read_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
inp, p = snakemake.input, snakemake.params
torch.set_num_threads(snakemake.threads)
checkpoints = {split: load_checkpoint(w) for split, w in zip(p.splits, inp.weights, strict=True)}
models = {split: model for split, (model, _) in checkpoints.items()}
arch = next(iter(checkpoints.values()))[1]["arch"]
images = saliency.test_images(read_tsv(inp.sheet), read_tsv(inp.splits))
inputs = {
    (subject, setting): array
    for (_, subject), arrays in load_inputs(inp.inputs).items()
    for setting, array in arrays.items()
}
maps = saliency.class_average(models, images, inputs)
with atomic_output(snakemake.output.maps) as tmp:
    np.savez(
        tmp,
        **{
            f"{kind}_{label}": m[kind]
            for label, m in maps.items()
            for kind in ("signed", "absolute")
        },
        **{f"n_{label}": m["n"] for label, m in maps.items()},
    )
template = np.asarray(nib.load(inp.template).dataobj, dtype=np.float32)
saliency_figure(
    maps,
    slab.make_slab(template, p.n_slices, p.reference),
    snakemake.output.figure,
    n_slices=p.n_slices,
    crop=arch["crop"],
    n_models=len(models),
    dpi=p.dpi,
)
log.info("saliency over %d test images: %s", len(images), {k: m["n"] for k, m in maps.items()})
