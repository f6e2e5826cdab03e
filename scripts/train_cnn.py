"""Train, select and test one CNN (setting, split); save checkpoint, history and predictions."""

from datspect import runlog
from datspect.cnn import experiment
from datspect.tables import read_tsv, write_tsv

log = runlog.to_file(snakemake.log[0])
w = snakemake.wildcards
p = snakemake.params
predictions, history, best = experiment.run(
    dev_sheet=read_tsv(snakemake.input.dev_sheet),
    independent_sheets=[read_tsv(s) for s in snakemake.input.independent_sheets],
    inputs=experiment.load_inputs(snakemake.input.inputs),
    splits=read_tsv(snakemake.input.splits),
    setting=w.setting,
    split=int(w.split),
    input_kind=p.input_kind,
    arch=p.arch,
    train_cfg=p.train,
    seed=p.seed,
    threads=snakemake.threads,
    device=p.device,
    weights_out=snakemake.output.weights,
    log=log.info,
)
write_tsv(history, snakemake.output.history)
write_tsv(predictions, snakemake.output.predictions)
log.info("selected: %s", best)
