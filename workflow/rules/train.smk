# Training stage: one job per cross-validation fold, resumable after a kill.


rule train_fold:
    input:
        unpack(fold_inputs),
    output:
        model=results_path("models", "fold_{fold}", "model.keras"),
        history=results_path("models", "fold_{fold}", "history.csv"),
        metrics=results_path("models", "fold_{fold}", "metrics.json"),
        oof=results_path("models", "fold_{fold}", "oof.csv"),
    log:
        log_path("train", "fold_{fold}.log"),
    benchmark:
        benchmark_path("train", "fold_{fold}.tsv")
    priority: TRAINING_PATH_PRIORITY
    conda:
        "../../envs/train.yaml"
    threads: 8
    resources:
        mem_mb=32000,
        runtime=720,
    params:
        settings=training_settings(),
        tensorboard_dir=lambda wildcards: results_path(
            "tensorboard", f"fold_{wildcards.fold}"
        ),
    script:
        "../scripts/train_fold.py"
