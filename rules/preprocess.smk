# smooth (native space) -> spatial normalization to the MNI 2 mm grid (both images, one
# transform estimated on the original) -> normalization QC.

PRE = config["preprocess"]


rule template:
    output:
        "resources/template.nii.gz",
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
        code=code_version("template_image", "datspect.space.template"),
    run:
        run_step(
            "template_image",
            log[0],
            path=params.path,
            fwhm_mm=params.fwhm_mm,
            striatal_sbr=params.striatal_sbr,
            scalp_uptake=params.scalp_uptake,
            out=output[0],
        )


rule smooth:
    input:
        native_image,
    output:
        "preprocessed/{cohort}/{subject}/smoothed_native.nii.gz",
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
        run_step(
            "smooth", log[0], image=input[0], fwhm_mm=params.fwhm_mm, out=output[0]
        )


rule normalize:
    input:
        original=native_image,
        smoothed=rules.smooth.output[0],
        template=rules.template.output[0],
    output:
        original="preprocessed/{cohort}/{subject}/original_mni.nii.gz",
        smoothed="preprocessed/{cohort}/{subject}/smoothed_mni.nii.gz",
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
        run_step(
            "normalize",
            log[0],
            original=input.original,
            smoothed=input.smoothed,
            template=input.template,
            registration=params.registration,
            min_correlation=params.min_correlation,
            seed=params.seed,
            threads=threads,
            out_original=output.original,
            out_smoothed=output.smoothed,
            out_transform=output.transform,
            out_qc=output.qc,
        )


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
