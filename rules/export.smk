# The exported model (results/model/: the mixed-setting CNNs and SBR cutoffs, for `classify`)
# and where the mixed-setting CNNs look (class-average saliency over their test images).

MIXED_MODELS = "results/models/{method}/mixed/split-{split}/{file}"


rule export_model:
    input:
        weights=expand(MIXED_MODELS, method="cnn", split=SPLITS, file="model.pt"),
        sidecars=expand(MIXED_MODELS, method="cnn", split=SPLITS, file="model.json"),
        calibrations=expand(
            MIXED_MODELS, method="cnn", split=SPLITS, file="calibration.json"
        ),
        sbr_aal=expand(MIXED_MODELS, method="sbr_aal", split=SPLITS, file="cutoff.json"),
        sbr_hv=expand(MIXED_MODELS, method="sbr_hv", split=SPLITS, file="cutoff.json"),
        template=rules.template.output[0],
        sbr=rules.sbr_table.output[0],
        per_split=rules.metrics.output.per_split,
        splits=rules.splits.output[0],
        sheets=expand("data/{cohort}/cohort.tsv", cohort=list(COHORTS)),
    output:
        manifest="results/model/manifest.json",
        template="results/model/template.nii.gz",
        development="results/model/sbr_development.tsv",
        weights=expand("results/model/cnn/split-{split}.safetensors", split=SPLITS),
    log:
        "logs/export_model/export_model.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        splits=SPLITS,
        development=DEV,
        config=config,
    script:
        "../scripts/export_model.py"


rule cnn_saliency:
    input:
        weights=expand(MIXED_MODELS, method="cnn", split=SPLITS, file="model.pt"),
        sidecars=expand(MIXED_MODELS, method="cnn", split=SPLITS, file="model.json"),
        inputs=f"features/{DEV}/cnn_inputs.npz",
        sheet=f"data/{DEV}/cohort.tsv",
        splits=rules.splits.output[0],
        template=rules.template.output[0],
    output:
        figure=report(
            f"{FIG}/cnn_saliency.png",
            caption="../report/saliency.rst",
            category="CNN",
        ),
        maps="results/saliency/cnn_saliency_mixed.npz",
    log:
        "logs/cnn_saliency/cnn_saliency.log",
    conda:
        "../envs/datspect.yaml"
    threads: CNN["threads"]
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        splits=SPLITS,
        n_slices=config["slab"]["n_slices"],
        reference=config["sbr"]["reference"],
        dpi=150,
    script:
        "../scripts/cnn_saliency.py"
