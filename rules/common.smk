# Validation of config and cohort sheets, subject tables, seeds and input functions.
import functools

from snakemake.utils import validate

from datspect import schema
from datspect.cohorts import sheet as cohort_sheet
from datspect.workflow import config_checks
from datspect.workflow import jobpool
from datspect.workflow import provenance
from datspect.evaluation import splits
from datspect.features.sbr_config import sbr_arguments
from datspect.seeds import derive_seed
from datspect import vocabulary

# One clear message for bad config before any job runs, naming the config file that sets the
# key; then let Snakemake fill the schema's defaults into the config and make its paths
# absolute (relative to the config file that sets them).
CONFIG_FILES = [str(f) for f in workflow.configfiles]
config_checks.check_schema(config, files=CONFIG_FILES)
validate(config, str(schema.SCHEMA_PATH))
config_checks.resolve_paths(config, files=CONFIG_FILES)
config_checks.check_semantics(config, files=CONFIG_FILES)

SEED = config["seed"]
SETTINGS = config["settings"]
METHODS = config["methods"]
IMAGE_SETTINGS = vocabulary.IMAGE_SETTINGS  # `mixed` pools both images of a subject
DEV = config_checks.development_cohort(config)
SPLITS = list(range(config["splits"]["n_splits"]))


def _slab_folders():
    """Every image of each slab cohort.

    Listing the folders is cheap; reading the PNGs is left to quarantined()."""
    folders = {}
    for name, spec in config["cohorts"].items():
        if spec["source"] == "slabs":
            # imported here: its image libraries would add 0.35 s to every other dry run
            from datspect.cohorts import slab_folder

            folders[name] = slab_folder.list_slab_folder(spec["slabs"]["folder"], name)
    return folders


SLAB_FOLDERS = _slab_folders()


@functools.cache
def quarantined(cohort):
    """Images of a slab cohort stored under both labels: they never enter the cohort
    (slab_groups.tsv lists them). Hashing every PNG (0.3 s for the 1097 published slabs) is
    done only where a cohort's subject list is needed, not in each per-image cluster job.
    """
    from datspect.cohorts import slab_folder

    return slab_folder.label_conflicts(SLAB_FOLDERS[cohort])


def _cohort_table(name, spec):
    """Images of a cohort by subject (a slab cohort's quarantined ones too: see subjects())."""
    if spec["source"] == "slabs":
        return {
            row.subject_id: {"label": int(row.label), "image": row.image}
            for row in SLAB_FOLDERS[name].itertuples()
        }
    if spec["source"] == "simulate":
        from datspect.cohorts.synthetic_subjects import cohort_design

        sim = spec["simulate"]
        design = cohort_design(name, sim["n_normal"], sim["n_reduced"], SEED)
        return {sid: {"label": label, "image": None} for sid, label in design}
    sheet = cohort_sheet.read_sheet(spec["sheet"], name)
    return {
        row.subject_id: {"label": int(row.label), "image": row.image}
        for row in sheet.itertuples()
    }


COHORTS = {name: _cohort_table(name, spec) for name, spec in config["cohorts"].items()}


wildcard_constraints:
    cohort="|".join(COHORTS),
    subject=vocabulary.ID_PATTERN,  # the sheet check's rule (datspect/vocabulary.py)
    setting="|".join(vocabulary.SETTINGS),
    method="|".join(vocabulary.METHODS),
    split=r"\d+",


def is_slab_cohort(cohort):
    return config["cohorts"][cohort]["source"] == "slabs"


def subjects(cohort):
    if is_slab_cohort(cohort):
        return sorted(set(COHORTS[cohort]) - quarantined(cohort))
    return sorted(COHORTS[cohort])


VOLUME_COHORTS = [c for c in COHORTS if not is_slab_cohort(c)]


def slab_only(value):
    """A rule parameter that slab cohorts use and volume cohorts do not (so it reruns only them)."""
    return lambda w: value if is_slab_cohort(w.cohort) else None


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
            [
                (v["image"], native_image_path(name, s), sources.get(s))
                for s, v in table.items()
            ],
            max_voxels=config["images"]["max_voxels"],
        )


# Checks of the inputs that only the main process needs: a cluster or subprocess job re-parses
# this file only to resolve its own inputs (tests/test_slabs.py plans such jobs).
if workflow.is_main_process:
    splits.check_split_feasible(
        [COHORTS[DEV][s]["label"] for s in subjects(DEV)],
        [config["splits"][p] for p in config_checks.SPLIT_PARTS],
        where=config["cohorts"][DEV].get("sheet") or f"cohorts.{DEV}.simulate",
    )
    check_changed_scans()
    list(map(quarantined, SLAB_FOLDERS))  # a bad PNG stops the run here, before any job


def per_subject(pattern, cohort):
    return expand(pattern, cohort=cohort, subject=subjects(cohort))


# Per-image rules carry increasing priorities along the chain (simulate 1 ... features 4), so a
# subject's images go through the chain before new subjects start.  This keeps the set of
# ready jobs with inputs small; Snakemake stats the inputs of every ready job in every
# scheduling round, which cost ~60 % of a core breadth-first with thousands of subjects.


def run_rule(name, input, output, params, wildcards, threads, log):
    """The body of every run: rule, given the rule's name. Calls the step of that name in
    datspect/workflow/steps.py with the named input, output, params and wildcards as its
    arguments (and the threads and log if the step takes them), in the warm local pool
    (datspect/workflow/jobpool.py) or, in a job process of its own (a cluster job), directly.
    """
    jobpool.run(
        name,
        jobpool.step_arguments(input, output, params, wildcards),
        str(log[0]),
        threads=threads,
        in_pool=workflow.is_main_process,
        workers=max(1, workflow.cores or 1),
    )


def code_version(rule, *modules):
    """Hash of a run: rule's step and the modules doing its work: the `code` parameter of
    cached rules (see datspect/workflow/provenance.py)."""
    return provenance.step_hash(rule, "datspect.io.imageio", *modules)


def simulation_physics(cohort):
    """Shared physics with only this cohort's camera, so editing one camera reruns one cohort."""
    physics = {k: v for k, v in config["simulation"].items() if k != "cameras"}
    camera = config["cohorts"][cohort]["simulate"]["camera"]
    physics["cameras"] = {camera: config["simulation"]["cameras"][camera]}
    return physics


def cohort_sheet_inputs(wildcards):
    spec = config["cohorts"][wildcards.cohort]
    if spec["source"] == "slabs":
        return ["results/qc/slab_groups.tsv"]
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
    """A subject's images on the MNI grid: normalized volumes, or stored slabs."""
    kind = "slab" if is_slab_cohort(wildcards.cohort) else "mni"
    return {
        s: f"preprocessed/{wildcards.cohort}/{wildcards.subject}/{s}_{kind}.nii"
        for s in IMAGE_SETTINGS
    }


def slab_folder_images(wildcards=None):
    """Every PNG of every slab cohort, quarantined ones included (slab_groups lists them)."""
    return [image for table in SLAB_FOLDERS.values() for image in table["image"]]


def model_predictions(wildcards=None):
    return [
        f"results/models/{method}/{setting}/split-{split}/predictions.tsv"
        for method, setting in vocabulary.method_settings(METHODS, SETTINGS)
        for split in SPLITS
    ]


def all_targets():
    return [
        "results/metrics/summary.tsv",
        "results/metrics/paired_tests.tsv",
        "results/summary.md",
        "results/metrics/uncertainty.tsv",
        "results/sbr/sbr.tsv",
        ["results/qc/normalization.tsv"] if VOLUME_COHORTS else [],
        expand("data/{cohort}/cohort.tsv", cohort=list(COHORTS)),
        rules.figures.output,
        expand("results/figures/qc_mosaic_{cohort}.png", cohort=VOLUME_COHORTS),
        ["results/qc/slab_groups.tsv"] if SLAB_FOLDERS else [],
        ["results/qc/leakage.tsv"] if is_slab_cohort(DEV) else [],
        realism_targets(),
        robustness_targets(),
        augmentation_targets(),
        cameras_targets(),
        expand("results/report/{table}.html", table=report_tables()),
        *export_targets(),
    ]


def export_targets():
    """The exported model and the CNN saliency figure, when the run has what they are made of."""
    if (
        "mixed" not in SETTINGS
        or "cnn" not in METHODS
        or config["cnn"]["input"] != "slab"
    ):
        return []
    targets = ["results/figures/cnn_saliency.png"]
    # Slab runs export too: `classify` makes the slab of a 3D scan or takes a published slab
    # (the manifest records which SBR, 3D or slab, its cutoffs are).
    if set(vocabulary.SBR_COLUMN) <= set(METHODS):
        targets.append("results/model/manifest.json")
    return targets


def independent_cohorts():
    return [c for c, s in config["cohorts"].items() if s["role"] == "independent"]


def sbr_independent_cohorts():
    """Independent cohorts the SBR cutoffs score: those measured as the development cohort is.

    A slab SBR (regions projected onto the slab, in-slab reference) and a 3D SBR are different
    measurements: cutoffs fitted on one never score the other (no silent mix); the CNN, whose
    2D input is one definition for both, scores every independent cohort.
    """
    dev_slab = is_slab_cohort(DEV)
    return [c for c in independent_cohorts() if is_slab_cohort(c) == dev_slab]


# Independent cohorts whose SBRs no cutoff scores; results/summary.md says so in one line.
SBR_NOT_SCORED = (
    [c for c in independent_cohorts() if c not in sbr_independent_cohorts()]
    if set(METHODS) & set(vocabulary.SBR_COLUMN)
    else []
)
if SBR_NOT_SCORED and workflow.is_main_process:
    from snakemake.logging import logger

    logger.warning(
        f"SBR cutoffs fitted on the {'slab' if is_slab_cohort(DEV) else '3D'} SBRs of '{DEV}' "
        f"do not score {', '.join(SBR_NOT_SCORED)} (a different measurement); "
        "results/summary.md says so"
    )


def independent_sheets(setting):
    """Independent cohorts are scored by the robust settings' models only."""
    if setting not in vocabulary.INDEPENDENT_SETTINGS:
        return []
    return [f"data/{c}/cohort.tsv" for c in independent_cohorts()]


def cnn_inputs(wildcards):
    robust = wildcards.setting in vocabulary.INDEPENDENT_SETTINGS
    cohorts = [DEV] + (independent_cohorts() if robust else [])
    return [f"features/{c}/cnn_inputs.npz" for c in cohorts]


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
        f"preprocessed/{cohort}/{s}/original_mni.nii" for s in mosaic_subjects(cohort)
    ]


# Robustness to extra smoothing (rules/robustness.smk): levels as they appear in file names,
# the trained settings scored, and each split's models.
ROBUSTNESS_FWHM = [float(f) for f in config["evaluation"]["robustness_fwhm_mm"]]
ROBUSTNESS_SETTINGS = [s for s in ("original", "mixed", "augmented") if s in SETTINGS]


def robustness_enabled():
    """Robustness smooths 3D normalized images: not for a development cohort of 2D slabs."""
    return bool(ROBUSTNESS_FWHM and ROBUSTNESS_SETTINGS) and not is_slab_cohort(DEV)


def robustness_levels():
    return [f"{f:g}" for f in ROBUSTNESS_FWHM]


def robustness_cutoff_keys():
    return [
        (m, s)
        for m, s in vocabulary.method_settings(METHODS, ROBUSTNESS_SETTINGS)
        if m != "cnn"
    ]


def robustness_cnn_settings():
    return ROBUSTNESS_SETTINGS if "cnn" in METHODS else []


def robustness_split_inputs(wildcards):
    level = "results/robustness/fwhm-{fwhm}/{name}"
    model = "results/models/{m}/{s}/split-{k}/{name}"
    return {
        "sbr": expand(level, fwhm=robustness_levels(), name="sbr.tsv"),
        "cnn_inputs": expand(level, fwhm=robustness_levels(), name="cnn_inputs.npz"),
        "cutoffs": [
            model.format(m=m, s=s, k=wildcards.split, name="cutoff.json")
            for m, s in robustness_cutoff_keys()
        ],
        "models": [
            model.format(m="cnn", s=s, k=wildcards.split, name="model.pt")
            for s in robustness_cnn_settings()
        ],
    }


def robustness_targets():
    if not robustness_enabled():
        return []
    return ["results/metrics/robustness.tsv", "results/figures/robustness.png"]


def augmentation_targets():
    """The augmented setting's comparison table, when the run trains augmented CNNs."""
    if "augmented" not in SETTINGS or "cnn" not in METHODS:
        return []
    return ["results/metrics/augmentation.tsv"]


# Leave-one-camera-out (rules/cameras.smk, README "Unseen cameras"): the camera cohorts, the
# training sets of k of them, the trainings and SBR cutoffs.
CAMERAS = config["cameras"]["cohorts"]
CAMERA_SPLITS = list(range(config["cameras"]["n_splits"]))
CAMERA_SETS = {}
if CAMERAS:
    from datspect.evaluation import cameras as camera_experiment

    CAMERA_SETS = {
        s["training_set"]: s
        for s in camera_experiment.training_sets(CAMERAS, config["cameras"]["k"])
    }
    if workflow.is_main_process:
        camera_experiment.check_distinct_subjects({c: subjects(c) for c in CAMERAS})
CAMERA_CNN_SETTINGS = config["cameras"]["settings"] if "cnn" in METHODS else []
CAMERA_SBR = [
    (m, s)
    for m, s in vocabulary.method_settings(METHODS, config["cameras"]["settings"])
    if m != "cnn"
]


def cnn_train_config(setting):
    """`cnn.train`, with `cnn.degrade` for the augmented setting only, so that the parameters
    of the other settings' trainings, and so their results, stay as they were."""
    cnn = config["cnn"]
    return cnn["train"] | (
        {"degrade": cnn["degrade"]} if setting == "augmented" else {}
    )


def camera_scores():
    """The camera experiment's CNN score tables and the training set of each."""
    return {
        f"results/cameras/cnn/{setting}/{name}/split-{split}/scores.tsv": name
        for setting in CAMERA_CNN_SETTINGS
        for name in CAMERA_SETS
        for split in CAMERA_SPLITS
    }


def cameras_targets():
    if not CAMERAS:
        return []
    return ["results/metrics/cameras.tsv", "results/figures/cameras.png"]


# Tables the report shows as HTML pages (see report.smk), name -> page title.
REPORT_TABLES = {
    "summary": "Metrics per cohort, method and setting: mean and SD over splits",
    "paired_tests": "Paired comparisons of settings and methods over splits",
    "robustness": "Accuracy on test scans smoothed with extra FWHM, per split",
    "uncertainty": "Inconclusive calls per cohort, method, setting and split",
    "augmentation": "Augmented CNNs against mixed and original ones, per kind of test image",
    "cameras": "Leave-one-camera-out: each model on each camera, seen in training or not",
}


def report_tables():
    optional = {
        "robustness": robustness_enabled(),
        "augmentation": bool(augmentation_targets()),
        "cameras": bool(CAMERAS),
    }
    return [t for t in REPORT_TABLES if optional.get(t, True)]


# The realism report (rules/realism.smk, README "Realism").
REALISM_FOLDER = config["realism"]["reference_slabs"]


def realism_skip_reason():
    if REALISM_FOLDER is None:
        return None
    if is_slab_cohort(DEV):
        return f"the development cohort '{DEV}' is itself a slab cohort"
    if not os.path.isdir(REALISM_FOLDER):
        return f"the folder {REALISM_FOLDER} does not exist"
    return None


REALISM_SKIPPED = realism_skip_reason()
REALISM_ON = REALISM_FOLDER is not None and REALISM_SKIPPED is None
if REALISM_SKIPPED and workflow.is_main_process:
    from snakemake.logging import logger

    logger.warning(
        f"realism report skipped (realism.reference_slabs): {REALISM_SKIPPED}"
    )


def realism_targets():
    return (
        ["results/qc/realism.tsv", "results/figures/realism.png"] if REALISM_ON else []
    )


def _realism_pngs():
    """The reference folder's PNGs, listed (and so checked) while planning."""
    if not REALISM_ON:
        return []
    from datspect.cohorts import slab_folder

    return list(slab_folder.list_slab_folder(REALISM_FOLDER, "realism")["image"])


REALISM_PNGS = _realism_pngs()
