# smooth (native space) -> spatial normalization to the MNI 2 mm grid (both images, one
# transform estimated on the original) -> normalization QC.
# The float32 intermediates are stored uncompressed (.nii): noisy SPECT data gzips to ~85 % of
# its size, at ~0.2 s of CPU per image written and 0.05 s per image read (README "Time budget").

PRE = config["preprocess"]


rule template:
    output:
        image="resources/template.nii.gz",
    log:
        "logs/template/template.log",
    cache: True
    priority: 5
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        path=PRE["template"],
        fwhm_mm=PRE["template_fwhm_mm"],
        striatal_sbr=PRE["template_striatal_sbr"],
        scalp_uptake=PRE["template_scalp_uptake"],
        code=code_version("template", "datspect.space.template"),
    run:
        run_rule(rule, input, output, params, wildcards, threads, log)


rule smooth:
    input:
        original=native_image,
    output:
        smoothed="preprocessed/{cohort}/{subject}/smoothed_native.nii",
    log:
        "logs/smooth/{cohort}/{subject}.log",
    cache: True
    priority: 2
    threads: 1
    resources:
        mem_mb=800,
        runtime=2,
    params:
        fwhm_mm=PRE["smooth_fwhm_mm"],
        code=code_version("smooth", "datspect.preprocess.smooth"),
    run:
        run_rule(rule, input, output, params, wildcards, threads, log)


rule normalize:
    input:
        original=native_image,
        smoothed=rules.smooth.output.smoothed,
        template=rules.template.output.image,
    output:
        original_mni="preprocessed/{cohort}/{subject}/original_mni.nii",
        smoothed_mni="preprocessed/{cohort}/{subject}/smoothed_mni.nii",
        transform="preprocessed/{cohort}/{subject}/native_from_mni.txt",
        qc="preprocessed/{cohort}/{subject}/qc.json",
    log:
        "logs/normalize/{cohort}/{subject}.log",
    cache: True
    priority: 3
    threads: 1
    resources:
        mem_mb=1500,
        runtime=3,
    params:
        registration=PRE["registration"],
        min_correlation=PRE["qc_min_correlation"],
        seed=lambda w: derive_seed(SEED, "normalize", w.cohort, w.subject),
        code=code_version("normalize", "datspect.preprocess.register"),
    run:
        run_rule(rule, input, output, params, wildcards, threads, log)


rule normalization_qc:
    input:
        qc=lambda w: per_subject("preprocessed/{cohort}/{subject}/qc.json", w.cohort),
        transforms=lambda w: per_subject(
            "preprocessed/{cohort}/{subject}/native_from_mni.txt", w.cohort
        ),
        truth=lambda w: truth_files(w.cohort),
    output:
        "results/qc/normalization_{cohort}.tsv",
    log:
        "logs/normalization_qc/{cohort}.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        max_centroid_error_mm=PRE["qc_max_centroid_error_mm"],
    script:
        "../scripts/normalization_qc.py"


rule normalization_qc_all:
    input:
        expand("results/qc/normalization_{cohort}.tsv", cohort=VOLUME_COHORTS),
    output:
        "results/qc/normalization.tsv",
    log:
        "logs/normalization_qc_all/all.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/concat_tables.py"
