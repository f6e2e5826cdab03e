"""results/qc/slab_groups.tsv: which slab images belong together, and which are quarantined."""

import pandas as pd

from datspect.cohorts import slab_folder
from datspect.io.tsv import write_tsv
from datspect.workflow import runlog

log = runlog.to_file(snakemake.log[0])
tables = []
for cohort, folder in snakemake.params.folders.items():
    groups, info = slab_folder.group_slabs(
        slab_folder.list_slab_folder(folder, cohort), snakemake.params.null_quantile[cohort]
    )
    tables.append(groups.assign(cohort=cohort))
    log.info("%s: %s", cohort, info)
write_tsv(pd.concat(tables, ignore_index=True), snakemake.output[0])
