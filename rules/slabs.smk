# Cohorts of published 2D slabs (source: slabs): store and smooth each PNG, group the images
# that belong together, and measure what ignoring the groups would do to accuracy.


rule prepare_slab:
    input:
        source=lambda w: COHORTS[w.cohort][w.subject]["image"],
    output:
        original="preprocessed/{cohort}/{subject}/original_slab.nii",
        smoothed="preprocessed/{cohort}/{subject}/smoothed_slab.nii",
    log:
        "logs/prepare_slab/{cohort}/{subject}.log",
    priority: 2
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        fwhm_mm=config["preprocess"]["smooth_fwhm_mm"],
        n_slices=config["slab"]["n_slices"],
    run:
        run_rule(rule, input, output, params, wildcards, threads, log)


rule slab_groups:
    input:
        slab_folder_images,
    output:
        "results/qc/slab_groups.tsv",
    log:
        "logs/slab_groups/slab_groups.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        folders={c: str(table.attrs["folder"]) for c, table in SLAB_FOLDERS.items()},
        null_quantile={
            c: config["cohorts"][c]["slabs"]["group_null_quantile"]
            for c in SLAB_FOLDERS
        },
    script:
        "../scripts/slab_groups.py"


rule leakage:
    input:
        sheet=f"data/{DEV}/cohort.tsv",
        splits="results/splits/splits.tsv",
        inputs=f"features/{DEV}/cnn_inputs.npz",
    output:
        "results/qc/leakage.tsv",
    log:
        "logs/leakage/leakage.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=[s for s in SETTINGS if s not in vocabulary.CNN_ONLY_SETTINGS],
        fractions=[config["splits"][p] for p in ("train", "val", "test")],
        seed=derive_seed(SEED, "leakage"),
    script:
        "../scripts/leakage.py"
