# Putamen SBR per image (AAL ROI and hottest voxels), the QC exclusions, the grouped splits,
# and the Youden cutoffs fitted per (method, setting, split).

SBR = config["sbr"]


rule sbr_aal:
    input:
        unpack(mni_images),
    output:
        table="features/{cohort}/{subject}/sbr_aal.tsv",
    log:
        "logs/sbr_aal/{cohort}/{subject}.log",
    priority: 4
    threads: 1
    resources:
        mem_mb=800,
        runtime=2,
    params:
        sbr=sbr_arguments(SBR, "sbr_aal"),
        n_slices=slab_only(config["slab"]["n_slices"]),
    run:
        run_rule(rule, input, output, params, wildcards, threads, log)


rule sbr_hv:
    input:
        unpack(mni_images),
    output:
        table="features/{cohort}/{subject}/sbr_hv.tsv",
    log:
        "logs/sbr_hv/{cohort}/{subject}.log",
    priority: 4
    threads: 1
    resources:
        mem_mb=800,
        runtime=2,
    params:
        # volumes use hv_volume_ml, slabs hv_slab_area_mm2: a change reruns only those
        sbr=lambda w: sbr_arguments(SBR, "sbr_hv", slab=is_slab_cohort(w.cohort)),
        n_slices=slab_only(config["slab"]["n_slices"]),
    run:
        run_rule(rule, input, output, params, wildcards, threads, log)


rule sbr_method_table:
    input:
        tables=lambda w: [
            f"features/{c}/{s}/{w.method}.tsv" for c in COHORTS for s in subjects(c)
        ],
        sheets=expand("data/{cohort}/cohort.tsv", cohort=list(COHORTS)),
    output:
        "results/sbr/{method}.tsv",
    log:
        "logs/sbr_method_table/{method}.log",
    wildcard_constraints:
        method="|".join(vocabulary.SBR_COLUMN),
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/sbr_method_table.py"


rule sbr_table:
    input:
        aal="results/sbr/sbr_aal.tsv",
        hv="results/sbr/sbr_hv.tsv",
    output:
        "results/sbr/sbr.tsv",
    log:
        "logs/sbr_table/sbr.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/sbr_table.py"


# The scans whose normalization QC flags an image: left out of the splits, the cutoffs, the
# CNNs and so the metrics (qc.on_fail: exclude), the run stopped (stop), or used (keep).
rule qc_exclusions:
    input:
        tables=expand("results/qc/normalization_{cohort}.tsv", cohort=VOLUME_COHORTS),
    output:
        excluded="results/qc/excluded.tsv",
    log:
        "logs/qc_exclusions/qc_exclusions.log",
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        on_fail=config["qc"]["on_fail"],
    run:
        run_rule(rule, input, output, params, wildcards, threads, log)


rule splits:
    input:
        sheet=f"data/{DEV}/cohort.tsv",
        excluded=rules.qc_exclusions.output.excluded,
    output:
        "results/splits/splits.tsv",
    log:
        "logs/splits/splits.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        n_splits=config["splits"]["n_splits"],
        fractions=[config["splits"][p] for p in ("train", "val", "test")],
        seed=derive_seed(SEED, "splits"),
    script:
        "../scripts/make_splits.py"


rule fit_sbr_cutoff:
    input:
        sbr_table="results/sbr/{method}.tsv",
        splits=rules.splits.output[0],
        excluded=rules.qc_exclusions.output.excluded,
    output:
        cutoff="results/models/{method}/{setting}/split-{split}/cutoff.json",
        predictions="results/models/{method}/{setting}/split-{split}/predictions.tsv",
    log:
        "logs/fit_sbr_cutoff/{method}_{setting}_{split}.log",
    wildcard_constraints:
        method="|".join(vocabulary.SBR_COLUMN),
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        development=DEV,
        independent=sbr_independent_cohorts(),
        band=config["evaluation"]["uncertainty"],
    run:
        run_rule(rule, input, output, params, wildcards, threads, log)
