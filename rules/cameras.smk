# Leave-one-camera-out (beyond the study, configs/cameras.yaml): each camera cohort split on its
# own, CNNs trained on k cameras and SBR cutoffs fitted on them, every model scored on its
# cameras' test parts and on the cameras it never saw (datspect/evaluation/cameras.py).


wildcard_constraints:
    training_set=r"k\d+-\d+",


rule camera_splits:
    input:
        sheets=expand("data/{cohort}/cohort.tsv", cohort=CAMERAS),
        excluded=rules.qc_exclusions.output.excluded,
    output:
        "results/cameras/splits.tsv",
    log:
        "logs/camera_splits/camera_splits.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        n_splits=config["cameras"]["n_splits"],
        fractions=[config["splits"][p] for p in ("train", "val", "test")],
        seed=SEED,
    script:
        "../scripts/camera_splits.py"


rule train_camera_cnn:
    input:
        inputs=expand("features/{cohort}/cnn_inputs.npz", cohort=CAMERAS),
        sheets=expand("data/{cohort}/cohort.tsv", cohort=CAMERAS),
        splits=rules.camera_splits.output[0],
        excluded=rules.qc_exclusions.output.excluded,
    output:
        weights="results/cameras/cnn/{setting}/{training_set}/split-{split}/model.pt",
        sidecar="results/cameras/cnn/{setting}/{training_set}/split-{split}/model.json",
        history="results/cameras/cnn/{setting}/{training_set}/split-{split}/history.tsv",
        scores="results/cameras/cnn/{setting}/{training_set}/split-{split}/scores.tsv",
    log:
        "logs/train_camera_cnn/{setting}_{training_set}_{split}.log",
    threads: CNN["threads"]
    resources:
        mem_mb=1500,
        runtime=30,
        gpu=1 if CNN["device"] == "cuda" else 0,
    params:
        training_cameras=lambda w: CAMERA_SETS[w.training_set]["cameras"],
        training_subjects=config["cameras"]["training_subjects"],
        subset_seed=lambda w: camera_experiment.subset_seed(SEED, w.training_set),
        input_kind=CNN["input"],
        arch=CNN["arch"],
        train=lambda w: cnn_train_config(w.setting),
        device=CNN["device"],
        seed=lambda w: derive_seed(
            SEED, "cameras", "cnn", w.setting, w.training_set, w.split
        ),
        mc_dropout_samples=config["evaluation"]["uncertainty"]["mc_dropout_samples"],
    run:
        run_rule(rule, input, output, params, wildcards, threads, log)


rule cameras_table:
    input:
        scores=list(camera_scores()),
        sbr=expand(
            "results/sbr/{method}.tsv", method=sorted({m for m, _ in CAMERA_SBR})
        ),
        splits=rules.camera_splits.output[0],
    output:
        "results/metrics/cameras.tsv",
    log:
        "logs/cameras_table/cameras.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        score_sets=list(camera_scores().values()),
        sets=list(CAMERA_SETS.values()),
        sbr=CAMERA_SBR,
        n_splits=config["cameras"]["n_splits"],
        training_subjects=config["cameras"]["training_subjects"],
        seed=SEED,
    script:
        "../scripts/cameras_table.py"


rule cameras_figure:
    input:
        rules.cameras_table.output[0],
    output:
        report(
            "results/figures/cameras.png",
            caption="../report/cameras.rst",
            category="Unseen cameras",
        ),
    log:
        "logs/cameras_figure/cameras.log",
    conda:
        "../envs/datspect.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        dpi=150,
    script:
        "../scripts/cameras_figure.py"
