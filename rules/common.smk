# Validation of config and cohort sheets, subject tables, seeds and input functions.
from pathlib import Path

from snakemake.utils import validate

from datspect import cohort as cohort_sheet
from datspect import config as config_checks
from datspect import jobpool
from datspect.seeds import derive_seed

REPO = Path(workflow.basedir)
SCHEMAS = REPO / "schemas"

# One clear message for bad config before any job runs, naming the config file that sets the
# key; then let Snakemake fill the schema's defaults into the config.
CONFIG_FILES = [str(f) for f in workflow.configfiles]
config_checks.check_schema(config, SCHEMAS / "config.schema.yaml", files=CONFIG_FILES)
validate(config, str(SCHEMAS / "config.schema.yaml"))
config_checks.check_semantics(config, files=CONFIG_FILES)

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
    where=config["cohorts"][DEV].get("sheet") or f"cohorts.{DEV}.simulate",
)


wildcard_constraints:
    cohort="|".join(COHORTS),
    subject=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    setting="|".join(["original", "smoothed", "mixed"]),
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


def check_changed_scans():
    """Check every scan that changed since it was ingested now, before Snakemake deletes its
    good ingested copy to ingest it again."""
    for name, table in COHORTS.items():
        if config["cohorts"][name]["source"] != "sheet":
            continue
        sources = cohort_sheet.ingested_sources(f"data/{name}/cohort.tsv")
        cohort_sheet.check_changed_scans(
            (v["image"], native_image_path(name, s), sources.get(s))
            for s, v in table.items()
        )


check_changed_scans()


def per_subject(pattern, cohort):
    return expand(pattern, cohort=cohort, subject=subjects(cohort))


# Per-image rules carry increasing priorities along the chain (simulate 1 ... features 4), so a
# subject's images go through the chain before new subjects start.  This keeps the set of
# ready jobs with inputs small; Snakemake stats the inputs of every ready job in every
# scheduling round, which cost ~60 % of a core breadth-first with thousands of subjects.


def run_step(step, log, **kwargs):
    """Run a per-image step of datspect.steps in the warm local pool (see datspect/jobpool.py)."""
    jobpool.run(
        step,
        kwargs,
        str(log),
        in_pool=workflow.is_main_process,
        workers=max(1, workflow.cores or 1),
    )


def feature_step(step, wildcards, input, output, params, log):
    """Run a step that turns one subject's normalized images into one feature file."""
    run_step(
        step,
        log[0],
        images=dict(input.items()),
        cohort=wildcards.cohort,
        subject_id=wildcards.subject,
        out=output[0],
        **dict(params.items()),
    )


def simulation_physics(cohort):
    """Shared physics with only this cohort's camera, so editing one camera reruns one cohort."""
    physics = {k: v for k, v in config["simulation"].items() if k != "cameras"}
    camera = config["cohorts"][cohort]["simulate"]["camera"]
    physics["cameras"] = {camera: config["simulation"]["cameras"][camera]}
    return physics


def cohort_sheet_inputs(wildcards):
    spec = config["cohorts"][wildcards.cohort]
    if spec["source"] == "simulate":
        return per_subject("data/{cohort}/truth/{subject}.json", wildcards.cohort)
    # Waiting for every ingested scan means a bad scan stops the run before the sheet, and so
    # the splits, tables and models downstream, are rewritten.
    return [spec["sheet"]] + per_subject(
        "data/{cohort}/ingested/{subject}.nii.gz", wildcards.cohort
    )


def truth_files(cohort):
    if config["cohorts"][cohort]["source"] != "simulate":
        return []
    return per_subject("data/{cohort}/truth/{subject}.json", cohort)


def mni_images(wildcards):
    return {
        s: f"preprocessed/{wildcards.cohort}/{wildcards.subject}/{s}_mni.nii.gz"
        for s in IMAGE_SETTINGS
    }


def model_predictions(wildcards=None):
    return expand(
        "results/models/{method}/{setting}/split-{split}/predictions.tsv",
        method=METHODS,
        setting=SETTINGS,
        split=SPLITS,
    )


def all_targets():
    return [
        "results/metrics/summary.tsv",
        "results/metrics/paired_tests.tsv",
        "results/summary.md",
        "results/sbr/sbr.tsv",
        "results/qc/normalization.tsv",
        expand("data/{cohort}/cohort.tsv", cohort=list(COHORTS)),
        rules.figures.output,
        expand("results/figures/qc_mosaic_{cohort}.png", cohort=list(COHORTS)),
    ]


def independent_cohorts():
    return [c for c, s in config["cohorts"].items() if s["role"] == "independent"]


def independent_sheets(setting):
    """Independent cohorts are scored by the mixed-setting models only."""
    if setting != "mixed":
        return []
    return [f"data/{c}/cohort.tsv" for c in independent_cohorts()]


def cnn_inputs(wildcards):
    cohorts = [DEV] + (independent_cohorts() if wildcards.setting == "mixed" else [])
    return [f"features/{c}/{s}/cnn_input.npz" for c in cohorts for s in subjects(c)]


def cnn_histories(wildcards):
    if "cnn" not in METHODS:
        return []
    return expand(
        "results/models/cnn/{setting}/split-{split}/history.tsv",
        setting=SETTINGS,
        split=SPLITS,
    )


MOSAIC_TILES = 36


def mosaic_subjects(cohort):
    """Every Nth subject of a cohort, so that the mosaic has at most MOSAIC_TILES tiles."""
    ids = subjects(cohort)
    step = max(1, -(-len(ids) // MOSAIC_TILES))
    return ids[::step]


def mosaic_images(cohort):
    return [
        f"preprocessed/{cohort}/{s}/original_mni.nii.gz"
        for s in mosaic_subjects(cohort)
    ]
