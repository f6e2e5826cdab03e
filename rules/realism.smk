# How far the simulated development cohort is from real slabs (README, "Realism"): on when
# realism.reference_slabs names a folder and the development cohort is 3D. A configured folder
# that is absent, or a slab development cohort, plans no realism target and says why, once.


if REALISM_ON:

    rule realism:
        input:
            sheet=f"data/{DEV}/cohort.tsv",
            images=per_subject("preprocessed/{cohort}/{subject}/original_mni.nii", DEV),
            pngs=REALISM_PNGS,
        output:
            table="results/qc/realism.tsv",
            figure=report(
                f"{FIG}/realism.png",
                caption="../report/realism.rst",
                category="Quality control",
            ),
        log:
            "logs/realism/realism.log",
        conda:
            "../envs/datspect.yaml"
        threads: 2
        resources:
            mem_mb=4000,
            runtime=20,
        params:
            reference_slabs=REALISM_FOLDER,
            subjects=subjects(DEV),
            n_slices=config["slab"]["n_slices"],
            sbr=config["sbr"],
            seed=derive_seed(SEED, "realism"),
            dpi=150,
        script:
            "../scripts/realism.py"
