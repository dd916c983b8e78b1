# Self-training on the unlabelled train_soundscapes/ (semi_supervised.rounds > 0): their log-mel
# in shards, each round's fold models labelling their windows, and the next round's fold jobs
# training on labelled crops mixed with those windows.


rule soundscape_spectrograms:
    input:
        soundscapes_of,
    output:
        results_path("soundscapes", "shard_{shard}.h5"),
    log:
        log_path("soundscapes", "shard_{shard}.log"),
    benchmark:
        benchmark_path("soundscapes", "shard_{shard}.tsv")
    priority: TRAINING_PATH_PRIORITY
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        data_dir=config["data_dir"],
        audio=config["audio"],
    script:
        "../scripts/soundscape_spectrograms.py"


rule pseudo_labels:
    input:
        models=lambda wildcards: round_fold_files(wildcards.round, "model.keras"),
        soundscapes=results_path("soundscapes", "shard_{shard}.h5"),
    output:
        results_path("rounds", "{round}", "pseudo_labels", "shard_{shard}.h5"),
    log:
        log_path("rounds", "{round}", "pseudo_labels", "shard_{shard}.log"),
    benchmark:
        benchmark_path("rounds", "{round}", "pseudo_labels", "shard_{shard}.tsv")
    priority: TRAINING_PATH_PRIORITY
    conda:
        "../../envs/train.yaml"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=240,
    params:
        folds=config["folds"]["train"],
    script:
        "../scripts/pseudo_labels.py"


rule train_round_fold:
    input:
        unpack(round_fold_inputs),
    output:
        model=str(Path(fold_dir("{round}"), "model.keras")),
        history=str(Path(fold_dir("{round}"), "history.csv")),
        metrics=str(Path(fold_dir("{round}"), "metrics.json")),
        oof=str(Path(fold_dir("{round}"), "oof.csv")),
    log:
        log_path("train", "round_{round}", "fold_{fold}.log"),
    benchmark:
        benchmark_path("train", "round_{round}", "fold_{fold}.tsv")
    priority: TRAINING_PATH_PRIORITY
    conda:
        "../../envs/train.yaml"
    threads: 8
    resources:
        mem_mb=32000,
        runtime=720,
    params:
        settings=round_settings,
        tensorboard_dir=lambda wildcards: results_path(
            "tensorboard", f"round_{wildcards.round}", f"fold_{wildcards.fold}"
        ),
    script:
        "../scripts/train_fold.py"
