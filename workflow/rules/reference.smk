# The pretrained yardstick (config `reference`): BirdNET V2.4 embeddings of every recording, one
# job per spectrogram shard, and a logistic regression on them per fold, with the folds, labels
# and metric of the CNN and the baseline. Defined only when the reference runs (common.smk
# decides, before any job, from reference.enabled and whether the model is found).

if REFERENCE_PLAN.enabled:

    rule embeddings:
        input:
            manifest=rules.manifest.output.manifest,
            model=str(REFERENCE_PLAN.model),
        output:
            results_path("embeddings", "shard_{shard}.h5"),
        log:
            log_path("embeddings", "shard_{shard}.log"),
        benchmark:
            benchmark_path("embeddings", "shard_{shard}.tsv")
        conda:
            "../../envs/birdnet.yaml"
        # a second interpreter thread was no faster here; shards run side by side instead
        threads: 1
        resources:
            # the model (50 MB) and its activations: ~15 MB per window of a batch
            mem_mb=1000 + 20 * REFERENCE["batch_size"],
            runtime=240,
        params:
            data_dir=config["data_dir"],
            settings=embedding_settings(),
        script:
            "../scripts/embeddings.py"

    rule reference:
        input:
            manifest=rules.manifest.output.manifest,
            classes=rules.manifest.output.classes,
            folds=rules.folds.output[0],
            shards=embedding_files(),
            # scored on the recordings the CNN and the baseline see
            spectrogram_index=rules.spectrogram_index.output[0],
        output:
            metrics=results_path("reference", "metrics.json"),
            oof=results_path("reference", "oof.csv"),
            # each fold's head, the window model of the blend
            heads=reference_heads(),
        log:
            log_path("reference.log"),
        benchmark:
            benchmark_path("reference.tsv")
        conda:
            "../../envs/train.yaml"
        # seconds on the demo; on BirdCLEF 2025, 206 classes x 5 folds of logistic regression on
        # 2048 features: classes are fitted side by side
        threads: 4
        resources:
            mem_mb=8000,
            runtime=240,
        params:
            folds=config["folds"]["train"],
            seed=config["seed"],
            pooling=REFERENCE["pooling"],
            C=REFERENCE["C"],
            row_windows=row_window_params(),
        script:
            "../scripts/reference.py"
