# Figures for results/figures/ and the Snakemake report (snakemake --report report.html).

FIG = "results/figures"


rule figures:
    input:
        per_split=rules.metrics.output.per_split,
        predictions=rules.metrics.output.predictions,
        sbr=rules.sbr_table.output[0],
        qc=["results/qc/normalization.tsv"] if VOLUME_COHORTS else [],
        histories=cnn_histories,
    output:
        accuracy=report(
            f"{FIG}/accuracy.png", caption="../report/accuracy.rst", category="Results"
        ),
        roc=report(f"{FIG}/roc.png", caption="../report/roc.rst", category="Results"),
        confusion=report(
            f"{FIG}/confusion.png",
            caption="../report/confusion.rst",
            category="Results",
        ),
        sbr=report(
            f"{FIG}/sbr_distributions.png", caption="../report/sbr.rst", category="SBR"
        ),
        sbr_hv=report(
            f"{FIG}/sbr_distributions_hv.png",
            caption="../report/sbr_hv.rst",
            category="SBR",
        ),
        independent=report(
            f"{FIG}/independent.png",
            caption="../report/independent.rst",
            category="Independent cohort",
        ),
        qc=report(
            f"{FIG}/normalization_qc.png",
            caption="../report/qc.rst",
            category="Quality control",
        ),
        training=report(
            f"{FIG}/training_curves.png",
            caption="../report/training.rst",
            category="CNN",
        ),
        reliability=report(
            f"{FIG}/reliability.png",
            caption="../report/reliability.rst",
            category="Calibration",
        ),
    log:
        "logs/figures/figures.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        development=DEV,
        independent=independent_cohorts(),
        dpi=150,
        min_correlation=config["preprocess"]["qc_min_correlation"],
        max_centroid_error_mm=config["preprocess"]["qc_max_centroid_error_mm"],
        ece_bins=config["evaluation"]["calibration"]["ece_bins"],
    script:
        "../scripts/figures.py"


rule qc_mosaic:
    input:
        qc="results/qc/normalization_{cohort}.tsv",
        images=lambda w: mosaic_images(w.cohort),
    output:
        report(
            f"{FIG}/qc_mosaic_{{cohort}}.png",
            caption="../report/mosaic.rst",
            category="Quality control",
        ),
    log:
        "logs/qc_mosaic/{cohort}.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        subjects=lambda w: mosaic_subjects(w.cohort),
        n_slices=config["slab"]["n_slices"],
    script:
        "../scripts/qc_mosaic.py"


rule robustness_figure:
    input:
        "results/metrics/robustness.tsv",
    output:
        report(
            f"{FIG}/robustness.png",
            caption="../report/robustness.rst",
            category="Robustness",
        ),
    log:
        "logs/robustness_figure/robustness.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        setting_fwhm_mm=config["preprocess"]["smooth_fwhm_mm"],
        dpi=150,
    script:
        "../scripts/robustness_figure.py"


# The report shows HTML inline but a .tsv only as a download: each summary table once more as
# an HTML page.
rule report_table:
    input:
        "results/metrics/{table}.tsv",
    output:
        report(
            "results/report/{table}.html",
            caption="../report/tables.rst",
            category="Tables",
        ),
    log:
        "logs/report_table/{table}.log",
    wildcard_constraints:
        table="|".join(REPORT_TABLES),
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        title=lambda w: REPORT_TABLES[w.table],
    script:
        "../scripts/report_table.py"
