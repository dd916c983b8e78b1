# Data stage: validate the inputs, assign folds, precompute log-mel spectrograms into shards.


rule manifest:
    input:
        train_csv=data_path("train.csv"),
        taxonomy_csv=data_path("taxonomy.csv"),
    output:
        manifest=results_path("data", "manifest.csv"),
        rejected=results_path("data", "rejected.csv"),
        classes=results_path("data", "classes.txt"),
    log:
        log_path("manifest.log"),
    benchmark:
        benchmark_path("manifest.tsv")
    conda:
        "../../envs/data.yaml"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        data_dir=lambda wildcards, input: Path(input.train_csv).parent,
        sample_rate=config["audio"]["sample_rate"],
        n_fft=config["audio"]["n_fft"],
        n_shards=config["shards"]["count"],
        seed=config["seed"],
        max_samples=debug_max_samples(),
    script:
        "../scripts/manifest.py"


rule folds:
    input:
        manifest=rules.manifest.output.manifest,
        classes=rules.manifest.output.classes,
    output:
        results_path("data", "folds.csv"),
    log:
        log_path("folds.log"),
    benchmark:
        benchmark_path("folds.tsv")
    priority: TRAINING_PATH_PRIORITY
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        n_folds=config["folds"]["n_folds"],
        seed=config["seed"],
    script:
        "../scripts/folds.py"


rule spectrograms:
    input:
        manifest=rules.manifest.output.manifest,
    output:
        results_path("spectrograms", "shard_{shard}.h5"),
    log:
        log_path("spectrograms", "shard_{shard}.log"),
    benchmark:
        benchmark_path("spectrograms", "shard_{shard}.tsv")
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
        "../scripts/spectrograms.py"


rule spectrogram_index:
    input:
        manifest=rules.manifest.output.manifest,
        shards=shard_files(),
    output:
        results_path("spectrograms", "index.csv"),
    log:
        log_path("spectrogram_index.log"),
    benchmark:
        benchmark_path("spectrogram_index.tsv")
    priority: TRAINING_PATH_PRIORITY
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/spectrogram_index.py"
