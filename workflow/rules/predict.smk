# Inference: the fold ensemble exported for fast CPU prediction, the test soundscapes predicted
# into a Kaggle submission, and (when window labels exist, as in the demo) its soundscape score
# and what each self-training round and post-processing step adds to it.


rule export:
    input:
        unpack(export_blend_inputs),
        calibration_audio=calibration_soundscapes(),
        models=predicted_fold_models(),
        manifest=rules.manifest.output.manifest,
        shards=shard_files(),
        # the classes' common and scientific names, carried in model.json to the outputs
        taxonomy=data_path("taxonomy.csv"),
    output:
        model=results_path("export", "model.tflite"),
        card=results_path("export", "model.json"),
        # what predict.engine runs in predict.precision, when not model.tflite itself
        engine=export_engine_output(),
        # with a blend: its heads, weights and BirdNET's checksum (`dawnchorus predict` reads it)
        blend=export_blend_output(),
    log:
        log_path("export.log"),
    benchmark:
        benchmark_path("export.tsv")
    conda:
        "../../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        config={
            "audio": config["audio"],
            "predict": {
                key: PREDICT[key]
                for key in (
                    "engine",
                    "precision",
                    "export_tolerance",
                    "export_check_windows",
                    "calibration_windows",
                    "quality_check_windows",
                    "quantized_auc_tolerance",
                )
            },
        },
        # without train_soundscapes/, int8 calibrates on windows of training recordings
        clip_audio_dir=str(DATA_DIR / "train_audio"),
    script:
        "../scripts/export.py"


rule predict:
    input:
        unpack(prediction_inputs),
    output:
        submission=results_path("predictions", "submission.csv"),
        problems=results_path("predictions", "problems.csv"),
    log:
        log_path("predict.log"),
    benchmark:
        benchmark_path("predict.tsv")
    conda:
        "../../envs/train.yaml"
    threads: 4
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        settings={key: PREDICT[key] for key in SUBMISSION_SETTINGS},
    script:
        "../scripts/predict.py"


rule soundscape_score:
    input:
        submission=rules.predict.output.submission,
        truth=str(GROUND_TRUTH),
    output:
        scores=results_path("predictions", "soundscape_scores.json"),
        plot=report(
            results_path("report", "soundscape_auc.png"),
            caption="../report/soundscape_auc.rst",
            category="Soundscapes",
        ),
    log:
        log_path("soundscape_score.log"),
    benchmark:
        benchmark_path("soundscape_score.tsv")
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/soundscape_score.py"


rule soundscape_ablation:
    input:
        unpack(soundscape_inputs),
        round_models=[
            path for paths in ablation_round_models().values() for path in paths
        ],
        truth=str(GROUND_TRUTH),
    output:
        results_path("predictions", "soundscape_ablation.json"),
    log:
        log_path("soundscape_ablation.log"),
    benchmark:
        benchmark_path("soundscape_ablation.tsv")
    conda:
        "../../envs/train.yaml"
    threads: 4
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        round_models=ablation_round_models(),
        settings={key: PREDICT[key] for key in SUBMISSION_SETTINGS},
        grid=PREDICT["ablation"],
    script:
        "../scripts/soundscape_ablation.py"
