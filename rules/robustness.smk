# Beyond the study: the original-, mixed- (and augmented-)trained models on test scans smoothed
# with extra FWHM (evaluation.robustness_fwhm_mm). One feature job per level for all development
# subjects (smoothing in MNI space, see datspect/evaluation/robustness.py), one scoring job per split.


rule robustness_features:
    input:
        sheet=f"data/{DEV}/cohort.tsv",
        images=lambda w: per_subject(
            "preprocessed/{cohort}/{subject}/original_mni.nii", DEV
        ),
    output:
        sbr="results/robustness/fwhm-{fwhm}/sbr.tsv",
        cnn_inputs="results/robustness/fwhm-{fwhm}/cnn_inputs.npz",
    log:
        "logs/robustness_features/{fwhm}.log",
    wildcard_constraints:
        fwhm=r"\d+(\.\d+)?",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        cohort=DEV,
        subjects=lambda w: subjects(DEV),
        fwhm_mm=lambda w: float(w.fwhm),
        sbr=config["sbr"],
        cnn={
            "input": config["cnn"]["input"],
            "n_slices": config["slab"]["n_slices"],
            "box_margin_mm": config["slab"]["box_margin_mm"],
        },
    script:
        "../scripts/robustness_features.py"


rule robustness_split:
    input:
        unpack(robustness_split_inputs),
        splits=rules.splits.output[0],
    output:
        "results/robustness/split-{split}.tsv",
    log:
        "logs/robustness_split/{split}.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        levels=ROBUSTNESS_FWHM,
        cutoff_keys=robustness_cutoff_keys(),
        cnn_settings=robustness_cnn_settings(),
    script:
        "../scripts/robustness_split.py"


rule robustness_table:
    input:
        expand("results/robustness/split-{split}.tsv", split=SPLITS),
    output:
        "results/metrics/robustness.tsv",
    log:
        "logs/robustness_table/robustness.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/concat_tables.py"
