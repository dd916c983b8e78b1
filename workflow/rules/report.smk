# Cross-validation summary beside a simple baseline (and the BirdNET reference when it runs), and
# the plots of the Snakemake report.


rule baseline:
    input:
        manifest=rules.manifest.output.manifest,
        classes=rules.manifest.output.classes,
        folds=rules.folds.output[0],
        shards=shard_files(),
    output:
        metrics=results_path("baseline", "metrics.json"),
        oof=results_path("baseline", "oof.csv"),
    log:
        log_path("baseline.log"),
    benchmark:
        benchmark_path("baseline.tsv")
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        audio=config["audio"],
        folds=config["folds"]["train"],
        seed=config["seed"],
    script:
        "../scripts/baseline.py"


rule aggregate:
    input:
        metrics=trained_fold_files("metrics.json"),
        oof=trained_fold_files("oof.csv"),
        manifest=rules.manifest.output.manifest,
        classes=rules.manifest.output.classes,
        baseline=rules.baseline.output.metrics,
        reference=reference_metrics(),
        ensemble=ensemble_metrics(),
        earlier_rounds=[
            path
            for files in round_cv_files()
            for path in files["metrics"] + files["oof"]
        ],
    output:
        cv_results=results_path("cv_results.json"),
        per_class=results_path("per_class_auc.csv"),
    log:
        log_path("aggregate.log"),
    benchmark:
        benchmark_path("aggregate.tsv")
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        settings=training_settings(),
        rounds=ROUNDS,
        earlier_rounds=round_cv_files(),
    script:
        "../scripts/aggregate.py"


rule report:
    input:
        history=trained_fold_files("history.csv"),
        per_class=rules.aggregate.output.per_class,
    output:
        learning_curves=report(
            results_path("report", "learning_curves.png"),
            caption="../report/learning_curves.rst",
            category="Cross-validation",
        ),
        per_class_auc=report(
            results_path("report", "per_class_auc.png"),
            caption="../report/per_class_auc.rst",
            category="Cross-validation",
        ),
        frequency_vs_auc=report(
            results_path("report", "frequency_vs_auc.png"),
            caption="../report/frequency_vs_auc.rst",
            category="Cross-validation",
        ),
    log:
        log_path("report.log"),
    benchmark:
        benchmark_path("report.tsv")
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/report.py"


rule tuning_report:
    input:
        TUNING_RESULTS,
    output:
        trials=report(
            results_path("report", "tuning_trials.png"),
            caption="../report/tuning_trials.rst",
            category="Tuning",
        ),
        hyperparameters=report(
            results_path("report", "tuning_hyperparameters.png"),
            caption="../report/tuning_hyperparameters.rst",
            category="Tuning",
        ),
    log:
        log_path("tuning_report.log"),
    benchmark:
        benchmark_path("tuning_report.tsv")
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/tuning_report.py"


rule summary:
    input:
        unpack(summary_inputs),
    output:
        summary=report(
            results_path("report", "summary.rst"),
            caption="../report/summary.rst",
            category="Summary",
        ),
        chart=report(
            results_path("report", "models.png"),
            caption="../report/models.rst",
            category="Summary",
        ),
    log:
        log_path("summary.log"),
    benchmark:
        benchmark_path("summary.tsv")
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/summary.py"
