# Tuning stage: Keras Tuner searches one fold; the train_fold jobs use its best hyperparameters.
# tuner.workers = 0: one tune job runs every trial. N > 0: a tune_chief job holds the search (no
# GPU, trains nothing) and N tune_worker jobs train the trials it hands out, side by side.

if not TUNING_WORKERS:

    rule tune:
        input:
            unpack(data_inputs),
        output:
            results=TUNING_RESULTS,
            trials=results_path("tuning", "trials.csv"),
        log:
            log_path("tune.log"),
        benchmark:
            benchmark_path("tune.tsv")
        priority: TRAINING_PATH_PRIORITY
        conda:
            "../../envs/train.yaml"
        threads: 8
        resources:
            mem_mb=32000,
            runtime=1440,
        params:
            settings=tuning_settings(),
            work_dir=results_path("tuning", "work"),
        script:
            "../scripts/tune.py"

else:

    rule tune_chief:
        input:
            unpack(data_inputs),
        output:
            results=TUNING_RESULTS,
            trials=results_path("tuning", "trials.csv"),
        log:
            log_path("tune_chief.log"),
        benchmark:
            benchmark_path("tune_chief.tsv")
        # started before the workers, which wait for its address; it only answers their
        # requests, so it takes no core from them (with one it could block them on few cores)
        priority: 50
        conda:
            "../../envs/train.yaml"
        threads: 0
        resources:
            mem_mb=4000,
            runtime=1440,
        params:
            settings=tuning_settings(),
            work_dir=results_path("tuning", "work"),
        script:
            "../scripts/tune.py"

    rule tune_worker:
        input:
            unpack(data_inputs),
        output:
            results_path("tuning", "workers", "worker_{worker}.json"),
        log:
            log_path("tune_worker", "worker_{worker}.log"),
        benchmark:
            benchmark_path("tune_worker", "worker_{worker}.tsv")
        priority: TRAINING_PATH_PRIORITY
        conda:
            "../../envs/train.yaml"
        threads: 8
        resources:
            mem_mb=32000,
            runtime=1440,
        params:
            settings=tuning_settings(),
            work_dir=results_path("tuning", "work"),
        script:
            "../scripts/tune.py"
