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


if BLENDED_TEACHER:

    rule soundscape_embeddings:
        input:
            soundscapes_of,
            model=str(REFERENCE_PLAN.model),
        output:
            results_path("soundscape_embeddings", "shard_{shard}.h5"),
        log:
            log_path("soundscape_embeddings", "shard_{shard}.log"),
        benchmark:
            benchmark_path("soundscape_embeddings", "shard_{shard}.tsv")
        priority: TRAINING_PATH_PRIORITY
        conda:
            "../../envs/birdnet.yaml"
        threads: 1
        resources:
            mem_mb=1000 + 20 * REFERENCE["batch_size"],
            runtime=240,
        params:
            data_dir=config["data_dir"],
            filenames=lambda wildcards: soundscape_names(wildcards.shard),
            settings=embedding_settings(),
            row_s=config["audio"]["window_s"],
            row_windows=row_window_params(),
        script:
            "../scripts/soundscape_embeddings.py"

    rule teacher_weights:
        input:
            unpack(teacher_weight_inputs),
        output:
            weights=results_path("rounds", "{round}", "teacher", "weights.json"),
            oof=results_path("rounds", "{round}", "teacher", "oof.csv"),
            metrics=results_path("rounds", "{round}", "teacher", "metrics.json"),
        log:
            log_path("rounds", "{round}", "teacher_weights.log"),
        benchmark:
            benchmark_path("rounds", "{round}", "teacher_weights.tsv")
        priority: TRAINING_PATH_PRIORITY
        conda:
            "../../envs/train.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            folds=config["folds"]["train"],
            settings=ENSEMBLE,
            descriptions=lambda wildcards: member_descriptions(wildcards.round),
        script:
            "../scripts/ensemble.py"


rule pseudo_labels:
    input:
        unpack(teacher_inputs),
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
        row_s=config["audio"]["window_s"],
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
