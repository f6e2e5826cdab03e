# Metrics per (cohort, method, setting, split), summaries, paired tests and the summary page.


def model_predictions(wildcards=None):
    return expand(
        "results/models/{method}/{setting}/split-{split}/predictions.tsv",
        method=METHODS,
        setting=SETTINGS,
        split=SPLITS,
    )


rule metrics:
    input:
        model_predictions,
    output:
        per_split="results/metrics/per_split.tsv",
        predictions="results/metrics/predictions.tsv",
    log:
        "logs/metrics/metrics.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/metrics.py"


rule summarize:
    input:
        per_split=rules.metrics.output.per_split,
        predictions=rules.metrics.output.predictions,
        splits=rules.splits.output[0],
    output:
        summary="results/metrics/summary.tsv",
        paired="results/metrics/paired_tests.tsv",
        markdown="results/summary.md",
    params:
        fractions=[config["splits"][p] for p in ("train", "val", "test")],
    log:
        "logs/summarize/summarize.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/summarize.py"


def all_targets():
    return [
        "results/metrics/summary.tsv",
        "results/metrics/paired_tests.tsv",
        "results/summary.md",
        "results/sbr/sbr.tsv",
        "results/qc/normalization.tsv",
        expand("data/{cohort}/cohort.tsv", cohort=list(COHORTS)),
    ]
