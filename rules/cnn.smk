# CNN input per image (2D slab or 3D striatal box), then one model per (setting, split) and its
# calibration on the split's validation part.

CNN = config["cnn"]


rule cnn_input:
    input:
        unpack(mni_images),
    output:
        arrays="features/{cohort}/{subject}/cnn_input.npz",
    log:
        "logs/cnn_input/{cohort}/{subject}.log",
    priority: 4
    threads: 1
    resources:
        mem_mb=800,
        runtime=2,
    params:
        kind=CNN["input"],
        n_slices=config["slab"]["n_slices"],
        box_margin_mm=config["slab"]["box_margin_mm"],
        reference=config["sbr"]["reference"],
    run:
        run_rule(rule, input, output, params, wildcards, threads, log)


rule cnn_input_bundle:
    input:
        lambda w: per_subject("features/{cohort}/{subject}/cnn_input.npz", w.cohort),
    output:
        "features/{cohort}/cnn_inputs.npz",
    log:
        "logs/cnn_input_bundle/{cohort}.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/cnn_input_bundle.py"


rule train_cnn:
    input:
        inputs=cnn_inputs,
        dev_sheet=f"data/{DEV}/cohort.tsv",
        independent_sheets=lambda w: independent_sheets(w.setting),
        splits=rules.splits.output[0],
        excluded=rules.qc_exclusions.output.excluded,
    output:
        weights="results/models/cnn/{setting}/split-{split}/model.pt",
        sidecar="results/models/cnn/{setting}/split-{split}/model.json",
        history="results/models/cnn/{setting}/split-{split}/history.tsv",
        scores="results/models/cnn/{setting}/split-{split}/scores.tsv",
    log:
        "logs/train_cnn/{setting}_{split}.log",
    threads: CNN["threads"]
    resources:
        mem_mb=1500,
        runtime=60,
        gpu=1 if CNN["device"] == "cuda" else 0,
    params:
        input_kind=CNN["input"],
        arch=CNN["arch"],
        train=lambda w: cnn_train_config(w.setting),
        device=CNN["device"],
        seed=lambda w: derive_seed(SEED, "cnn", w.setting, w.split),
        mc_dropout_samples=config["evaluation"]["uncertainty"]["mc_dropout_samples"],
    run:
        run_rule(rule, input, output, params, wildcards, threads, log)


# A rule of its own, so that another calibration method or band reruns no training.
rule calibrate_cnn:
    input:
        scores=rules.train_cnn.output.scores,
    output:
        calibration="results/models/cnn/{setting}/split-{split}/calibration.json",
        predictions="results/models/cnn/{setting}/split-{split}/predictions.tsv",
    log:
        "logs/calibrate_cnn/{setting}_{split}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        method=config["evaluation"]["calibration"]["method"],
        band=config["evaluation"]["uncertainty"],
    run:
        run_rule(rule, input, output, params, wildcards, threads, log)
