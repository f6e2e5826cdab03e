# Validation of config and cohort sheets, subject tables, seeds and input functions.
import os
from pathlib import Path

from snakemake.utils import validate

from datspect import cohort as cohort_sheet
from datspect import config as config_checks
from datspect import jobpool
from datspect.seeds import derive_seed

REPO = Path(workflow.basedir)
SCHEMAS = REPO / "schemas"

# One clear message for bad config before any job runs; then let Snakemake fill the schema's
# defaults into the config.
config_checks.check_schema(config, SCHEMAS / "config.schema.yaml", source="config")
validate(config, str(SCHEMAS / "config.schema.yaml"))
config_checks.check_semantics(config, source="config")

SEED = config["seed"]
SETTINGS = config["settings"]
METHODS = config["methods"]
IMAGE_SETTINGS = ["original", "smoothed"]  # `mixed` pools both images of a subject
DEV = config_checks.development_cohort(config)
SPLITS = list(range(config["splits"]["n_splits"]))


def _cohort_table(name, spec):
    """Subjects of a cohort: from the simulator's design or from the user's sheet."""
    if spec["source"] == "simulate":
        from datspect.simulate import cohort_design

        sim = spec["simulate"]
        design = cohort_design(name, sim["n_normal"], sim["n_reduced"], SEED)
        return {sid: {"label": label, "image": None} for sid, label in design}
    sheet = cohort_sheet.read_sheet(spec["sheet"], name)
    return {
        row.subject_id: {"label": int(row.label), "image": row.image}
        for row in sheet.itertuples()
    }


COHORTS = {name: _cohort_table(name, spec) for name, spec in config["cohorts"].items()}
cohort_sheet.check_split_feasible(
    [v["label"] for v in COHORTS[DEV].values()],
    [config["splits"][p] for p in config_checks.SPLIT_PARTS],
    where=f"cohort '{DEV}'",
)


wildcard_constraints:
    cohort="|".join(COHORTS),
    subject=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    setting="|".join(["original", "smoothed", "mixed"]),
    image_setting="original|smoothed",
    method="sbr_aal|sbr_hv|cnn",
    split=r"\d+",


def subjects(cohort):
    return sorted(COHORTS[cohort])


def native_image_path(cohort, subject):
    """The scan as NIfTI in the working directory: simulated, or ingested from the sheet."""
    kind = "simulated" if COHORTS[cohort][subject]["image"] is None else "ingested"
    return f"data/{cohort}/{kind}/{subject}.nii.gz"


def native_image(wildcards):
    return native_image_path(wildcards.cohort, wildcards.subject)


def per_subject(pattern, cohort):
    return expand(pattern, cohort=cohort, subject=subjects(cohort))


def run_step(step, log, **kwargs):
    """Run a per-image step of datspect.steps in the warm local pool (see datspect/jobpool.py)."""
    jobpool.run(
        step,
        kwargs,
        str(log),
        in_pool=workflow.is_main_process,
        workers=max(1, workflow.cores or 1),
    )
