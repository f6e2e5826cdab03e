# Scans in: the embedded simulator or the user's sheet, both written as NIfTI under data/; a
# sheet's cohort.tsv is written once every scan is ingested and none is another's copy.


rule simulate_subject:
    output:
        image="data/{cohort}/simulated/{subject}.nii.gz",
        truth="data/{cohort}/truth/{subject}.json",
    log:
        "logs/simulate_subject/{cohort}/{subject}.log",
    cache: True
    priority: 1
    threads: 1
    resources:
        mem_mb=800,
        runtime=2,
    params:
        label=lambda w: COHORTS[w.cohort][w.subject]["label"],
        simulate=lambda w: config["cohorts"][w.cohort]["simulate"],
        physics=lambda w: simulation_physics(w.cohort),
        seed=lambda w: derive_seed(SEED, "simulate", w.cohort, w.subject),
        code=code_version("simulate_subject", "datspect.cohorts.simulate"),
    run:
        run_rule(rule, input, output, params, wildcards, threads, log)


rule ingest_scan:
    input:
        source=lambda w: COHORTS[w.cohort][w.subject]["image"],
    output:
        image="data/{cohort}/ingested/{subject}.nii.gz",
    log:
        "logs/ingest_scan/{cohort}/{subject}.log",
    priority: 1
    threads: 1
    resources:
        mem_mb=800,
        runtime=2,
    params:
        max_voxels=config["images"]["max_voxels"],
    run:
        run_rule(rule, input, output, params, wildcards, threads, log)


rule cohort_sheet:
    input:
        cohort_sheet_inputs,
    output:
        sheet="data/{cohort}/cohort.tsv",
    log:
        "logs/cohort_sheet/{cohort}.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        source=lambda w: config["cohorts"][w.cohort]["source"],
        images=lambda w: {s: native_image_path(w.cohort, s) for s in subjects(w.cohort)},
        duplicate_min_correlation=config["qc"]["duplicate_min_correlation"],
    script:
        "../scripts/cohort_sheet.py"
