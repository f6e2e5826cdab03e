"""Write data/{cohort}/cohort.tsv: the cohort contract for simulated and user cohorts alike."""

import json

import pandas as pd

from datspect.cohorts import sheet as cohort_sheet
from datspect.evaluation.leakage import check_duplicate_scans
from datspect.io.tsv import read_tsv, write_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
name = snakemake.wildcards.cohort
images = snakemake.params.images

if snakemake.params.source == "simulate":
    rows = []
    for path in snakemake.input:
        with open(path, encoding="utf-8") as handle:
            truth = json.load(handle)
        sid = truth["subject_id"]
        rows.append(
            {
                "subject_id": sid,
                "image": images[sid],
                "label": truth["label"],
                "cohort": name,
                "camera": truth["camera"],
                "age": truth["age"],
                "sex": truth["sex"],
                "pattern": truth["pattern"],  # what inconclusive calls are cross-tabulated with
            }
        )
    sheet = pd.DataFrame(rows)
elif snakemake.params.source == "slabs":
    groups = read_tsv(snakemake.input[0])
    groups = groups[(groups["cohort"] == name) & groups["group"].notna()]
    sheet = groups[["subject_id", "image", "label", "group"]].assign(cohort=name)
else:
    sheet = cohort_sheet.read_sheet(snakemake.input[0], name)
    accepted = check_duplicate_scans(
        sheet,
        images,
        sheet_path=snakemake.input[0],
        min_correlation=snakemake.params.duplicate_min_correlation,
    )
    log.info("%s: %d copies of one scan accepted (their rows share a group)", name, accepted)
    sheet = sheet.rename(columns={"image": "source_image"})
    sheet.insert(1, "image", sheet["subject_id"].map(images))

sheet = sheet.sort_values("subject_id").reset_index(drop=True)
write_tsv(sheet, snakemake.output.sheet)
log.info("%s: %d subjects, %s", name, len(sheet), sheet["label"].value_counts().to_dict())
