# Metrics per (cohort, method, setting, split), summaries, paired tests and the summary page.


# A finished run says on the console which scans failed QC and what became of them (a job's own
# log never reaches it).
onsuccess:
    if os.path.exists("results/qc/excluded.tsv"):
        from snakemake.logging import logger
        from datspect.io.tsv import read_tsv
        from datspect.report.summary import excluded_console_line

        line = excluded_console_line(read_tsv("results/qc/excluded.tsv"))
        if line:
            logger.warning(line)


rule metrics:
    input:
        model_predictions,
    output:
        per_split="results/metrics/per_split.tsv",
        predictions="results/metrics/predictions.tsv",
    log:
        "logs/metrics/metrics.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        ece_bins=config["evaluation"]["calibration"]["ece_bins"],
    script:
        "../scripts/metrics.py"


rule summarize:
    input:
        per_split=rules.metrics.output.per_split,
        predictions=rules.metrics.output.predictions,
        splits=rules.splits.output[0],
        uncertainty="results/metrics/uncertainty.tsv",
        excluded=rules.qc_exclusions.output.excluded,
        augmentation=augmentation_targets(),
        cameras=cameras_targets()[:1],
    output:
        summary="results/metrics/summary.tsv",
        paired="results/metrics/paired_tests.tsv",
        markdown="results/summary.md",
    log:
        "logs/summarize/summarize.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        development=DEV,
        sources={c: s["source"] for c, s in config["cohorts"].items()},
        sbr_not_scored=SBR_NOT_SCORED,
        smooth_fwhm_mm=config["preprocess"]["smooth_fwhm_mm"],
    script:
        "../scripts/summarize.py"


# Beyond the study (configs/augmented.yaml): the augmented CNNs beside the mixed and original ones.
rule augmentation:
    input:
        predictions=rules.metrics.output.predictions,
        splits=rules.splits.output[0],
        robustness=robustness_targets()[:1],
    output:
        "results/metrics/augmentation.tsv",
    log:
        "logs/augmentation/augmentation.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        development=DEV,
    script:
        "../scripts/augmentation.py"


rule uncertainty:
    input:
        predictions=rules.metrics.output.predictions,
        sheets=expand("data/{cohort}/cohort.tsv", cohort=list(COHORTS)),
    output:
        table="results/metrics/uncertainty.tsv",
        patterns="results/metrics/uncertainty_patterns.tsv",
        figure=report(
            "results/figures/coverage.png",
            caption="../report/coverage.rst",
            category="Calibration",
        ),
    log:
        "logs/uncertainty/uncertainty.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        development=DEV,
        independent=independent_cohorts(),
        source=config["evaluation"]["uncertainty"]["source"],
        dpi=150,
    script:
        "../scripts/uncertainty.py"
