# DAT-SPECT classification: SBR cutoffs vs a deep CNN across image characteristics.
# Run from the repository with a working directory for data and results, e.g.
#   snakemake --cores 8 --directory work/default
from snakemake.utils import min_version

min_version("9.0")

# A config that Snakemake templated with YTE ran Python while it was loaded: stop before anything
# else (the README's "Reliability" says what Snakemake does before this line).
from datspect.workflow.config_checks import refuse_templates
from datspect.workflow import runlock

refuse_templates(workflow.configfiles)
# Another run in this directory: say so, before Snakemake advises --rerun-incomplete for the
# outputs it is writing (datspect/workflow/runlock.py).
if workflow.is_main_process:
    runlock.refuse_if_running()


# The repository's config.yaml is the default; a --configfile replaces it instead of being
# merged into it (a merge would silently keep the default cohorts).
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/cohort.smk"
include: "rules/preprocess.smk"
include: "rules/slabs.smk"
include: "rules/sbr.smk"
include: "rules/cnn.smk"
include: "rules/evaluate.smk"
include: "rules/robustness.smk"
include: "rules/report.smk"
include: "rules/realism.smk"
include: "rules/export.smk"
include: "rules/cameras.smk"


# At the start, before any job removes its previous outputs: the planned jobs' device and CNN
# checkpoints (datspect/workflow/preflight.py); the run lock (datspect/workflow/runlock.py); a
# warning when the warm pool cannot serve the run: jobs (no force-use-threads,
# datspect/workflow/jobpool.py); the SIGTERM workaround for Snakemake 9.27, whose handler can
# deadlock (datspect/workflow/interrupt.py), or why it is not installed.
onstart:
    from snakemake import __version__ as snakemake_version
    from snakemake.logging import logger
    from datspect.workflow import interrupt, jobpool, preflight

    preflight.check_planned_jobs(workflow, config, CONFIG_FILES)
    runlock.hold()
    for warning in (
        jobpool.without_threads_warning(workflow.use_threads),
        interrupt.handle_sigterm_in_thread(snakemake_version),
    ):
        if warning:
            logger.warning(warning)


onerror:
    from snakemake.logging import logger

    logger.error(runlock.AFTER_FAILURE)


rule all:
    default_target: True
    input:
        all_targets(),
