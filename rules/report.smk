# Figures for results/figures/ and the Snakemake report (snakemake --report report.html).

FIG = "results/figures"


rule figures:
    input:
        per_split=rules.metrics.output.per_split,
        predictions=rules.metrics.output.predictions,
        sbr=rules.sbr_table.output[0],
        qc=rules.normalization_qc_all.output[0],
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
    log:
        "logs/figures/figures.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        development=DEV,
        dpi=150,
        min_correlation=config["preprocess"]["qc_min_correlation"],
        max_centroid_error_mm=config["preprocess"]["qc_max_centroid_error_mm"],
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
