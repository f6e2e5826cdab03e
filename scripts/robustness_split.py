"""Original- and mixed-trained models of one split on its test part at every extra FWHM."""

from functools import partial

from datspect.cnn.checkpoint import load_checkpoint
from datspect.cnn.train import predict
from datspect.evaluation import robustness
from datspect.io.tsv import read_tsv, write_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
p = snakemake.params
inp = snakemake.input
split = int(snakemake.wildcards.split)
splits = read_tsv(inp.splits)
test = splits.loc[(splits["split"] == split) & (splits["part"] == "test"), "subject_id"]
levels = {
    fwhm: (read_tsv(table), inputs)
    for fwhm, table, inputs in zip(p.levels, inp.sbr, inp.cnn_inputs, strict=True)
}
cutoffs = {
    key: robustness.read_cutoff(path, key[0])
    for key, path in zip(p.cutoff_keys, inp.cutoffs, strict=True)
}
# scored on the CPU: a few hundred inputs per model, and the same numbers on every machine
scorers = {
    setting: partial(predict, load_checkpoint(path)[0], device="cpu")
    for setting, path in zip(p.cnn_settings, inp.models, strict=True)
}
table = robustness.score_split(
    levels, list(test), split=split, cutoffs=cutoffs, cnn_scorers=scorers
)
write_tsv(table, snakemake.output[0])
log.info("\n%s", table.to_string(index=False))
