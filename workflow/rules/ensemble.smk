# The blend of the members (config `ensemble`): the CNN's last round and the BirdNET head,
# weighted to maximise their out-of-fold macro AUC (nested: fold k scored with weights fitted
# without fold k). Defined only when there is more than one member (common.smk decides).

if BLEND:

    rule ensemble:
        input:
            unpack(ensemble_inputs),
        output:
            weights=results_path("ensemble", "weights.json"),
            oof=results_path("ensemble", "oof.csv"),
            metrics=results_path("ensemble", "metrics.json"),
        log:
            log_path("ensemble.log"),
        benchmark:
            benchmark_path("ensemble.tsv")
        conda:
            "../../envs/train.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            folds=config["folds"]["train"],
            settings=ENSEMBLE,
            descriptions=MEMBER_DESCRIPTIONS,
        script:
            "../scripts/ensemble.py"
