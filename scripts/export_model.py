"""Export the mixed-setting CNNs and SBR cutoffs to results/model/ (datspect/deploy/export.py)."""

from pathlib import Path

from datspect.deploy import export
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
inp, p = snakemake.input, snakemake.params
splits = list(p.splits)
manifest = export.export_model(
    out_dir=Path(snakemake.output.manifest).parent,
    weights=dict(zip(splits, inp.weights, strict=True)),
    calibrations=dict(zip(splits, inp.calibrations, strict=True)),
    cutoffs={
        "sbr_aal": dict(zip(splits, inp.sbr_aal, strict=True)),
        "sbr_hv": dict(zip(splits, inp.sbr_hv, strict=True)),
    },
    template=inp.template,
    sbr_table=inp.sbr,
    per_split=inp.per_split,
    sources=[
        inp.sbr,
        inp.per_split,
        inp.splits,
        *inp.sheets,
        *inp.weights,
        *inp.sidecars,
        *inp.calibrations,
    ],
    config=p.config,
    development=p.development,
)
log.info("exported %d CNNs; files: %s", len(manifest["cnn"]["models"]), sorted(manifest["files"]))
